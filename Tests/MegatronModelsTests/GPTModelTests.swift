import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import Testing

let device = CPUDevice(threads: 1)

/// A tiny GPT: 2 layers, hidden 16, 4 heads of 4, ffn 24, vocab 40 padded to 64, 8 positions.
func tinyConfig(_ edit: (inout TransformerConfig) -> Void = { _ in }) -> TransformerConfig {
    var c = TransformerConfig(numLayers: 2, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 24,
                              paddedVocabSize: TransformerConfig.paddedVocabSize(40, divisibleBy: 64), maxPositionEmbeddings: 8)
    c.hiddenDropout = 0
    c.attentionDropout = 0
    c.initMethodStd = 0.2  // large enough that every path carries gradient
    edit(&c)
    return c
}

/// Deterministic samples of `length` + 1 tokens below `vocab`.
func samples(_ batch: Int, _ length: Int, vocab: Int = 40, seed: UInt64 = 1) -> [[Int32]] {
    var state = seed
    return (0 ..< batch).map { _ in
        (0 ... length).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int32((state >> 33) % UInt64(vocab))
        }
    }
}

@Suite struct GPTModelTests {
    static let variants: [(String, TransformerConfig)] = [
        ("learned positions, LayerNorm, GELU, biases", tinyConfig()),
        ("RoPE (half of each head), RMSNorm, SwiGLU, 2 query groups, no bias but QKV, untied output", tinyConfig {
            $0.positionEmbedding = .rope; $0.rotaryPercent = 0.5; $0.normalization = .rmsNorm; $0.swiglu = true
            $0.numQueryGroups = 2; $0.addBiasLinear = false; $0.addQKVBias = true; $0.untieEmbeddingsAndOutputWeights = true
        }),
        ("dropout everywhere", tinyConfig { $0.hiddenDropout = 0.2; $0.attentionDropout = 0.3 }),
    ]

    /// For every parameter tensor, the directional derivative along a random direction on that tensor
    /// alone, by central differences of the fp32 loss, against the backward's gradient.
    @Test(arguments: variants.indices)
    func everyGradientMatchesFiniteDifferences(variant: Int) throws {
        let (name, config) = Self.variants[variant]
        let model = try GPTModel(config: config, seed: 7, on: device)
        let batch = try MicroBatch(samples: samples(2, 8), on: device)
        let key = DropoutKey(seed: 3, iteration: 1, microBatch: 0)
        model.zeroGradients()
        try model.forwardBackward(batch, dropout: key)
        let gradient = model.gradients.toFloatArray()
        var rng: UInt64 = 99
        for entry in model.layout.entries {
            let direction: [Float] = (0 ..< entry.count).map { _ in
                rng = rng &* 6_364_136_223_846_793_005 &+ 1
                return Float(Int64(bitPattern: rng >> 11) % 2001 - 1000) / 1000
            }
            let analytic = (0 ..< entry.count).reduce(0.0) { $0 + Double(gradient[entry.offset + $1]) * Double(direction[$1]) }
            let saved = Array(UnsafeBufferPointer(start: model.parameters.floats + entry.offset, count: entry.count))
            func centralDifference(_ epsilon: Float) throws -> Double {
                var values: [Double] = []
                for sign: Float in [1, -1] {
                    for i in 0 ..< entry.count { model.parameters.floats[entry.offset + i] = saved[i] + sign * epsilon * direction[i] }
                    values.append(Double(try model.forwardBackward(batch, dropout: key).mean))
                }
                for i in 0 ..< entry.count { model.parameters.floats[entry.offset + i] = saved[i] }
                return (values[0] - values[1]) / (2 * Double(epsilon))
            }
            // Richardson extrapolation of two central differences cancels the O(ε²) error term.
            let numeric = (4 * (try centralDifference(5e-3)) - (try centralDifference(1e-2))) / 3
            #expect(abs(numeric - analytic) <= 2e-2 * abs(analytic) + 2e-4,
                    "\(name): \(entry.name): finite differences \(numeric), backward \(analytic)")
        }
    }

    @Test func overfitsOneBatchAndIsDeterministic() throws {
        var losses: [[Float]] = []
        for _ in 0 ..< 2 {
            let model = try GPTModel(config: tinyConfig { $0.initMethodStd = 0.02; $0.hiddenDropout = 0.1 }, seed: 1, on: device)
            let batch = try MicroBatch(samples: samples(2, 8), on: device)
            let m = try Tensor(shape: [model.layout.totalCount], on: device), v = try Tensor(shape: [model.layout.totalCount], on: device)
            var run: [Float] = []
            for step in 1 ... 300 {
                model.zeroGradients()
                run.append(try model.forwardBackward(batch, dropout: .init(seed: 5, iteration: step, microBatch: 0)).mean)
                try AdamW.update(param: model.parameters, grad: model.gradients, expAvg: m, expAvgSq: v, step: step,
                                 .init(learningRate: 1e-2, weightDecay: 0), on: device)
            }
            losses.append(run)
        }
        #expect(losses[0] == losses[1], "same seed, same losses, bit for bit")
        #expect(losses[0].first! > 3, "starts near ln(64)")
        #expect(losses[0].last! < 0.1, "overfits one batch: final loss \(losses[0].last!)")
    }

    @Test func layoutNamesAndCounts() throws {
        let c = tinyConfig()
        let layout = ParameterLayout(c)
        #expect(layout.entries.first?.name == "embedding.word_embeddings.weight")
        #expect(layout.entry("decoder.layers.1.self_attention.linear_qkv.weight")?.shape == [48, 16])
        #expect(layout.entry("output_layer.weight") == nil, "tied by default")
        // 64·16 + 8·16 + 2·(2·16 + 48·16 + 48 + 16·16 + 16 + 2·16 + 24·16 + 24 + 16·24 + 16) + 2·16
        #expect(layout.totalCount == 1024 + 128 + 2 * (32 + 768 + 48 + 256 + 16 + 32 + 384 + 24 + 384 + 16) + 32)
        #expect(layout.entry("decoder.layers.0.input_layernorm.bias")?.decays == false)
        #expect(layout.entry("decoder.layers.0.mlp.linear_fc1.weight")?.decays == true)
    }

    @Test func swigluDefaultsToTwoThirdsOfTheFFNWidthAsMegatron() {
        #expect(TransformerConfig.defaultFFNHiddenSize(hiddenSize: 768, swiglu: false) == 3072)
        #expect(TransformerConfig.defaultFFNHiddenSize(hiddenSize: 768, swiglu: true) == 2048)   // int(3072·2/3 / 64)·64
        #expect(TransformerConfig.defaultFFNHiddenSize(hiddenSize: 4096, swiglu: true) == 10880)  // 10922.67 → 170·64
    }

    @Test func rotaryPercentAboveOneRotatesEveryFeatureAsMegatron() {
        let c = tinyConfig { $0.positionEmbedding = .rope }
        #expect(c.rotaryDim == c.kvChannels)
        #expect(tinyConfig { $0.positionEmbedding = .rope; $0.rotaryPercent = 2 }.rotaryDim == c.kvChannels)
        #expect(tinyConfig { $0.positionEmbedding = .rope; $0.rotaryPercent = 0.5 }.rotaryDim == c.kvChannels / 2)
    }

    @Test func inconsistentConfigurationsAreNamed() {
        #expect { try GPTModel(config: tinyConfig { $0.numQueryGroups = 3 }, seed: 1, on: device) } throws: {
            "\($0)" == "--num-attention-heads 4 is not divisible by --num-query-groups 3"
        }
        #expect { try GPTModel(config: tinyConfig { $0.numQueryGroups = 0 }, seed: 1, on: device) } throws: {
            "\($0)" == "--num-query-groups 0: expected at least 1" && ($0 as? ConfigError)?.flag == "--num-query-groups"
        }
        #expect(throws: ConfigError.self) {
            try GPTModel(config: tinyConfig(), seed: 1, on: device).loss(MicroBatch(samples: samples(1, 9), on: device))
        }
    }
}

/// Megatron's _get_ltor_masks_and_position_ids for --eod-mask-loss and --reset-position-ids.
struct MicroBatchBoundaryTests {
    @Test func endOfDocumentMasksLossAndRestartsPositions() throws {
        let sample: [Int32] = [5, 9, 7, 9, 9, 3, 4]   // 9 ends a document; inputs are the first six
        var boundaries = MicroBatch.DocumentBoundaries(endOfDocument: 9)
        let plain = try MicroBatch(samples: [sample], on: device)
        #expect(plain.positions.toInt32Array() == [0, 1, 2, 3, 4, 5] && plain.lossMask.toFloatArray() == [1, 1, 1, 1, 1, 1])
        boundaries.eodMaskLoss = true
        let masked = try MicroBatch(samples: [sample], boundaries: boundaries, on: device)
        #expect(masked.lossMask.toFloatArray() == [1, 0, 1, 0, 0, 1] && masked.positions.toInt32Array() == [0, 1, 2, 3, 4, 5])
        boundaries.eodMaskLoss = false
        boundaries.resetPositionIDs = true
        let reset = try MicroBatch(samples: [sample, sample], boundaries: boundaries, on: device)
        #expect(reset.positions.toInt32Array() == [0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0])
        #expect(reset.lossMask.toFloatArray() == Array(repeating: 1, count: 12))
        #expect(reset.attentionFirstKeys == nil)
        boundaries.resetAttentionMask = true
        let documents = try MicroBatch(samples: [sample], boundaries: boundaries, on: device)
        #expect(documents.attentionFirstKeys?.toInt32Array() == [0, 0, 2, 2, 4, 5])
    }

    /// With positions and attention reset at end-of-document tokens, a document packed after another
    /// gets exactly the logits it gets alone.
    @Test func aPackedDocumentSeesOnlyItself() throws {
        for rope in [false, true] {
            let model = try GPTModel(config: tinyConfig { if rope { $0.positionEmbedding = .rope } }, seed: 3, on: device)
            var boundaries = MicroBatch.DocumentBoundaries(endOfDocument: 39)
            boundaries.resetPositionIDs = true
            boundaries.resetAttentionMask = true
            let packed = try model.logits(MicroBatch(samples: [[3, 4, 5, 39, 6, 7, 8, 9]], boundaries: boundaries, on: device))
            let alone = try model.logits(MicroBatch(samples: [[6, 7, 8, 9]], on: device))
            let v = packed.columns
            let tail = Array(packed.toFloatArray()[4 * v ..< 7 * v]), expected = alone.toFloatArray()
            #expect(zip(tail, expected).allSatisfy { abs($0 - $1) <= 1e-5 }, "rope \(rope)")
            let mixed = try model.logits(MicroBatch(samples: [[3, 4, 5, 39, 6, 7, 8, 9]], on: device))
            #expect(!zip(Array(mixed.toFloatArray()[4 * v ..< 7 * v]), expected).allSatisfy { abs($0 - $1) <= 1e-5 })
        }
    }
}

/// The groups of a world whose ranks form one tensor-parallel group.
func tensorParallelGroups(_ world: any Communicator) throws -> ProcessGroups {
    try ProcessGroups(world: world, state: ParallelState(worldSize: world.size, tensorModelParallelSize: world.size))
}
