import Foundation

/// Where the documents of a preprocessing input lie: the lines of JSONL (Megatron's input), or the
/// blank-line-separated paragraphs of plain text (ours).
public enum InputDocuments {
    /// The byte ranges of the lines of `data` (without their line feeds).
    public static func lines(of data: Data) -> [Range<Int>] {
        data.withUnsafeBytes { raw in
            var ranges: [Range<Int>] = [], start = 0
            for (i, byte) in raw.enumerated() where byte == UInt8(ascii: "\n") {
                ranges.append(start ..< i)
                start = i + 1
            }
            if start < raw.count { ranges.append(start ..< raw.count) }
            return ranges
        }
    }

    /// The byte ranges of the documents of plain text: runs of lines between blank lines (lines of
    /// only spaces, tabs or a carriage return), each without its final line feed.
    public static func paragraphs(of data: Data) -> [Range<Int>] {
        var documents: [Range<Int>] = [], current: Range<Int>?
        data.withUnsafeBytes { raw in
            for line in lines(of: data) {
                let blank = raw[line].allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }
                if blank {
                    if let document = current { documents.append(document) }
                    current = nil
                } else {
                    current = (current?.lowerBound ?? line.lowerBound) ..< line.upperBound
                }
            }
        }
        if let document = current { documents.append(document) }
        return documents
    }
}
