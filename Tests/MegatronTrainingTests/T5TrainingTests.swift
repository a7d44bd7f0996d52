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
    static func training() throws -> LayoutTraining<T5Model> {
        let fixture = try T5ParityTests.Fixture("t5_unscaled")
        var config = fixture.config
        config.transformer.hiddenDropout = 0.1
        config.transformer.attentionDropout = 0.1
        config.transformer.kvChannels = 2
        let modelConfig = config
        return LayoutTraining(samples: fixture.samples("train"), sequenceLength: 10) { groups, seed in
            try T5Model(config: modelConfig, seed: seed, groups: groups, on: CPUDevice(threads: 1))
        }
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
}
