import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import Testing

/// Parity with a PyTorch (float64) implementation of the same architecture, from fixtures written by
/// Tests/Fixtures/make_gpt_fixtures.py: one step's loss and every gradient, and the losses of 10
/// AdamW iterations with gradient accumulation, clipping, warm-up and cosine decay.
@Suite struct PyTorchParityTests {
    static let variants = ["base", "rope", "rmsnorm", "swiglu", "gqa", "no_bias_qkv_bias", "untied", "kv_channels_ffn",
                           "no_bias_gelu_fusion"]
    let device = CPUDevice(threads: 1)

    struct Fixture {
        let reference: ParityFixture
        let config: TransformerConfig
        let sequenceLength: Int

        init(_ variant: String) throws {
            reference = try ParityFixture("gpt_\(variant).safetensors")
            let c = reference.config
            var config = TransformerConfig(numLayers: c["num_layers"] as! Int, hiddenSize: c["hidden_size"] as! Int,
                                           numAttentionHeads: c["num_attention_heads"] as! Int, numQueryGroups: c["num_query_groups"] as? Int,
                                           kvChannels: c["kv_channels"] as? Int, ffnHiddenSize: c["ffn_hidden_size"] as? Int,
                                           paddedVocabSize: c["padded_vocab_size"] as! Int,
                                           maxPositionEmbeddings: c["max_position_embeddings"] as! Int)
            config.positionEmbedding = TransformerConfig.PositionEmbedding(rawValue: c["position_embedding_type"] as! String)!
            config.rotaryBase = Float(c["rotary_base"] as! Double)
            config.rotaryPercent = Float(c["rotary_percent"] as! Double)
            config.normalization = TransformerConfig.Normalization(rawValue: c["normalization"] as! String)!
            config.normEpsilon = Float(c["norm_epsilon"] as! Double)
            config.swiglu = c["swiglu"] as! Bool
            config.addBiasLinear = c["add_bias_linear"] as! Bool
            config.addQKVBias = c["add_qkv_bias"] as! Bool
            config.untieEmbeddingsAndOutputWeights = c["untie_embeddings_and_output_weights"] as! Bool
            config.biasGELUFusion = c["bias_gelu_fusion"] as! Bool
            config.hiddenDropout = 0
            config.attentionDropout = 0
            self.config = config
            sequenceLength = c["seq_length"] as! Int
        }

        /// A model holding the fixture's weights.
        func model(on device: CPUDevice) throws -> GPTModel {
            let model = try GPTModel(config: config, seed: 0, on: device)
            try reference.copyWeights(into: model.parameters, layout: model.layout)
            return model
        }
    }

    @Test(arguments: variants)
    func oneStepLossAndGradients(variant: String) throws {
        let fixture = try Fixture(variant)
        let model = try fixture.model(on: device)
        model.zeroGradients()
        let loss = try model.forwardBackward(MicroBatch(samples: fixture.reference.rows("step.tokens"), on: device),
                                             dropout: .init(seed: 0, iteration: 0, microBatch: 0)).mean
        let expected = try fixture.reference.tensors["step.loss"]!.floats()[0]
        #expect(abs(loss - expected) <= 1e-5 * abs(expected), "\(variant): loss \(loss), PyTorch \(expected)")
        try fixture.reference.expectGradients(model.gradients, layout: model.layout, variant)
    }

    @Test(arguments: variants)
    func tenAdamWIterationsWithWarmupAndCosine(variant: String) throws {
        let fixture = try Fixture(variant)
        let model = try fixture.model(on: device)
        let samples = fixture.reference.rows("train.samples")
        let trainer = try fixture.reference.trainer(model, samples: samples, sequenceLength: fixture.sequenceLength)
        let losses = try trainer.train().map(\.loss)
        let expected = try fixture.reference.tensors["train.losses"]!.floats()
        for (i, (ours, theirs)) in zip(losses, expected).enumerated() {
            #expect(abs(ours - theirs) <= 1e-4 * abs(theirs), "\(variant): iteration \(i + 1): loss \(ours), PyTorch \(theirs)")
        }
    }
}
