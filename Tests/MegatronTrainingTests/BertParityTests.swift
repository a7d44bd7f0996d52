import Foundation
import MegatronCore
import MegatronModels
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

    @Test func paddingThatIsNotASuffixIsRefused() throws {
        #expect(throws: TensorError.self) {
            try BertMicroBatch(tokens: [[1, 2, 3]], tokentypes: [[0, 0, 1]], paddingMask: [[1, 0, 1]], labels: [[0, 0, 0]],
                               lossMask: [[0, 1, 0]], sentenceOrder: [0], on: device)
        }
    }
}
