/// What preprocessing and sampling need of a tokenizer.
public protocol TextTokenizer: Sendable {
    var vocabSize: Int { get }
    /// The end-of-document id.
    var eod: Int32 { get }
    func encode(_ text: String) throws -> [Int32]
    func decode(_ ids: [Int32]) -> String
}

/// A tokenizer input or vocabulary problem, with the file and line where there is one.
public struct TokenizerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
