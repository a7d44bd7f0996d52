import Foundation
import MegatronData
import Testing

/// BertDataset against Megatron's own BERTMaskedWordPieceDataset (megatron-core on the CPU), from
/// Tests/Fixtures/bert_dataset written by make_bert_dataset_fixtures.py: the sample index (sentence
/// runs, target lengths, shuffle) and every sample (segments, sentence order, truncation, masking).
@Suite struct BertDatasetTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/bert_dataset")

    struct Case: Decodable {
        let name: String
        let sequence_length: Int
        let masking_probability: Double
        let short_sequence_probability: Double
        let seed: Int32
        let classification_head: Bool
        let documents: [Int]
        let num_samples: Int
        let sample_index: [[Int]]
        let samples: [Sample]
    }

    struct Sample: Decodable {
        let text: [Int32], types: [Int32], labels: [Int32], is_random: Int32, padding_mask: [Int32], loss_mask: [Int32], truncated: Int
    }

    struct Fixture: Decodable {
        let vocab_size: Int
        let cases: [Case]
    }

    static func fixture() throws -> Fixture {
        try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: directory.appendingPathComponent("samples.json")))
    }

    static func dataset(_ c: Case) throws -> BertDataset {
        let tokenizer = try BertWordPieceTokenizer(vocabFile: directory.appendingPathComponent("vocab.txt").path, lowerCase: true)
        return try BertDataset(IndexedDataset(prefix: directory.appendingPathComponent("corpus").path),
                               documents: c.documents[0] ..< c.documents[1], numSamples: c.num_samples, sequenceLength: c.sequence_length,
                               binaryHead: c.classification_head, tokenizer: tokenizer, maskProbability: c.masking_probability,
                               shortSequenceProbability: c.short_sequence_probability, seed: c.seed)
    }

    @Test func samplesEqualMegatrons() throws {
        let fixture = try Self.fixture()
        let tokenizer = try BertWordPieceTokenizer(vocabFile: Self.directory.appendingPathComponent("vocab.txt").path, lowerCase: true)
        #expect(tokenizer.vocabSize == fixture.vocab_size)
        for c in fixture.cases {
            let dataset = try Self.dataset(c)
            let index = dataset.base.sampleIndex.samples.map { [$0.sentences.lowerBound, $0.sentences.upperBound, $0.targetLength] }
            #expect(index == c.sample_index, "\(c.name): sample index")
            #expect(dataset.count == c.samples.count)
            for (i, expected) in c.samples.enumerated() where i < dataset.count {
                let (ours, truncated) = dataset.sample(i)
                let theirs = BertSample(text: expected.text, types: expected.types, labels: expected.labels, isRandom: expected.is_random,
                                        lossMask: expected.loss_mask, paddingMask: expected.padding_mask)
                #expect(ours == theirs && truncated == (expected.truncated == 1), "\(c.name): sample \(i)\n ours \(ours)\n Megatron \(theirs)")
            }
        }
    }

    @Test func aCorpusWithoutTwoSentenceDocumentsIsRefusedWithTheFix() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bert-one-sentence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let prefix = directory.appendingPathComponent("corpus").path
        let builder = try IndexedDatasetBuilder(prefix: prefix, tokenType: .uint16)
        for d in 0 ..< 4 { try builder.addDocument([Int32](repeating: Int32(5 + d), count: 6), lengths: [6]) }
        try builder.finish()
        let tokenizer = try BertWordPieceTokenizer(vocabFile: Self.directory.appendingPathComponent("vocab.txt").path, lowerCase: true)
        #expect {
            try BertDataset(IndexedDataset(prefix: prefix), documents: 0 ..< 4, numSamples: 10, sequenceLength: 16, binaryHead: true,
                            tokenizer: tokenizer, maskProbability: 0.15, shortSequenceProbability: 0.1, seed: 1234)
        } throws: { "\($0)".contains("--split-sentences") }
        // Without the binary head one sentence is a sample.
        let single = try BertDataset(IndexedDataset(prefix: prefix), documents: 0 ..< 4, numSamples: 10, sequenceLength: 16, binaryHead: false,
                                     tokenizer: tokenizer, maskProbability: 0.15, shortSequenceProbability: 0.1, seed: 1234)
        #expect(single.count == 12 && single.base.sampleIndex.epochs == 3)
    }
}
