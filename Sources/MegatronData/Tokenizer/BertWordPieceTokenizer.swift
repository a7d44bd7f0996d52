import Foundation

/// Megatron's `--tokenizer-type BertWordPieceLowerCase|BertWordPieceCase --vocab-file vocab.txt`
/// (its `_BertWordPieceTokenizer` over Google BERT's FullTokenizer):
///
/// 1. clean: NUL, U+FFFD and control/format characters (other than \t \n \r) are deleted, white
///    space (\t \n \r, space separators) becomes " "; each CJK ideograph gets a space either side;
/// 2. split at white space; with lower case, each word is lower-cased as Python's `str.lower()`
///    (final sigma included), decomposed (NFD) and stripped of nonspacing marks; punctuation (ASCII
///    non-alphanumeric printables and Unicode P*) becomes words of its own;
/// 3. WordPiece: each word of at most 200 characters is cut greedily into the longest vocabulary
///    entries, continuations written "##…", or is one [UNK] when that fails (or when it is longer).
///
/// Ids: the vocabulary's line numbers, then [BOS] and [EOS] when it lacks them, then
/// `--vocab-extra-ids` `<extra_id_N>`; the end of document is [EOS]. `tokenize` adds no [CLS]/[SEP].
public final class BertWordPieceTokenizer: TextTokenizer, Sendable {
    public let vocabSize: Int
    public let lowerCase: Bool
    public let cls: Int32, sep: Int32, pad: Int32, mask: Int32, unk: Int32, bos: Int32, eos: Int32
    public var eod: Int32 { eos }
    /// The ids of `<extra_id_0>` … (T5's sentinels).
    public let extraIDs: [Int32]

    /// Keyed by UTF-8 bytes: Swift's String equality is canonical equivalence ("e\u{301}" ==
    /// "é"), Python's dictionary compares code points.
    private let idOfToken: [[UInt8]: Int32]
    private let tokenOfID: [Int32: String]

    public init(vocabFile: String, lowerCase: Bool, extraIDs extraCount: Int = 0) throws {
        guard let data = FileManager.default.contents(atPath: vocabFile) else { throw TokenizerError("--vocab-file \(vocabFile): cannot read it") }
        guard let text = String(data: data, encoding: .utf8) else { throw TokenizerError("--vocab-file \(vocabFile): not UTF-8 text") }
        var idOfToken: [[UInt8]: Int32] = [:]
        var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        for (index, line) in lines.enumerated() {
            idOfToken[Array(String(line.trimmingPythonWhitespace()).utf8)] = Int32(index)
        }
        func required(_ token: String) throws -> Int32 {
            guard let id = idOfToken[Array(token.utf8)] else { throw TokenizerError("--vocab-file \(vocabFile): no \(token) line") }
            return id
        }
        (cls, sep, pad, mask, unk) = try (required("[CLS]"), required("[SEP]"), required("[PAD]"), required("[MASK]"), required("[UNK]"))
        var size = lines.count
        func add(_ token: String) -> Int32 {
            if let id = idOfToken[Array(token.utf8)] { return id }
            idOfToken[Array(token.utf8)] = Int32(size)
            size += 1
            return Int32(size - 1)
        }
        bos = add("[BOS]")
        eos = add("[EOS]")
        extraIDs = (0 ..< extraCount).map { add("<extra_id_\($0)>") }
        vocabSize = size
        self.lowerCase = lowerCase
        self.idOfToken = idOfToken
        tokenOfID = Dictionary(idOfToken.map { ($0.value, String(decoding: $0.key, as: UTF8.self)) }, uniquingKeysWith: { first, _ in first })
    }

    /// The ids of `text` (Megatron's `tokenize`).
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        for word in basicTokens(text) { appendWordPieces(word, to: &ids) }
        return ids
    }

    /// Megatron's `detokenize`: the tokens joined by spaces, "##" continuations glued, and BERT's
    /// clean-up of spaces before punctuation and English contractions.
    public func decode(_ ids: [Int32]) -> String {
        var text = ids.compactMap { tokenOfID[$0] }.joined(separator: " ").replacingOccurrences(of: " ##", with: "")
        text = String(Substring(text).unicodeScalars.trimmingPythonWhitespace())
        for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            text = text.replacingOccurrences(of: from, with: to)
        }
        return text
    }

    /// Whether `id` continues a word (its piece starts "##"): whole-word masking masks it with the
    /// pieces before it.
    public func isWordContinuation(_ id: Int32) -> Bool { tokenOfID[id]?.hasPrefix("##") ?? false }

    /// Megatron's `decode_token_ids`: [PAD] and [CLS] dropped, "##" continuations glued, every
    /// other token after a space.
    public func decodeTokenIDs(_ ids: [Int32]) -> String {
        var text = ""
        for id in ids where id != pad && id != cls {
            guard let token = tokenOfID[id] else { continue }
            text += token.hasPrefix("##") ? String(token.dropFirst(2)) : " " + token
        }
        return text
    }

    // MARK: BasicTokenizer

    private func basicTokens(_ text: String) -> [String.UnicodeScalarView] {
        var cleaned = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let value = scalar.value
            if value == 0 || value == 0xFFFD || Self.isControl(scalar) { continue }
            if Self.isBertWhitespace(scalar) { cleaned.append(" "); continue }
            if Self.isCJK(value) {
                cleaned.append(" "); cleaned.append(scalar); cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }
        var words: [String.UnicodeScalarView] = []
        for var word in cleaned.split(whereSeparator: PythonText.isWhitespace).map(String.UnicodeScalarView.init) {
            if lowerCase {
                word = PythonText.lowercased(word)
                word = String.UnicodeScalarView(String(word).decomposedStringWithCanonicalMapping.unicodeScalars
                    .filter { $0.properties.generalCategory != .nonspacingMark })
            }
            var current = String.UnicodeScalarView()
            for scalar in word {
                if Self.isPunctuation(scalar) {
                    if !current.isEmpty { words.append(current); current = String.UnicodeScalarView() }
                    words.append(String.UnicodeScalarView([scalar]))
                } else {
                    current.append(scalar)
                }
            }
            if !current.isEmpty { words.append(current) }
        }
        return words.filter { !$0.isEmpty }
    }

    // MARK: WordpieceTokenizer

    private func appendWordPieces(_ word: String.UnicodeScalarView, to ids: inout [Int32]) {
        let scalars = Array(word)
        guard scalars.count <= 200 else { ids.append(unk); return }
        var pieces: [Int32] = []
        var start = 0
        while start < scalars.count {
            var end = scalars.count
            var found: Int32?
            while start < end {
                var candidate: [UInt8] = start > 0 ? Array("##".utf8) : []
                for scalar in scalars[start ..< end] { UTF8.encode(scalar) { candidate.append($0) } }
                if let id = idOfToken[candidate] { found = id; break }
                end -= 1
            }
            guard let found else { ids.append(unk); return }
            pieces.append(found)
            start = end
        }
        ids += pieces
    }

    // MARK: Character classes (BERT's, over Python's Unicode data)

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == "\t" || scalar == "\n" || scalar == "\r" { return false }
        let category = scalar.properties.generalCategory
        return category == .control || category == .format
    }

    private static func isBertWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r" || scalar.properties.generalCategory == .spaceSeparator
    }

    private static func isCJK(_ value: UInt32) -> Bool {
        (0x4E00 ... 0x9FFF).contains(value) || (0x3400 ... 0x4DBF).contains(value) || (0x20000 ... 0x2A6DF).contains(value)
            || (0x2A700 ... 0x2B73F).contains(value) || (0x2B740 ... 0x2B81F).contains(value) || (0x2B820 ... 0x2CEAF).contains(value)
            || (0xF900 ... 0xFAFF).contains(value) || (0x2F800 ... 0x2FA1F).contains(value)
    }

    private static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if (33 ... 47).contains(value) || (58 ... 64).contains(value) || (91 ... 96).contains(value) || (123 ... 126).contains(value) {
            return true
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
}
