import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// BertModel through the same Trainer as GPT: tensor parallelism (with sequence parallelism), data
/// parallelism and the distributed optimizer train as one rank does with dropout on, and a BERT
/// checkpoint saved on two tensor-parallel ranks resumes on one.
struct BertTrainingTests {
    static let iterations = 5

    /// The post-norm fixture's architecture with dropout, and its 40 training samples.
    static func configAndSamples() throws -> (BertConfig, [BertSample]) {
        let fixture = try BertParityTests.Fixture("post_ln")
        var config = fixture.config
        config.transformer.hiddenDropout = 0.1
        config.transformer.attentionDropout = 0.1
        return (config, fixture.samples("train"))
    }

    struct Outcome: Sendable {
        var steps: [(lm: Double, sop: Double, gradNorm: Double)] = []
        var loaded: Int?
    }

    final class Box: @unchecked Sendable { var outcome = Outcome() }

    /// `iterations` iterations of 8 samples, one per micro-batch, on dp × tp ranks from a model
    /// initialised with `modelSeed`, optionally saving at the end or loading first; the last rank's outcome.
    static func train(dp: Int = 1, tp: Int = 1, sequenceParallel: Bool = false, distributedOptimizer: Bool = false,
                      iterations: Int = iterations, modelSeed: UInt64 = 3, save: URL? = nil, load: URL? = nil) throws -> Outcome {
        let (config, samples) = try configAndSamples()
        let box = Box()
        try InProcessWorld(size: dp * tp).run { world in
            let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: dp * tp, tensorModelParallelSize: tp,
                                                                             pipelineModelParallelSize: 1))
            let model = try BertModel(config: config, seed: modelSeed, groups: groups, on: CPUDevice(threads: 1))
            model.sequenceParallel = sequenceParallel
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
                box.outcome.steps = steps.map { ($0.losses[0].value, $0.losses[1].value, $0.gradNorm) }
                box.outcome.loaded = loaded
            }
        }
        return box.outcome
    }

    static func expectSame(_ a: ArraySlice<(lm: Double, sop: Double, gradNorm: Double)>,
                           _ b: ArraySlice<(lm: Double, sop: Double, gradNorm: Double)>, _ what: String) {
        #expect(a.count == b.count && !a.isEmpty, "\(what): \(a.count) vs \(b.count) iterations")
        for (i, (x, y)) in zip(a, b).enumerated() {
            #expect(abs(x.lm - y.lm) <= 1e-4 * x.lm && abs(x.sop - y.sop) <= 1e-4 * x.sop
                    && abs(x.gradNorm - y.gradNorm) <= 1e-3 * x.gradNorm,
                    "\(what): iteration \(a.startIndex + i + 1): one rank \(x), \(what) \(y)")
        }
    }

    static let layouts: [(dp: Int, tp: Int, sequenceParallel: Bool, distributedOptimizer: Bool)] = [
        (1, 2, false, false), (2, 1, false, true), (2, 2, true, true),
    ]

    @Test(arguments: layouts.indices)
    func trainsAsOneRank(layout index: Int) throws {
        let l = Self.layouts[index]
        let name = "DP=\(l.dp) TP=\(l.tp)\(l.sequenceParallel ? " SP" : "")\(l.distributedOptimizer ? ", distributed optimizer" : "")"
        let single = try Self.train()
        let parallel = try Self.train(dp: l.dp, tp: l.tp, sequenceParallel: l.sequenceParallel, distributedOptimizer: l.distributedOptimizer)
        Self.expectSame(single.steps[...], parallel.steps[...], name)
    }

    @Test func aTensorParallelCheckpointResumesOnOneRank() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bert-checkpoint-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try Self.train()
        _ = try Self.train(tp: 2, iterations: 2, save: directory)
        let resumed = try Self.train(modelSeed: 99, load: directory)
        #expect(resumed.loaded == 2)
        Self.expectSame(straight.steps.dropFirst(2), resumed.steps[...], "saved on TP=2 at iteration 2, resumed on one rank")
    }
}
