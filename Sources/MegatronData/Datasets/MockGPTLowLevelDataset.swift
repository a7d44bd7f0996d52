/// Megatron's MockGPTLowLevelDataset (--mock-data): 100,000 documents whose lengths NumPy's
/// `default_rng(0).integers(1, 4096)` draws (a fixed seed, whatever --seed is), document i being
/// 1, 2, …, n − 1 (modulo the vocabulary) followed by the end-of-document id. GPTDataset splits,
/// packs and shuffles them as it does a real corpus, so a mock run samples what Megatron's does.
public struct MockGPTLowLevelDataset: LowLevelDataset {
    public static let documentCount = 100_000
    public static let maxSequenceLength: Int32 = 4096

    public let vocabSize: Int
    public let endOfDocument: Int32
    public let sequenceLengths: [Int32]

    /// Documents over `vocabSize` ids ending in `endOfDocument` (NullTokenizer's: vocab-size − 1).
    public init(vocabSize: Int, endOfDocument: Int32) {
        self.vocabSize = vocabSize
        self.endOfDocument = endOfDocument
        var random = NumPyGenerator(seed: 0)
        sequenceLengths = random.integers(low: 1, high: Self.maxSequenceLength, count: Self.documentCount)
    }

    /// Token t of document i is (t + 1) mod vocabulary, the last one the end of document.
    public func sequence(_ index: Int, tokens range: Range<Int>) -> [Int32] {
        let last = Int(sequenceLengths[index]) - 1
        return range.map { $0 == last ? endOfDocument : Int32(($0 + 1) % vocabSize) }
    }

    public var identity: String {
        "mock data (\(Self.documentCount) documents, vocabulary \(vocabSize), end of document \(endOfDocument))"
    }
}
