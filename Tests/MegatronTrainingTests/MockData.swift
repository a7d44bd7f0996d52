import MegatronData

/// Training samples for these tests: Megatron's mock documents 0 ..< 64 (about 130,000 tokens),
/// packed and shuffled by GPTDataset, as `pretrain --mock-data` reads them.
struct MockData: Sendable {
    let dataset: GPTDataset

    init(vocabSize: Int, sequenceLength: Int, seed: UInt32) throws {
        dataset = try GPTDataset(MockGPTLowLevelDataset(vocabSize: vocabSize, endOfDocument: Int32(vocabSize - 1)),
                                 documents: 0 ..< 64, numSamples: 1, sequenceLength: sequenceLength, seed: seed)
    }

    func sample(_ i: Int) -> [Int32] { dataset.sample(i) }
}
