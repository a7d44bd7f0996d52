import Foundation
import MegatronData
import Testing

/// T5Dataset against Megatron's own T5MaskedWordPieceDataset (megatron-core on the CPU), from
/// Tests/Fixtures/bert_dataset/t5_samples.json (make_t5_dataset_fixtures.py): the sample index and
/// every sample (truncation, geometric span masking, sentinels, decoder input and labels, masks).
@Suite struct T5DatasetTests {
    struct Case: Decodable {
        let name: String
        let sequence_length: Int
        let sequence_length_decoder: Int
        let masking_probability: Double
        let short_sequence_probability: Double
        let seed: Int32
        let documents: [Int]
        let num_samples: Int
        let sample_index: [[Int]]
        let samples: [Sample]
    }

    struct Sample: Decodable {
        let text_enc: [Int32], text_dec: [Int32], labels: [Int32], loss_mask: [Int32], enc_mask: [Int32], dec_mask: [Int32], truncated: Int
    }

    struct Fixture: Decodable {
        let vocab_size: Int
        let extra_ids: Int
        let cases: [Case]
    }

    @Test func samplesEqualMegatrons() throws {
        let directory = BertDatasetTests.directory
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: directory.appendingPathComponent("t5_samples.json")))
        let tokenizer = try BertWordPieceTokenizer(vocabFile: directory.appendingPathComponent("vocab.txt").path, lowerCase: true,
                                                   extraIDs: fixture.extra_ids)
        #expect(tokenizer.vocabSize == fixture.vocab_size)
        let indexed = try IndexedDataset(prefix: directory.appendingPathComponent("corpus").path)
        for c in fixture.cases {
            let dataset = try T5Dataset(indexed, documents: c.documents[0] ..< c.documents[1], numSamples: c.num_samples,
                                        encoderSequenceLength: c.sequence_length, decoderSequenceLength: c.sequence_length_decoder,
                                        tokenizer: tokenizer, maskProbability: c.masking_probability,
                                        shortSequenceProbability: c.short_sequence_probability, seed: c.seed)
            let index = dataset.base.sampleIndex.samples.map { [$0.sentences.lowerBound, $0.sentences.upperBound, $0.targetLength] }
            #expect(index == c.sample_index, "\(c.name): sample index")
            for (i, expected) in c.samples.enumerated() where i < dataset.count {
                let (ours, truncated) = try dataset.sample(i)
                let theirs = T5Sample(encoderTokens: expected.text_enc, decoderTokens: expected.text_dec, labels: expected.labels,
                                      lossMask: expected.loss_mask, encoderMask: expected.enc_mask, decoderMask: expected.dec_mask)
                #expect(ours == theirs && truncated == (expected.truncated == 1), "\(c.name): sample \(i)\n ours \(ours)\n Megatron \(theirs)")
            }
        }
    }

    @Test func tooFewSentinelsAndAShortDecoderAreErrors() throws {
        let directory = BertDatasetTests.directory
        let indexed = try IndexedDataset(prefix: directory.appendingPathComponent("corpus").path)
        let vocab = directory.appendingPathComponent("vocab.txt").path
        #expect {
            try T5Dataset(indexed, documents: 0 ..< 40, numSamples: 10, encoderSequenceLength: 64, decoderSequenceLength: 32,
                          tokenizer: BertWordPieceTokenizer(vocabFile: vocab, lowerCase: true, extraIDs: 2), maskProbability: 0.15,
                          shortSequenceProbability: 0.1, seed: 1)
        } throws: { "\($0)".contains("--vocab-extra-ids") }
        let short = try T5Dataset(indexed, documents: 0 ..< 40, numSamples: 10, encoderSequenceLength: 64, decoderSequenceLength: 3,
                                  tokenizer: BertWordPieceTokenizer(vocabFile: vocab, lowerCase: true, extraIDs: 100), maskProbability: 0.3,
                                  shortSequenceProbability: 0, seed: 1)
        #expect { try (0 ..< short.count).forEach { _ = try short.sample($0) } } throws: { "\($0)".contains("--decoder-seq-length 3") }
    }
}
