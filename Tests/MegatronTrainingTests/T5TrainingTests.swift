import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// T5Model through the Trainer: tensor parallelism (relative position tables summed over the
/// ranks' heads), data parallelism with the distributed optimizer, and both, train as one rank does
/// with dropout on, and a T5 checkpoint saved on two tensor-parallel ranks resumes on one.
struct T5TrainingTests {
    final class Box: @unchecked Sendable { var steps: [(loss: Double, gradNorm: Double)] = []; var loaded: Int? }

    /// 5 iterations of 8 samples (the fixture's), one per micro-batch, on dp × tp ranks.
    static func train(dp: Int = 1, tp: Int = 1, distributedOptimizer: Bool = false, iterations: Int = 5, modelSeed: UInt64 = 3,
                      save: URL? = nil, load: URL? = nil) throws -> Box {
        let fixture = try T5ParityTests.Fixture("t5_unscaled")
        var config = fixture.config
        config.transformer.hiddenDropout = 0.1
        config.transformer.attentionDropout = 0.1
        config.transformer.kvChannels = 2
        let samples = fixture.samples("train"), box = Box(), modelConfig = config
        try InProcessWorld(size: dp * tp).run { world in
            let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: dp * tp, tensorModelParallelSize: tp,
                                                                             pipelineModelParallelSize: 1))
            let model = try T5Model(config: modelConfig, seed: modelSeed, groups: groups, on: CPUDevice(threads: 1))
            var ddp = DistributedDataParallel.Settings()
            ddp.useDistributedOptimizer = distributedOptimizer
            ddp.overlapGradReduce = distributedOptimizer
            ddp.bucketSize = 2000
            let dataParallel = try DistributedDataParallel(model: model, settings: ddp)
            var optimizerSettings = Optimizer.Settings()
            optimizerSettings.clipGrad = 0.5
            let optimizer = try Optimizer(model: model, settings: optimizerSettings, dataParallel: dataParallel)
            var settings = TrainingSettings(trainIters: iterations, microBatchSize: 1, globalBatchSize: 8, sequenceLength: 10)
            settings.save = save
            let trainer = try Trainer(model: model, optimizer: optimizer,
                                      scheduler: .init(maxLR: 3e-3, warmupSteps: 8, decaySteps: 40, decayStyle: .cosine),
                                      settings: settings, dataParallel: dataParallel, sample: { samples[$0] }, log: { _ in })
            let loaded = try load.flatMap { try trainer.loadCheckpoint(from: $0) }
            let steps = try trainer.train()
            if groups.isLastRank {
                box.steps = steps.map { ($0.losses[0].value, $0.gradNorm) }
                box.loaded = loaded
            }
        }
        return box
    }

    static func expectSame(_ a: ArraySlice<(loss: Double, gradNorm: Double)>, _ b: ArraySlice<(loss: Double, gradNorm: Double)>,
                           _ what: String) {
        #expect(a.count == b.count && !a.isEmpty, "\(what): \(a.count) vs \(b.count) iterations")
        for (i, (x, y)) in zip(a, b).enumerated() {
            #expect(abs(x.loss - y.loss) <= 1e-4 * x.loss && abs(x.gradNorm - y.gradNorm) <= 1e-3 * x.gradNorm,
                    "\(what): iteration \(a.startIndex + i + 1): one rank \(x), \(what) \(y)")
        }
    }

    static let layouts: [(dp: Int, tp: Int, distributedOptimizer: Bool)] = [(1, 2, false), (2, 1, true), (2, 2, true)]

    @Test(arguments: layouts.indices)
    func trainsAsOneRank(layout index: Int) throws {
        let l = Self.layouts[index]
        let name = "DP=\(l.dp) TP=\(l.tp)\(l.distributedOptimizer ? ", distributed optimizer" : "")"
        Self.expectSame(try Self.train().steps[...], try Self.train(dp: l.dp, tp: l.tp, distributedOptimizer: l.distributedOptimizer).steps[...],
                        name)
    }

    @Test func aTensorParallelCheckpointResumesOnOneRank() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("t5-checkpoint-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try Self.train()
        _ = try Self.train(tp: 2, iterations: 2, save: directory)
        let resumed = try Self.train(modelSeed: 99, load: directory)
        #expect(resumed.loaded == 2)
        Self.expectSame(straight.steps.dropFirst(2), resumed.steps[...], "saved on TP=2 at iteration 2, resumed on one rank")
    }
}
