import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronTraining
import Testing

/// T5Model against transformers' T5ForConditionalGeneration, from fixtures written by
/// Tests/Fixtures/make_t5_fixtures.py (float64, random weights, relative position buckets, RMSNorm,
/// gated SiLU, no biases, tied embeddings; the query weights and the decoder's final norm converted
/// for Megatron's 1/√d score scaling and T5's scaled decoder output): one step's loss and every
/// gradient, over encoder sequences of different lengths.
@Suite struct T5ParityTests {
    static let variants = ["t5_relative", "t5_unscaled"]
    let device = CPUDevice(threads: 1)

    struct Fixture {
        let reference: ParityFixture
        let config: T5Config

        init(_ variant: String) throws {
            reference = try ParityFixture("\(variant).safetensors")
            let c = reference.config
            var transformer = TransformerConfig(numLayers: c["num_layers"] as! Int, hiddenSize: c["d_model"] as! Int,
                                                numAttentionHeads: c["num_heads"] as! Int, kvChannels: c["d_kv"] as? Int,
                                                ffnHiddenSize: c["d_ff"] as? Int, paddedVocabSize: c["vocab_size"] as! Int,
                                                maxPositionEmbeddings: c["encoder_seq_length"] as! Int)
            transformer.normalization = .rmsNorm
            transformer.normEpsilon = 1e-6
            transformer.swiglu = true
            transformer.addBiasLinear = false
            transformer.hiddenDropout = 0
            transformer.attentionDropout = 0
            config = T5Config(transformer: transformer, encoderNumLayers: c["num_layers"] as! Int,
                              decoderNumLayers: c["num_decoder_layers"] as! Int,
                              relativeAttention: .init(numBuckets: c["relative_attention_num_buckets"] as! Int,
                                                       maxDistance: c["relative_attention_max_distance"] as! Int))
        }

        /// The fixture's batch `prefix` as training samples.
        func samples(_ prefix: String) -> [T5Sample] {
            func rows(_ name: String) -> [[Int32]] { reference.rows(prefix + "." + name) }
            let (enc, dec, labels, loss, mask) = (rows("text_enc"), rows("text_dec"), rows("labels"), rows("loss_mask"), rows("enc_mask"))
            return enc.indices.map { i in
                T5Sample(encoderTokens: enc[i], decoderTokens: dec[i], labels: labels[i], lossMask: loss[i], encoderMask: mask[i],
                         decoderMask: [Int32](repeating: 1, count: dec[i].count))
            }
        }

        /// The fixture's batch `prefix` ("step", "train"), rows `rows`.
        func batch(_ prefix: String, rows: Range<Int>? = nil, on device: CPUDevice) throws -> T5MicroBatch {
            func get(_ name: String) -> [[Int32]] {
                let all = reference.rows(prefix + "." + name)
                return rows.map { Array(all[$0]) } ?? all
            }
            return try T5MicroBatch(encoderTokens: get("text_enc"), decoderTokens: get("text_dec"), labels: get("labels"),
                                    lossMask: get("loss_mask"), encoderMask: get("enc_mask"), on: device)
        }
    }

    @Test(arguments: variants)
    func oneStepLossAndGradientsMatchTransformers(variant: String) throws {
        let fixture = try Fixture(variant)
        let model = try T5Model(config: fixture.config, seed: 0, on: device)
        try fixture.reference.copyWeights(into: model.parameters, layout: model.layout)
        let batch = try fixture.batch("step", on: device)
        #expect(batch.encoderKeyCounts.contains { $0 < batch.encoderSequenceLength }, "the fixture pads some encoder sequences")
        let loss = try model.forwardBackward(batch, dropout: .init(seed: 0, iteration: 0, microBatch: 0)).mean
        let expected = try fixture.reference.tensors["step.loss"]!.floats()[0]
        #expect(abs(loss - expected) <= 1e-5 * abs(expected), "\(variant): loss \(loss), transformers \(expected)")
        try fixture.reference.expectGradients(model.gradients, layout: model.layout, variant)
        let evaluation = try model.loss(batch).mean
        #expect(abs(evaluation - loss) <= 1e-6 * loss, "evaluation loss \(evaluation) vs \(loss)")
    }

    /// 10 AdamW iterations of 2 micro-batches through the Trainer (warm-up, cosine decay, clipping,
    /// no decay on 1-D parameters) equal transformers' (the variant whose parameters are its own).
    @Test func tenAdamWIterationsThroughTheTrainerMatchTransformers() throws {
        let fixture = try Fixture("t5_unscaled")
        let model = try T5Model(config: fixture.config, seed: 0, on: device)
        try fixture.reference.copyWeights(into: model.parameters, layout: model.layout)
        model.decoderSequenceLength = fixture.reference.config["decoder_seq_length"] as! Int
        let trainer = try fixture.reference.trainer(model, samples: fixture.samples("train"),
                                                    sequenceLength: fixture.reference.config["encoder_seq_length"] as! Int)
        let losses = try trainer.train().map(\.loss)
        let expected = try fixture.reference.tensors["train.losses"]!.floats()
        #expect(losses.count == expected.count)
        for (i, (ours, theirs)) in zip(losses, expected).enumerated() {
            #expect(abs(ours - theirs) <= 1e-4 * abs(theirs), "iteration \(i + 1): loss \(ours), transformers \(theirs)")
        }
    }

    /// Greedy decoding from the fixture's weights writes the tokens transformers' greedy `generate`
    /// wrote (decoder start 0, end of text 1, 5 new tokens).
    @Test func greedyDecodingMatchesTransformersGenerate() throws {
        let fixture = try Fixture("t5_unscaled")
        let model = try T5Model(config: fixture.config, seed: 0, on: device)
        try fixture.reference.copyWeights(into: model.parameters, layout: model.layout)
        let tokens = fixture.reference.rows("generate.text_enc"), masks = fixture.reference.rows("generate.enc_mask")
        let sources = zip(tokens, masks).map { t, m in Array(t.prefix(m.count { $0 != 0 })) }
        let expected = fixture.reference.rows("generate.output").map { Array($0.dropFirst()) }
        let ours = try model.greedyDecode(sources, maxNewTokens: 5, vocabularySize: 64, start: 0, end: 1)
        #expect(ours == expected.map { row in Array(row.prefix { $0 != 1 }) + (row.contains(1) ? [1] : []) })
    }
}
