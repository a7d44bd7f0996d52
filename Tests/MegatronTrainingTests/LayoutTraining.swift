import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// One training run of a model on dp × tp in-process ranks (BERT's and T5's layout tests): 8
/// samples an iteration, one per micro-batch, AdamW clipped at 0.5, a short warm-up and cosine
/// decay, optionally the distributed optimizer with overlapped reduction in small buckets, saving
/// at the end or loading first.
struct LayoutTraining<Model: PretrainingModel> where Model.Sample: Sendable {
    /// Each iteration's reported losses (their values, in the model's order) and gradient norm, as the
    /// last rank logs them, and the iteration a checkpoint resumed from.
    struct Outcome {
        var steps: [(losses: [Double], gradNorm: Double)] = []
        var loaded: Int?
    }

    final class Box: @unchecked Sendable { var outcome = Outcome() }

    let samples: [Model.Sample]
    let sequenceLength: Int
    /// The model of one rank, given its process groups and a seed.
    let makeModel: @Sendable (ProcessGroups, UInt64) throws -> Model
    /// The optimizer's mixed precision (fp32 by default).
    var precision: @Sendable (inout Optimizer.Settings) -> Void = { _ in }

    func train(dp: Int = 1, tp: Int = 1, distributedOptimizer: Bool = false, iterations: Int = 5, modelSeed: UInt64 = 3,
               save: URL? = nil, load: URL? = nil) throws -> Outcome {
        let box = Box(), samples = samples, sequenceLength = sequenceLength, makeModel = makeModel, precision = precision
        try InProcessWorld(size: dp * tp).run { world in
            let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: dp * tp, tensorModelParallelSize: tp,
                                                                             pipelineModelParallelSize: 1))
            let model = try makeModel(groups, modelSeed)
            var ddp = DistributedDataParallel.Settings()
            ddp.useDistributedOptimizer = distributedOptimizer
            ddp.overlapGradReduce = distributedOptimizer
            ddp.overlapParamGather = distributedOptimizer
            ddp.bucketSize = 2000
            let dataParallel = try DistributedDataParallel(model: model, settings: ddp)
            var optimizerSettings = Optimizer.Settings()
            optimizerSettings.clipGrad = 0.5
            precision(&optimizerSettings)
            let optimizer = try Optimizer(model: model, settings: optimizerSettings, dataParallel: dataParallel)
            var settings = TrainingSettings(trainIters: iterations, microBatchSize: 1, globalBatchSize: 8, sequenceLength: sequenceLength)
            settings.save = save
            let trainer = try Trainer(model: model, optimizer: optimizer,
                                      scheduler: .init(maxLR: 3e-3, warmupSteps: 8, decaySteps: 40, decayStyle: .cosine),
                                      settings: settings, dataParallel: dataParallel, sample: { samples[$0] }, log: { _ in })
            let loaded = try load.flatMap { try trainer.loadCheckpoint(from: $0) }
            let steps = try trainer.train()
            if groups.isLastRank {
                box.outcome = Outcome(steps: steps.map { ($0.losses.map(\.value), $0.gradNorm) }, loaded: loaded)
            }
        }
        return box.outcome
    }

    /// The same losses (1e-4 relative) and gradient norms (1e-3) at every iteration of `a` and `b`.
    static func expectSame(_ a: ArraySlice<(losses: [Double], gradNorm: Double)>, _ b: ArraySlice<(losses: [Double], gradNorm: Double)>,
                           _ what: String) {
        #expect(a.count == b.count && !a.isEmpty, "\(what): \(a.count) vs \(b.count) iterations")
        for (i, (x, y)) in zip(a, b).enumerated() {
            #expect(x.losses.count == y.losses.count && zip(x.losses, y.losses).allSatisfy { abs($0 - $1) <= 1e-4 * $0 }
                    && abs(x.gradNorm - y.gradNorm) <= 1e-3 * x.gradNorm,
                    "\(what): iteration \(a.startIndex + i + 1): one rank \(x), \(what) \(y)")
        }
    }

    /// Saved on two tensor-parallel ranks at iteration 2 and resumed on one from a differently
    /// initialised model, the run continues as the run that never stopped.
    func expectTensorParallelCheckpointResumesOnOneRank(_ name: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-checkpoint-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try train()
        _ = try train(tp: 2, iterations: 2, save: directory)
        let resumed = try train(modelSeed: 99, load: directory)
        #expect(resumed.loaded == 2)
        Self.expectSame(straight.steps.dropFirst(2), resumed.steps[...], "\(name) saved on TP=2 at iteration 2, resumed on one rank")
    }
}
