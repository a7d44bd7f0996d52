import MegatronCore
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// 16-bit parameter storage (`ParameterStorage`, `ParameterWindow`) and the precision-aware
/// optimizer, against the fp32 buffers holding 16-bit values that they replace.
struct SixteenBitStorageTests {
    static let bf16Parameters = ParameterStorage(parameters: .bfloat16)

    /// Losses of `steps` AdamW steps on one rank (no data-parallel wrapper) over fixed micro-batches.
    static func train(storage: ParameterStorage, steps: Int = 8, _ precision: (inout Optimizer.Settings) -> Void) throws -> [Float] {
        let config = TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, paddedVocabSize: 128, maxPositionEmbeddings: 16)
        let device = CPUDevice(threads: 1)
        let model = try GPTModel(config: config, seed: 3, storage: storage, on: device)
        model.recompute = .selective([.coreAttention])
        var settings = Optimizer.Settings()
        settings.clipGrad = 0.3
        precision(&settings)
        let optimizer = try Optimizer(model: model, settings: settings)
        var random = UInt64(7), losses: [Float] = []
        for step in 0 ..< steps {
            let samples = (0 ..< 2).map { _ in
                (0 ... 16).map { _ -> Int32 in
                    random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    return Int32((random >> 33) % 16)  // a small alphabet the model can learn
                }
            }
            model.zeroGradients()
            losses.append(try model.forwardBackward(MicroBatch(samples: samples, on: device), lossWeight: optimizer.lossScale,
                                                    dropout: .init(seed: 1, iteration: step, microBatch: 0)).mean)
            try optimizer.step(learningRate: 3e-3)
        }
        return losses
    }

    /// bf16 parameters with fp32 gradients hold and compute on the same values as fp32 buffers rounded
    /// to bf16: the same run to fp32 rounding (the output layer's panels sum in another order) and to
    /// the logits' rounding to bf16.
    @Test func bf16StorageTrainsAsFP32BuffersHoldingBF16Values() throws {
        let emulated = try Self.train(storage: .float32) { $0.paramsDType = .bfloat16 }
        let stored = try Self.train(storage: Self.bf16Parameters) { $0.paramsDType = .bfloat16 }
        #expect(stored.last! < stored.first! - 0.2, "it learns")
        for (step, (a, b)) in zip(emulated, stored).enumerated() {
            #expect(abs(a - b) <= 1e-4 * a, "step \(step + 1): loss \(a) vs \(b)")
        }
    }

    /// Under 16-bit storage training keeps the logits and their gradient in bf16, the cross-entropy
    /// reading blocks of rows in fp32: over a vocabulary large enough for several blocks, the loss and
    /// gradients are those of fp32 logits to bf16's rounding of the logits.
    @Test func sixteenBitLogitsLoseOnlyTheirRounding() throws {
        let config = TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, paddedVocabSize: 65536, maxPositionEmbeddings: 48)
        let device = CPUDevice(threads: 2)
        let stored = try GPTModel(config: config, seed: 5, storage: Self.bf16Parameters, on: device)
        #expect(stored.trainingLogitsPrecision == .bfloat16)
        let emulated = try GPTModel(config: config, seed: 5, on: device)
        try emulated.parameters.assign(converting: stored.parameters, on: device)
        var random = UInt64(9)
        let samples = (0 ..< 2).map { _ in
            (0 ... 48).map { _ -> Int32 in
                random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int32((random >> 33) % 65536)
            }
        }
        // 96 rows of 65536 logits: blocks of 64 rows.
        let batch = try MicroBatch(samples: samples, on: device), dropout = DropoutKey(seed: 2, iteration: 0, microBatch: 0)
        let a = try emulated.forwardBackward(batch, lossWeight: 4, dropout: dropout).mean
        let b = try stored.forwardBackward(batch, lossWeight: 4, dropout: dropout).mean
        #expect(abs(a - b) <= 1e-3 * a, "loss \(a) with fp32 logits, \(b) with bf16")
        let (x, y) = (emulated.gradients.toFloatArray(), stored.gradients.toFloatArray())
        let scale = x.map(abs).max()!, worst = zip(x, y).map { abs($0 - $1) }.max()!
        #expect(worst <= 0.02 * scale, "gradients differ by \(worst) of values up to \(scale)")
        #expect(x != y, "the bf16 logits must show")
    }

    /// The same blocks of 16-bit logits split over two tensor-parallel ranks (each its half of the
    /// vocabulary, the cross-entropy's maxima and sums reduced block by block): one rank's loss.
    @Test func sixteenBitLogitsOverTensorParallelRanksGiveOneRanksLoss() throws {
        let config = TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, paddedVocabSize: 65536, maxPositionEmbeddings: 96)
        var random = UInt64(4)
        let samples = (0 ..< 2).map { _ in
            (0 ... 96).map { _ -> Int32 in
                random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int32((random >> 33) % 65536)
            }
        }
        // 192 rows of 32768 logits a rank: blocks of 128 rows.
        let dropout = DropoutKey(seed: 2, iteration: 0, microBatch: 0)
        let single = try GPTModel(config: config, seed: 5, storage: Self.bf16Parameters, on: CPUDevice(threads: 1))
        let loss = try single.forwardBackward(MicroBatch(samples: samples, on: single.device), dropout: dropout).mean
        try InProcessWorld(size: 2).run { world in
            let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: 2, tensorModelParallelSize: 2))
            let model = try GPTModel(config: config, seed: 5, groups: groups, storage: Self.bf16Parameters, on: CPUDevice(threads: 1))
            let split = try model.forwardBackward(MicroBatch(samples: samples, on: model.device), dropout: dropout).mean
            #expect(abs(split - loss) <= 1e-5 * loss, "rank \(world.rank): loss \(split), one rank's \(loss)")
        }
    }

    /// bf16 gradients and Megatron's precision-aware optimizer (bf16 moments, main parameters as
    /// remainders) track fp32 buffers to bf16's precision, and differ from them.
    @Test func bf16GradientsAndThePrecisionAwareOptimizerTrackFP32Buffers() throws {
        let emulated = try Self.train(storage: .float32) { $0.paramsDType = .bfloat16 }
        let aware = try Self.train(storage: ParameterStorage(parameters: .bfloat16, gradients: .bfloat16)) { settings in
            settings.paramsDType = .bfloat16
            settings.expAvgDType = .bfloat16
            settings.expAvgSqDType = .bfloat16
            settings.storeParamRemainders = true
        }
        #expect(aware.last! < aware.first! - 0.2, "it learns")
        for (step, (a, b)) in zip(emulated, aware).enumerated() {
            #expect(abs(a - b) <= 0.01 * a, "step \(step + 1): loss \(a) vs \(b)")
        }
        #expect(zip(emulated, aware).contains { $0 != $1 }, "the 16-bit state must show")
    }

    @Test func remaindersNeedBF16Storage() throws {
        let config = TransformerConfig(numLayers: 1, hiddenSize: 32, numAttentionHeads: 4, paddedVocabSize: 128, maxPositionEmbeddings: 16)
        let model = try GPTModel(config: config, seed: 1, on: CPUDevice(threads: 1))
        var settings = Optimizer.Settings()
        settings.paramsDType = .bfloat16
        settings.storeParamRemainders = true
        #expect { try Optimizer(model: model, settings: settings) } throws: { "\($0)".contains("remainders need bf16 parameter storage") }
    }
}
