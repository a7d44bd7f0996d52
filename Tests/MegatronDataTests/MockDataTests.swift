import Foundation
import MegatronData
import Testing

/// numpy.random.default_rng and Megatron's mock GPT data against the `default_rng` part of
/// Tests/Fixtures/gpt_dataset_indices.json (written by make_gpt_dataset_fixtures.py with NumPy).
@Suite struct MockDataTests {
    nonisolated(unsafe) static let fixture = GPTDatasetTests.fixture["default_rng"] as! [String: Any]

    @Test func seedSequenceMatchesNumPy() {
        for case let (seed, words as [NSNumber]) in Self.fixture["seed_sequence_words"] as! [String: Any] {
            #expect(NumPyGenerator.seedSequenceState(entropy: UInt64(seed)!, words: 8) == words.map(\.uint32Value), "seed \(seed)")
        }
    }

    @Test func pcg64MatchesNumPy() {
        var random = NumPyGenerator(seed: 0)
        let expected = (Self.fixture["pcg64_seed_0_first_3"] as! [String]).map { UInt64($0)! }
        #expect((0 ..< 3).map { _ in random.nextUInt64() } == expected)
    }

    @Test func mockDocumentLengthsAreMegatrons() {
        let mock = MockGPTLowLevelDataset(vocabSize: 50304, endOfDocument: 50303)
        let lengths = mock.sequenceLengths.map(Int.init)
        #expect(lengths.count == 100_000)
        #expect(Array(lengths.prefix(10)) == GPTDatasetTests.ints(Self.fixture["mock_lengths_head"]))
        #expect(Array(lengths.suffix(3)) == GPTDatasetTests.ints(Self.fixture["mock_lengths_tail"]))
        #expect(lengths.reduce(0, +) == (Self.fixture["mock_lengths_sum"] as! NSNumber).intValue)
        #expect(mock.sequence(7) == (1 ..< lengths[7]).map(Int32.init) + [50303], "1, 2, …, n − 1, then the end of document")
    }

    @Test func mockSamplesAreMegatrons() throws {
        let c = Self.fixture["mock"] as! [String: Any]
        let vocab = (c["vocab_size"] as! NSNumber).intValue
        let documents = GPTDatasetTests.ints(c["train_documents"])
        let dataset = try GPTDataset(MockGPTLowLevelDataset(vocabSize: vocab, endOfDocument: Int32(vocab - 1)),
                                     documents: documents[0] ..< documents[1], numSamples: (c["num_samples"] as! NSNumber).intValue,
                                     sequenceLength: (c["sequence_length"] as! NSNumber).intValue, seed: (c["seed"] as! NSNumber).uint32Value)
        #expect(dataset.epochs == (c["epochs"] as! NSNumber).intValue)
        #expect(dataset.count == (c["count"] as! NSNumber).intValue)
        for (i, expected) in (c["first_samples"] as! [[NSNumber]]).enumerated() {
            #expect(dataset.sample(i).map(Int.init) == expected.map(\.intValue), "sample \(i)")
        }
    }
}
