/// Synthetic data in the shape of Megatron's mock GPT data (`--mock-data`): documents
/// [1, 2, …, n − 1, eod] (ids taken modulo the vocabulary) of pseudo-random lengths below 4096,
/// concatenated, and cut into samples of seq-length + 1 tokens that overlap by one token, as
/// GPTDataset packs documents. Deterministic in the seed. (Megatron's own mock lengths come from
/// NumPy's PCG64 and its GPTDataset shuffles samples; matching that order is the data pipeline's work.)
public struct MockGPTDataset: Sendable {
    /// Documents in the stream, as in Megatron's mock dataset; samples wrap around after them.
    public static let documentCount = 100_000

    public let vocabSize: Int
    public let sequenceLength: Int
    /// First token of each document in the concatenated stream, then the stream's length.
    let starts: [Int]

    public init(vocabSize: Int, sequenceLength: Int, seed: UInt64) {
        self.vocabSize = vocabSize
        self.sequenceLength = sequenceLength
        var state = seed &+ 0x5851_F42D_4C95_7F2D, total = 0
        var starts = [0]
        starts.reserveCapacity(Self.documentCount + 1)
        for _ in 0 ..< Self.documentCount {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            total += 1 + Int((state >> 33) % 4095)
            starts.append(total)
        }
        self.starts = starts
    }

    /// The end-of-document id of Megatron's NullTokenizer: vocab-size − 1.
    public var eod: Int32 { Int32(vocabSize - 1) }

    /// Full samples before wrapping around.
    public var sampleCount: Int { (starts.last! - 1) / sequenceLength }

    /// Sample `index`: tokens [i·s, i·s + s] of the document stream, i = index mod sampleCount.
    public func sample(_ index: Int) -> [Int32] {
        let first = (index % sampleCount) * sequenceLength
        // The document holding `first`: the last start not after it (binary search).
        var low = 0, high = starts.count - 1
        while high - low > 1 {
            let mid = (low + high) / 2
            if starts[mid] <= first { low = mid } else { high = mid }
        }
        var document = low
        return (first ... first + sequenceLength).map { position in
            while position >= starts[document + 1] { document += 1 }
            let offset = position - starts[document], length = starts[document + 1] - starts[document]
            return offset == length - 1 ? eod : Int32((offset + 1) % vocabSize)
        }
    }
}
