/// Synthetic data in the shape of Megatron's mock GPT data (`--mock-data`): documents
/// [1, 2, …, n − 1, eod] (ids taken modulo the vocabulary) of pseudo-random lengths below 4096,
/// concatenated, and cut into samples of seq-length + 1 tokens that overlap by one token, as
/// GPTDataset packs documents. Deterministic in the seed. (Megatron's own mock lengths come from
/// NumPy's PCG64 and its GPTDataset shuffles samples; matching that order is the data pipeline's work.)
public struct MockGPTDataset: Sendable {
    public let vocabSize: Int
    public let sequenceLength: Int
    public let seed: UInt64

    public init(vocabSize: Int, sequenceLength: Int, seed: UInt64) {
        self.vocabSize = vocabSize
        self.sequenceLength = sequenceLength
        self.seed = seed
    }

    /// The end-of-document id of Megatron's NullTokenizer: vocab-size − 1.
    public var eod: Int32 { Int32(vocabSize - 1) }

    /// Sample `index`: tokens [index·s, index·s + s] of the document stream.
    public func sample(_ index: Int) -> [Int32] {
        let start = index * sequenceLength
        var stream = DocumentStream(dataset: self)
        stream.skip(to: start)
        return (0 ... sequenceLength).map { _ in stream.next() }
    }

    /// Walks the concatenated documents.
    private struct DocumentStream {
        let dataset: MockGPTDataset
        var state: UInt64
        var document = 0, position = 0, length = 0

        init(dataset: MockGPTDataset) {
            self.dataset = dataset
            state = dataset.seed &+ 0x5851_F42D_4C95_7F2D
            length = nextLength()
        }

        mutating func nextLength() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return 1 + Int((state >> 33) % 4095)
        }

        mutating func skip(to offset: Int) {
            var remaining = offset
            while remaining >= length - position {
                remaining -= length - position
                position = 0
                length = nextLength()
            }
            position += remaining
        }

        mutating func next() -> Int32 {
            let token = position == length - 1 ? dataset.eod : Int32((position + 1) % dataset.vocabSize)
            position += 1
            if position == length {
                position = 0
                length = nextLength()
            }
            return token
        }
    }
}
