import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronTraining
import Testing

/// T5Model through the Trainer: tensor parallelism (relative position tables summed over the
/// ranks' heads), data parallelism with the distributed optimizer, and both, train as one rank does
/// with dropout on, and a T5 checkpoint saved on two tensor-parallel ranks resumes on one.
struct T5TrainingTests {
    /// The fixture's relative-position architecture with dropout and 2-wide heads, over its 40
    /// training samples.
    static func training(storage: ParameterStorage = .float32,
                         precision: @escaping @Sendable (inout Optimizer.Settings) -> Void = { _ in }) throws -> LayoutTraining<T5Model> {
        let fixture = try T5ParityTests.Fixture("t5_unscaled")
        var config = fixture.config
        config.transformer.hiddenDropout = 0.1
        config.transformer.attentionDropout = 0.1
        config.transformer.kvChannels = 2
        let modelConfig = config
        return LayoutTraining(samples: fixture.samples("train"), sequenceLength: 10, makeModel: { groups, seed in
            try T5Model(config: modelConfig, seed: seed, groups: groups, storage: storage, on: CPUDevice(threads: 1))
        }, precision: precision)
    }

    static let layouts: [(dp: Int, tp: Int, distributedOptimizer: Bool)] = [(1, 2, false), (2, 1, true), (2, 2, true)]

    @Test(arguments: layouts.indices)
    func trainsAsOneRank(layout index: Int) throws {
        let l = Self.layouts[index]
        let name = "DP=\(l.dp) TP=\(l.tp)\(l.distributedOptimizer ? ", distributed optimizer" : "")"
        let training = try Self.training()
        LayoutTraining<T5Model>.expectSame(try training.train().steps[...],
                                           try training.train(dp: l.dp, tp: l.tp, distributedOptimizer: l.distributedOptimizer).steps[...], name)
    }

    @Test func aTensorParallelCheckpointResumesOnOneRank() throws {
        try Self.training().expectTensorParallelCheckpointResumesOnOneRank("T5")
    }

    /// 16-bit storage (bf16 parameters; the encoder's and decoder's layers in a window each, the
    /// relative-position tables, final norms and output bias in theirs, the word table read in 16-bit
    /// panels): one rank trains as fp32 buffers holding the bf16 values do, and TP=2 × DP=2 with the
    /// distributed optimizer as one rank.
    @Test func bf16StorageTrainsAsBF16ValuesInFP32Buffers() throws {
        let bf16: @Sendable (inout Optimizer.Settings) -> Void = { $0.paramsDType = .bfloat16 }
        let emulated = try Self.training(precision: bf16).train()
        let stored = try Self.training(storage: ParameterStorage(parameters: .bfloat16), precision: bf16)
        let one = try stored.train()
        LayoutTraining<T5Model>.expectSame(emulated.steps[...], one.steps[...], "bf16 storage")
        LayoutTraining<T5Model>.expectSame(one.steps[...], try stored.train(dp: 2, tp: 2, distributedOptimizer: true).steps[...],
                                           "bf16 storage, DP=2 TP=2")
    }
}
