/// Megatron's NullTokenizer: text is already token ids, written in decimal and separated by single
/// spaces ("17 4 902"); the vocabulary is `vocabSize` ids and the last one ends a document.
public struct NullTokenizer: TextTokenizer {
    public let vocabSize: Int
    public var eod: Int32 { Int32(vocabSize - 1) }

    public init(vocabSize: Int) throws {
        guard vocabSize >= 2, vocabSize <= Int(Int32.max) else { throw TokenizerError("NullTokenizer: --vocab-size \(vocabSize) must be ≥ 2") }
        self.vocabSize = vocabSize
    }

    /// The ids of `text`; an empty text is an empty document.
    public func encode(_ text: String) throws -> [Int32] {
        guard !text.isEmpty else { return [] }
        return try text.split(separator: " ", omittingEmptySubsequences: false).map { field in
            guard let id = Int32(field), id >= 0, Int(id) < vocabSize else {
                throw TokenizerError("NullTokenizer: \"\(field.prefix(20))\" is not a token id in 0 ..< \(vocabSize)")
            }
            return id
        }
    }

    public func decode(_ ids: [Int32]) -> String { ids.map(String.init).joined(separator: " ") }
}
