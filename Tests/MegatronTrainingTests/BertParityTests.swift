import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronTraining
import Testing

/// BertModel against transformers' own BERTs, from fixtures written by
/// Tests/Fixtures/make_bert_fixtures.py (float64, random weights): `BertForPreTraining` (the
/// original post-norm BERT, Megatron's --apply-residual-connection-post-layernorm) and
/// `MegatronBertForPreTraining` (Megatron's pre-norm BERT), each over padded sequences with token
/// types, masked-LM labels and sentence-order labels.
@Suite struct BertParityTests {
    static let variants = ["post_ln", "pre_ln"]
    let device = CPUDevice(threads: 1)

    struct Fixture {
        let reference: ParityFixture
        let config: BertConfig

        init(_ variant: String) throws {
            reference = try ParityFixture("bert_\(variant).safetensors")
            let c = reference.config
            var transformer = TransformerConfig(numLayers: c["num_layers"] as! Int, hiddenSize: c["hidden_size"] as! Int,
                                                numAttentionHeads: c["num_attention_heads"] as! Int,
                                                ffnHiddenSize: c["ffn_hidden_size"] as? Int, paddedVocabSize: c["padded_vocab_size"] as! Int,
                                                maxPositionEmbeddings: c["max_position_embeddings"] as! Int)
            transformer.normEpsilon = Float(c["norm_epsilon"] as! Double)
            transformer.biasGELUFusion = c["bias_gelu_fusion"] as! Bool
            transformer.applyResidualConnectionPostLayernorm = c["apply_residual_connection_post_layernorm"] as! Bool
            transformer.hiddenDropout = 0
            transformer.attentionDropout = 0
            config = BertConfig(transformer: transformer, bertBinaryHead: c["bert_binary_head"] as! Bool)
        }

        /// The fixture's batch `prefix` ("step", "train").
        func batch(_ prefix: String, on device: CPUDevice) throws -> BertMicroBatch {
            func rows(_ name: String) -> [[Int32]] { reference.rows(prefix + "." + name) }
            return try BertMicroBatch(tokens: rows("tokens"), tokentypes: rows("types"), paddingMask: rows("padding_mask"),
                                      labels: rows("labels"), lossMask: rows("loss_mask"),
                                      sentenceOrder: reference.int32s(prefix + ".is_random"), on: device)
        }

        /// The fixture's batch `prefix` as training samples.
        func samples(_ prefix: String) -> [BertSample] {
            func rows(_ name: String) -> [[Int32]] { reference.rows(prefix + "." + name) }
            let (text, types, labels, lossMask, padding) = (rows("tokens"), rows("types"), rows("labels"), rows("loss_mask"), rows("padding_mask"))
            return zip(text.indices, reference.int32s(prefix + ".is_random")).map { i, isRandom in
                BertSample(text: text[i], types: types[i], labels: labels[i], isRandom: isRandom, lossMask: lossMask[i], paddingMask: padding[i])
            }
        }
    }

    @Test(arguments: variants)
    func oneStepLossesAndGradientsMatchTransformers(variant: String) throws {
        let fixture = try Fixture(variant)
        let model = try BertModel(config: fixture.config, seed: 0, on: device)
        try fixture.reference.copyWeights(into: model.parameters, layout: model.layout)
        let batch = try fixture.batch("step", on: device)
        #expect(batch.keyCounts.contains { $0 < batch.sequenceLength }, "the fixture pads some sequences")
        let loss = try model.forwardBackward(batch, dropout: .init(seed: 0, iteration: 0, microBatch: 0))
        for (name, ours) in [("lm", loss.lm.mean), ("sop", loss.sop.mean)] {
            let expected = try fixture.reference.tensors["step.\(name)_loss"]!.floats()[0]
            #expect(abs(ours - expected) <= 1e-5 * abs(expected), "\(variant): \(name) loss \(ours), transformers \(expected)")
        }
        try fixture.reference.expectGradients(model.gradients, layout: model.layout, variant)
        let evaluation = try model.loss(batch)
        #expect(abs(evaluation.total - loss.total) <= 1e-6 * loss.total, "evaluation loss \(evaluation.total) vs \(loss.total)")
    }

    /// 10 AdamW iterations of 2 micro-batches through the Trainer (warm-up, cosine decay, clipping,
    /// no decay on 1-D parameters): each iteration's lm loss + sop loss equals transformers'.
    @Test(arguments: variants)
    func tenAdamWIterationsThroughTheTrainerMatchTransformers(variant: String) throws {
        let fixture = try Fixture(variant)
        let model = try BertModel(config: fixture.config, seed: 0, on: device)
        try fixture.reference.copyWeights(into: model.parameters, layout: model.layout)
        var lines: [String] = []
        let trainer = try fixture.reference.trainer(model, samples: fixture.samples("train"),
                                                    sequenceLength: fixture.reference.config["seq_length"] as! Int) { lines.append($0) }
        let results = try trainer.train()
        let expected = try fixture.reference.tensors["train.losses"]!.floats()
        #expect(results.count == expected.count)
        for (i, (result, theirs)) in zip(results, expected).enumerated() {
            #expect(result.losses.map(\.name) == ["lm loss", "sop loss"])
            let ours = Float(result.losses.map(\.value).reduce(0, +))
            #expect(abs(ours - theirs) <= 1e-4 * abs(theirs), "\(variant): iteration \(i + 1): lm + sop loss \(ours), transformers \(theirs)")
        }
        let logged = lines.first { $0.contains("iteration") && $0.contains("lm loss:") }
        #expect(logged?.contains("sop loss:") == true, "the log line names both losses: \(lines)")
    }

    /// A padding mask that also hides keys inside sequences (Megatron's dataset marks a masked
    /// token replaced by [PAD] as padding): losses and gradients equal transformers' under the
    /// same attention mask.
    @Test(arguments: variants)
    func paddingInsideSequencesMatchesTransformers(variant: String) throws {
        let fixture = try Fixture(variant)
        let model = try BertModel(config: fixture.config, seed: 0, on: device)
        try fixture.reference.copyWeights(into: model.parameters, layout: model.layout)
        let batch = try fixture.batch("holes", on: device)
        let loss = try model.forwardBackward(batch, dropout: .init(seed: 0, iteration: 0, microBatch: 0))
        for (name, ours) in [("lm", loss.lm.mean), ("sop", loss.sop.mean)] {
            let expected = try fixture.reference.tensors["holes.\(name)_loss"]!.floats()[0]
            #expect(abs(ours - expected) <= 1e-5 * abs(expected), "\(variant): \(name) loss \(ours), transformers \(expected)")
        }
        try fixture.reference.expectGradients(model.gradients, layout: model.layout, variant + " (padding inside)", prefix: "holes.grad.")
    }

    @Test func aSequenceStartingWithPaddingIsRefused() throws {
        #expect(throws: TensorError.self) {
            try BertMicroBatch(tokens: [[1, 2, 3]], tokentypes: [[0, 0, 1]], paddingMask: [[0, 1, 1]], labels: [[0, 0, 0]],
                               lossMask: [[0, 1, 0]], sentenceOrder: [0], on: device)
        }
    }
}
