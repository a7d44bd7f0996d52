import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// A run saved at iteration 3 and resumed continues exactly as the run that never stopped: the
/// same losses, gradient norms and final weights, bit for bit on the same layout; on another
/// data-parallel size, as that size's own uninterrupted run would (the same to rounding).
struct CheckpointTests {
    static let trainIters = 6
    static let config: TransformerConfig = {
        var config = TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, paddedVocabSize: 128, maxPositionEmbeddings: 16)
        config.hiddenDropout = 0.1
        config.attentionDropout = 0.1
        return config
    }()

    final class Outcome: @unchecked Sendable {
        var steps: [(loss: Float, gradNorm: Double)] = []
        var learningRates: [Double] = []
        var parameters: [Float] = []
        var loaded: Int?
        var exited = false
        var gradScaler: GradScaler?
        var skipped: [Bool] = []
        var optimizerStep = 0
    }

    /// Trains on dp × tp in-process ranks (model seed `modelSeed`), first loading `load` and saving to
    /// `save` when given; returns what the last rank (which logs) saw.
    static func run(dp: Int = 1, tp: Int = 1, pp: Int = 1, distributedOptimizer: Bool = false, optimizer kind: Optimizer.Kind = .adam, modelSeed: UInt64 = 3,
                    save: URL? = nil, format: CheckpointFormat = .torchDist, asyncSave: Bool = false, saveInterval: Int? = nil,
                    exitInterval: Int? = nil, exitDuration: Double? = nil, startedEarlyOnRank: Int? = nil,
                    load: URL? = nil, loadOptimizer: Bool = true,
                    finetune: Bool = false, maxLR: Double = 3e-3,
                    schedulerSettings: SchedulerSettingsOnLoad = .mustMatch,
                    precision: @escaping @Sendable (inout Optimizer.Settings) -> Void = { _ in },
                    storage: ParameterStorage = .float32, config: TransformerConfig = config) throws -> Outcome {
        let data = try MockData(vocabSize: 128, sequenceLength: 16, seed: 5)
        let outcome = Outcome()
        try InProcessWorld(size: dp * tp * pp).run { world in
            let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: dp * tp * pp, tensorModelParallelSize: tp,
                                                                             pipelineModelParallelSize: pp))
            let model = try GPTModel(config: config, seed: modelSeed, groups: groups, storage: storage, on: CPUDevice(threads: 1))
            var ddp = DistributedDataParallel.Settings()
            ddp.useDistributedOptimizer = distributedOptimizer
            ddp.bucketSize = 3000
            let dataParallel = try DistributedDataParallel(model: model, settings: ddp)
            var optimizerSettings = Optimizer.Settings()
            optimizerSettings.kind = kind
            optimizerSettings.clipGrad = 0.3
            precision(&optimizerSettings)
            let optimizer = try Optimizer(model: model, settings: optimizerSettings, dataParallel: dataParallel)
            var settings = TrainingSettings(trainIters: trainIters, microBatchSize: 1, globalBatchSize: 6, sequenceLength: 16)
            settings.save = save
            settings.checkpointFormat = format
            settings.asyncSave = asyncSave
            settings.saveInterval = saveInterval
            settings.exitInterval = exitInterval
            settings.exitDurationInMinutes = exitDuration
            if world.rank == startedEarlyOnRank { settings.startTime = Date() - 120 }
            let trainer = try Trainer(model: model, optimizer: optimizer,
                                  scheduler: .init(maxLR: maxLR, warmupSteps: 12, decaySteps: 36, decayStyle: .cosine),
                                  settings: settings, dataParallel: dataParallel, sample: data.sample, log: { _ in })
            let loaded = try load.flatMap {
                try trainer.loadCheckpoint(from: $0, loadOptimizer: loadOptimizer, finetune: finetune, schedulerSettings: schedulerSettings)
            }
            let steps = try trainer.train()
            if groups.isLastRank {
                outcome.steps = steps.map { ($0.loss, $0.gradNorm) }
                outcome.learningRates = steps.map(\.learningRate)
                outcome.parameters = try model.parameters.stored(as: .float32, on: model.device).toFloatArray()
                outcome.loaded = loaded
                outcome.exited = trainer.exited
                outcome.gradScaler = optimizer.gradScaler
                outcome.skipped = steps.map(\.skipped)
                outcome.optimizerStep = optimizer.step
            }
        }
        return outcome
    }

    /// How many of the weights differ (bit for bit), or the count when the sizes do.
    static func differing(_ a: [Float], _ b: [Float]) -> Int {
        a.count == b.count ? zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count : max(a.count, b.count)
    }

    static func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("checkpoint-test-\(UUID().uuidString)")
    }

    @Test(arguments: [Optimizer.Kind.adam, .sgd])
    func resumingContinuesBitForBit(_ kind: Optimizer.Kind) throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try Self.run(optimizer: kind)
        let first = try Self.run(optimizer: kind, save: directory, exitInterval: 3)
        #expect(first.exited && first.steps.count == 3)
        #expect(try Checkpoint.latestIteration(in: directory) == 3)
        // Another initialisation, so only loading can make the weights agree.
        let resumed = try Self.run(optimizer: kind, modelSeed: 99, save: directory, load: directory)
        #expect(resumed.loaded == 3 && resumed.steps.count == 3)
        for (step, (a, b)) in zip(straight.steps.dropFirst(3), resumed.steps).enumerated() {
            #expect(a.loss == b.loss && a.gradNorm == b.gradNorm, "iteration \(step + 4): \(a) vs \(b)")
        }
        #expect(Self.differing(straight.parameters, resumed.parameters) == 0)
        // Saving to the same directory, the resumed run saved its last iteration at the end.
        #expect(try Checkpoint.latestIteration(in: directory) == Self.trainIters)
    }

    /// bf16 parameter storage with fp32 main parameters and moments: the whole-model format (fp32)
    /// holds it exactly, so a run resumes bit for bit; and a checkpoint whose main parameters are fp32
    /// resumes a run keeping them as remainders of the bf16 parameters and back, converted exactly:
    /// the parameters after the resumed steps are the uninterrupted run's.
    @Test func sixteenBitStorageResumesFromEitherFormOfTheMainParameters() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let storage = ParameterStorage(parameters: .bfloat16)
        let fp32Main: @Sendable (inout Optimizer.Settings) -> Void = { $0.paramsDType = .bfloat16 }
        let remainders: @Sendable (inout Optimizer.Settings) -> Void = { settings in
            settings.paramsDType = .bfloat16
            settings.storeParamRemainders = true
        }
        let straight = try Self.run(precision: fp32Main, storage: storage)
        _ = try Self.run(save: directory, format: .torch, exitInterval: 3, precision: fp32Main, storage: storage)
        let resumed = try Self.run(modelSeed: 99, load: directory, precision: fp32Main, storage: storage)
        #expect(zip(straight.steps.dropFirst(3), resumed.steps).allSatisfy { $0.loss == $1.loss && $0.gradNorm == $1.gradNorm },
                "\(straight.steps) vs \(resumed.steps)")
        #expect(Self.differing(straight.parameters, resumed.parameters) == 0)

        for (saved, loaded) in [(fp32Main, remainders), (remainders, fp32Main)] {
            let uninterrupted = try Self.run(precision: saved, storage: storage)
            try FileManager.default.removeItem(at: directory)
            _ = try Self.run(save: directory, exitInterval: 3, precision: saved, storage: storage)
            let converted = try Self.run(modelSeed: 99, load: directory, precision: loaded, storage: storage)
            #expect(converted.loaded == 3 && converted.steps.count == 3)
            // Both keep the fp32 main parameters exactly; only a bf16 rounding tie can round apart.
            #expect(Self.differing(uninterrupted.parameters, converted.parameters) <= 2, "\(Self.differing(uninterrupted.parameters, converted.parameters)) differ")
        }
    }

    @Test func theDistributedOptimizerResumesOnItsOwnAndOnOtherDataParallelSizes() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try Self.run(dp: 2, distributedOptimizer: true)
        _ = try Self.run(dp: 2, distributedOptimizer: true, save: directory, exitInterval: 3)
        let resumed = try Self.run(dp: 2, distributedOptimizer: true, modelSeed: 99, save: directory, load: directory)
        #expect(zip(straight.steps.dropFirst(3), resumed.steps).allSatisfy { $0.loss == $1.loss && $0.gradNorm == $1.gradNorm },
                "\(straight.steps) vs \(resumed.steps)")
        #expect(Self.differing(straight.parameters, resumed.parameters) == 0)
        // The files hold the whole state, so one rank, or three with the state sharded another way, resume too.
        for dp in [1, 3] {
            let other = try Self.run(dp: dp, distributedOptimizer: dp > 1, modelSeed: 99, load: directory)
            #expect(other.loaded == Self.trainIters && other.steps.isEmpty, "the latest checkpoint is now the end of training")
        }
        try FileManager.default.removeItem(at: directory)
        _ = try Self.run(dp: 2, distributedOptimizer: true, save: directory, exitInterval: 3)
        for dp in [1, 3] {
            let resharded = try Self.run(dp: dp, distributedOptimizer: dp > 1, modelSeed: 99, load: directory)
            for (a, b) in zip(straight.steps.dropFirst(3), resharded.steps) {
                #expect(abs(a.loss - b.loss) <= 1e-5 * a.loss && abs(a.gradNorm - b.gradNorm) <= 1e-4 * a.gradNorm,
                        "dp \(dp): \(a) vs \(b)")
            }
            #expect(resharded.steps.count == 3)
        }
        // Saved from three ranks (an uneven split of the state), resumed on one.
        try FileManager.default.removeItem(at: directory)
        _ = try Self.run(dp: 3, distributedOptimizer: true, save: directory, exitInterval: 3)
        let fromThree = try Self.run(modelSeed: 99, load: directory)
        for (a, b) in zip(straight.steps.dropFirst(3), fromThree.steps) {
            #expect(abs(a.loss - b.loss) <= 1e-5 * a.loss && abs(a.gradNorm - b.gradNorm) <= 1e-4 * a.gradNorm, "from dp 3: \(a) vs \(b)")
        }
        #expect(fromThree.steps.count == 3)
    }

    /// As Megatron's load_checkpoint: --no-load-optim keeps the iteration and data position but
    /// starts a fresh optimizer and schedule, so iteration 4's loss and gradient (computed before any
    /// update) are the uninterrupted run's and its learning rate is iteration 1's; --finetune takes
    /// only the weights and trains every iteration from the first on the fresh schedule.
    @Test func noLoadOptimAndFinetuneTakeLessOfTheCheckpoint() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try Self.run()
        _ = try Self.run(save: directory, exitInterval: 3)
        let freshOptimizer = try Self.run(modelSeed: 99, load: directory, loadOptimizer: false)
        #expect(freshOptimizer.steps.count == 3)
        #expect(freshOptimizer.steps[0].loss == straight.steps[3].loss && freshOptimizer.steps[0].gradNorm == straight.steps[3].gradNorm)
        #expect(freshOptimizer.learningRates == Array(straight.learningRates.prefix(3)), "the schedule starts over")
        let finetuned = try Self.run(modelSeed: 99, load: directory, finetune: true)
        let fresh = try Self.run(modelSeed: 99)
        #expect(finetuned.loaded == 3 && finetuned.steps.count == Self.trainIters)
        #expect(finetuned.learningRates == fresh.learningRates)
        #expect(finetuned.steps[0].loss != fresh.steps[0].loss && finetuned.steps[0].loss != straight.steps[0].loss)
    }

    /// As Megatron's OptimizerParamScheduler.load_state_dict: a resumed run whose schedule settings
    /// differ from the checkpoint's is an error naming them, unless told to keep its own
    /// (--override-opt_param-scheduler) or take the checkpoint's (--use-checkpoint-opt_param-scheduler).
    @Test func aDifferentScheduleIsAnErrorUnlessOverriddenOrTaken() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try Self.run()
        _ = try Self.run(save: directory, exitInterval: 3)
        let error = #expect(throws: (any Error).self) { try Self.run(load: directory, maxLR: 1e-3) }
        #expect(error.map { "\($0)" }?.contains("learning rate 0.001 vs 0.003") == true, "\(String(describing: error))")
        let overridden = try Self.run(load: directory, maxLR: 1e-3, schedulerSettings: .override)
        #expect(zip(overridden.learningRates, straight.learningRates.dropFirst(3)).allSatisfy { abs($0 / $1 - 1 / 3.0) < 1e-9 },
                "this run's peak, the checkpoint's position: \(overridden.learningRates)")
        let taken = try Self.run(load: directory, maxLR: 1e-3, schedulerSettings: .useCheckpoint)
        #expect(taken.learningRates == Array(straight.learningRates.dropFirst(3)))
        #expect(zip(taken.steps, straight.steps.dropFirst(3)).allSatisfy { $0.loss == $1.loss })
    }

    /// A save that fails on the writing rank is an error on every rank, not a hang.
    @Test func aFailedSaveStopsEveryRank() throws {
        let file = Self.temporaryDirectory()
        try Data("not a directory".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let error = #expect(throws: (any Error).self) {
            try Self.run(dp: 2, distributedOptimizer: true, save: file.appendingPathComponent("checkpoints"), exitInterval: 3)
        }
        #expect(error != nil)
    }

    /// --exit-duration-in-mins: once one rank's clock is past the limit, every rank stops after the
    /// same iteration, saving it first; 0 sets no limit.
    @Test func theTimeLimitStopsEveryRankAfterSavingTheIteration() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let stopped = try Self.run(dp: 2, save: directory, exitDuration: 1, startedEarlyOnRank: 0)  // rank 1 reports
        #expect(stopped.exited && stopped.steps.count == 1)
        #expect(try Checkpoint.latestIteration(in: directory) == 1)
        for limit in [0.0, 60] {
            let unlimited = try Self.run(exitDuration: limit)
            #expect(!unlimited.exited && unlimited.steps.count == Self.trainIters)
        }
    }

    /// Saving an iteration again (a resumed run reaching a saved iteration) replaces it whole; a swap
    /// cut short between moving the old save aside and the new one in still loads, from the old one.
    @Test func resavingAnIterationReplacesItAndASwapCutShortStillLoads() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try Self.run(save: directory, exitInterval: 3)
        _ = try Self.run(modelSeed: 99, save: directory, exitInterval: 3, load: directory, finetune: true)
        let entries = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(entries == ["iter_0000003", "latest_checkpointed_iteration.txt"], "\(entries)")
        let final = Checkpoint.iterationDirectory(directory, iteration: 3)
        try FileManager.default.moveItem(at: final, to: directory.appendingPathComponent(".iter_0000003.old"))
        let resumed = try Self.run(load: directory)
        #expect(resumed.loaded == 3 && resumed.steps.count == 3)
    }

    @Test func aDirectoryWithoutCheckpointsTrainsFromTheStart() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let outcome = try Self.run(load: directory)
        #expect(outcome.loaded == nil && outcome.steps.count == Self.trainIters)
    }

    @Test func anInterruptedSaveLeavesThePreviousCheckpointTheLatest() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try Self.run(save: directory, exitInterval: 3)
        // What a save killed half-way through leaves: a partial directory and a partial tracker.
        let partial = directory.appendingPathComponent(".iter_0000006.partial")
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)
        try Data("garbage".utf8).write(to: partial.appendingPathComponent("model.safetensors"))
        try Data("6".utf8).write(to: directory.appendingPathComponent(".latest_checkpointed_iteration.txt.partial"))
        #expect(try Checkpoint.latestIteration(in: directory) == 3)
        let resumed = try Self.run(load: directory)
        #expect(resumed.loaded == 3 && resumed.steps.count == 3)
    }

    @Test(arguments: CheckpointFormat.allCases)
    func aCheckpointOfAnotherModelOrOptimizerIsAClearError(_ format: CheckpointFormat) throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try Self.run(save: directory, format: format, exitInterval: 3)
        let sgd = #expect(throws: (any Error).self) { try Self.run(optimizer: .sgd, load: directory) }
        #expect(sgd.map { "\($0)" }?.contains("saved by --optimizer adam, this run's is sgd") == true, "\(String(describing: sgd))")

        var wider = Self.config
        wider.hiddenSize = 48
        let model = try GPTModel(config: wider, seed: 1, on: CPUDevice(threads: 1))
        let trainer = try Trainer(model: model, optimizer: try Optimizer(model: model, settings: .init()),
                              scheduler: .init(maxLR: 1e-3, warmupSteps: 0, decaySteps: 1, decayStyle: .constant),
                              settings: .init(trainIters: 1, microBatchSize: 1, globalBatchSize: 1, sequenceLength: 16),
                              sample: { _ in [] }, log: { _ in })
        let shape = #expect(throws: CheckpointError.self) { try trainer.loadCheckpoint(from: directory) }
        #expect(shape?.description.contains("the checkpoint's model differs from this run's (this run vs the checkpoint): "
                                            + "hidden_size 48 vs 32") == true,
                "\(String(describing: shape))")

        // A checkpoint that lost a tensor is named with the file and the tensor.
        let folder = Checkpoint.iterationDirectory(directory, iteration: 3)
        switch format {
        case .torch:
            let modelFile = folder.appendingPathComponent("model.safetensors")
            var tensors = try SafeTensors.read(modelFile).tensors
            tensors["decoder.final_layernorm.bias"] = nil
            try SafeTensors.write(tensors.mapValues { SafeTensors.Entry(dtype: $0.dtype, shape: $0.shape, data: Data($0.data)) }, to: modelFile)
        case .torchDist:
            let metadataFile = folder.appendingPathComponent("metadata.json")
            var metadata = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: metadataFile)) as? [String: Any])
            var model = try #require(metadata["model"] as? [String: Any])
            model["decoder.final_layernorm.bias"] = nil
            metadata["model"] = model
            try JSONSerialization.data(withJSONObject: metadata).write(to: metadataFile)
        }
        let missing = #expect(throws: (any Error).self) { try Self.run(load: directory) }
        let file = format == .torch ? "model.safetensors" : "metadata.json"
        #expect(missing.map { "\($0)" }?.contains("\(file) has no tensor decoder.final_layernorm.bias") == true,
                "\(String(describing: missing))")
    }
}
