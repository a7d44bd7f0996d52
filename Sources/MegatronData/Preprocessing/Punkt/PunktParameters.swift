import Foundation

/// A trained Punkt model, as NLTK stores it (tokenizers/punkt_tab/LANGUAGE/): abbreviation types
/// (lower case, without their period), collocations (type pairs across a period that is not a
/// sentence end), frequent sentence starters, and each type's orthographic context (bit flags of
/// where it was seen upper or lower case: sentence-initial 1/4, internal 2/5, unknown 3/6).
public struct PunktParameters: Sendable {
    public var abbreviationTypes: Set<String>
    /// "first\tsecond"
    public var collocations: Set<String>
    public var sentenceStarters: Set<String>
    public var orthographicContext: [String: Int]

    static let beginUpper = 1 << 1, middleUpper = 1 << 2, unknownUpper = 1 << 3
    static let beginLower = 1 << 4, middleLower = 1 << 5, unknownLower = 1 << 6
    static let upper = beginUpper | middleUpper | unknownUpper, lower = beginLower | middleLower | unknownLower

    /// Reads the model in `directory` (abbrev_types.txt, collocations.tab, sent_starters.txt,
    /// ortho_context.tab; one entry a line, tab-separated fields).
    public init(directory: String) throws {
        func lines(_ name: String) throws -> [String] {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw TokenizerError("Punkt model \(directory): cannot read \(name) (UTF-8 text)")
            }
            var lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            return lines
        }
        abbreviationTypes = Set(try lines("abbrev_types.txt"))
        collocations = Set(try lines("collocations.tab"))
        sentenceStarters = Set(try lines("sent_starters.txt"))
        var context: [String: Int] = [:]
        for (number, line) in try lines("ortho_context.tab").enumerated() {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 2, let flags = Int(fields[1]) else {
                throw TokenizerError("Punkt model \(directory): ortho_context.tab line \(number + 1): expected TYPE<tab>FLAGS, got \"\(line)\"")
            }
            context[String(fields[0])] = flags
        }
        orthographicContext = context
    }

    /// NLTK's `tokenizers/punkt_tab/LANGUAGE` on its search path: each directory of $NLTK_DATA, then
    /// ~/nltk_data and the system directories NLTK searches.
    public static func find(language: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        guard !language.isEmpty, language.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw TokenizerError("--lang \(language): not a Punkt model name")
        }
        let roots = (environment["NLTK_DATA"].map { $0.split(separator: ":").map(String.init) } ?? [])
            + [NSHomeDirectory() + "/nltk_data", "/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/lib/nltk_data",
               "/usr/local/lib/nltk_data"]
        let relative = "tokenizers/punkt_tab/\(language)"
        for root in roots {
            let path = (root as NSString).appendingPathComponent(relative)
            if FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("abbrev_types.txt")) { return path }
        }
        throw TokenizerError("--split-sentences: NLTK's Punkt model \(relative) is in none of \(roots.joined(separator: ", ")); "
                             + "install it as Megatron needs it (python3 -m nltk.downloader punkt_tab) or point NLTK_DATA at it")
    }
}
