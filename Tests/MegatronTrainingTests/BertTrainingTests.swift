import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronTraining
import Testing

/// BertModel through the same Trainer as GPT: tensor parallelism (with sequence parallelism), data
/// parallelism and the distributed optimizer train as one rank does with dropout on (lm and sop
/// loss), and a BERT checkpoint saved on two tensor-parallel ranks resumes on one.
struct BertTrainingTests {
    /// The post-norm fixture's architecture with dropout, over its 40 training samples.
    static func training(sequenceParallel: Bool = false, storage: ParameterStorage = .float32,
                         precision: @escaping @Sendable (inout Optimizer.Settings) -> Void = { _ in }) throws -> LayoutTraining<BertModel> {
        let fixture = try BertParityTests.Fixture("post_ln")
        var config = fixture.config
        config.transformer.hiddenDropout = 0.1
        config.transformer.attentionDropout = 0.1
        let modelConfig = config
        return LayoutTraining(samples: fixture.samples("train"), sequenceLength: 10, makeModel: { groups, seed in
            let model = try BertModel(config: modelConfig, seed: seed, groups: groups, storage: storage, on: CPUDevice(threads: 1))
            model.sequenceParallel = sequenceParallel
            return model
        }, precision: precision)
    }

    static let layouts: [(dp: Int, tp: Int, sequenceParallel: Bool, distributedOptimizer: Bool)] = [
        (1, 2, false, false), (2, 1, false, true), (2, 2, true, true),
    ]

    @Test(arguments: layouts.indices)
    func trainsAsOneRank(layout index: Int) throws {
        let l = Self.layouts[index]
        let name = "DP=\(l.dp) TP=\(l.tp)\(l.sequenceParallel ? " SP" : "")\(l.distributedOptimizer ? ", distributed optimizer" : "")"
        let single = try Self.training().train()
        let parallel = try Self.training(sequenceParallel: l.sequenceParallel).train(dp: l.dp, tp: l.tp, distributedOptimizer: l.distributedOptimizer)
        #expect(single.steps.allSatisfy { $0.losses.count == 2 }, "lm loss and sop loss")
        LayoutTraining<BertModel>.expectSame(single.steps[...], parallel.steps[...], name)
    }

    /// 16-bit storage (bf16 parameters in the flat buffer, the layers, tables and heads computing in
    /// fp32 windows, the word table read in 16-bit panels): one rank trains as fp32 buffers holding
    /// the bf16 values do, and TP=2 with sequence parallelism × DP=2 with the distributed optimizer
    /// as one rank.
    @Test func bf16StorageTrainsAsBF16ValuesInFP32Buffers() throws {
        let bf16: @Sendable (inout Optimizer.Settings) -> Void = { $0.paramsDType = .bfloat16 }
        let emulated = try Self.training(precision: bf16).train()
        let stored = try Self.training(storage: ParameterStorage(parameters: .bfloat16), precision: bf16).train()
        LayoutTraining<BertModel>.expectSame(emulated.steps[...], stored.steps[...], "bf16 storage")
        let parallel = try Self.training(sequenceParallel: true, storage: ParameterStorage(parameters: .bfloat16), precision: bf16)
            .train(dp: 2, tp: 2, distributedOptimizer: true)
        LayoutTraining<BertModel>.expectSame(stored.steps[...], parallel.steps[...], "bf16 storage, DP=2 TP=2 SP")
    }

    @Test func aTensorParallelCheckpointResumesOnOneRank() throws {
        try Self.training().expectTensorParallelCheckpointResumesOnOneRank("BERT")
    }
}
