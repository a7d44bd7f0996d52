import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel

/// Saving and resuming a training run (`Checkpoint` holds the format).
extension Trainer {
    /// Saves the checkpoint of `iteration` to `directory` in the format of --ckpt-format (see
    /// `Checkpoint`); every rank takes part and learns whether it succeeded. (With --async-save, the
    /// sharded save completes in the background: `train` publishes it.)
    public func saveCheckpoint(to directory: URL) throws {
        try dataParallel.finishParamGather()
        switch settings.checkpointFormat {
        case .torchDist: try saveShardedCheckpoint(to: directory)
        case .torch:
            try requireFP32OptimizerState()
            try saveWholeCheckpoint(to: directory)
        }
    }

    /// Saves in the whole-model format: under the distributed optimizer each rank contributes the
    /// state it owns to rank 0 of its data-parallel group (with its context-parallel peers); under tensor and pipeline parallelism those send
    /// their parts to the first of them, which writes the whole model.
    private func saveWholeCheckpoint(to directory: URL) throws {
        let group = dataParallel.dataParallelWithContext
        log(" saving checkpoint at iteration \(String(format: "%7d", iteration)) to \(directory.path) in torch format")
        let start = Date()
        // Under the distributed optimizer the other ranks send rank 0 their shards of the state, in
        // state, rank and span order; rank 0 alone holds the whole state, for the moment of the save.
        let shardedGroup = dataParallel.settings.useDistributedOptimizer && group.size > 1 ? group : nil
        var failure: Error?
        if group.rank == 0 {
            // 16-bit parameters widen exactly into an fp32 copy for the moment of the save.
            let parameters = try model.parameters.stored(as: .float32, on: model.device)
            try withExtendedLifetime(parameters) {
                try optimizer.withFullState { state in
                    if let shardedGroup {
                        for (_, values) in state {
                            for source in 1 ..< shardedGroup.size {
                                for range in dataParallel.ownedRanges(ofRank: source) {
                                    try shardedGroup.receive(into: UnsafeMutableBufferPointer(start: values + range.lowerBound, count: range.count),
                                                             from: source, tag: MessageTag.checkpointShard)
                                }
                            }
                        }
                    }
                    try withWholeModel(parameters: parameters.floats, state: state) { parameters, state in
                        do {
                            try Checkpoint.save(to: directory, progress: progress, parameters: parameters, optimizerState: state)
                        } catch { failure = error }
                    }
                }
            }
        } else if let shardedGroup {
            for (_, state) in optimizer.stateTensors {
                for (range, values) in try optimizer.ownedSpans(of: state) {
                    try shardedGroup.send(UnsafeBufferPointer(start: values.floats, count: range.count), to: 0, tag: MessageTag.checkpointShard)
                }
            }
        }
        try agree(failure, "saving the checkpoint of iteration \(iteration) to \(directory.path)")
        log("  successfully saved checkpoint from iteration \(String(format: "%7d", iteration)) to \(directory.path) "
            + "(\(String(format: "%.1f", Date().timeIntervalSince(start))) s)")
    }

    /// Calls `body` on rank 0 of the model-parallel ranks with the whole model's `parameters` (this
    /// rank's part, fp32) and
    /// `state` (laid out like this rank's flat buffer), gathered from every rank's part: first each
    /// stage's tensor-parallel shards onto its tensor-parallel rank 0, then the stages onto the
    /// first. The other ranks send theirs. On one rank, `body` gets this rank's buffers.
    private func withWholeModel(parameters: UnsafeMutablePointer<Float>, state: [(name: String, values: UnsafeMutablePointer<Float>)],
                                _ body: (UnsafeMutablePointer<Float>, [(name: String, values: UnsafeMutablePointer<Float>)]) throws -> Void) throws {
        let config = model.config, tensorParallel = model.tensorParallel, stage = model.pipeline
        let stageLayout = config.layout(tensorParallelRank: 0, tensorParallelSize: 1, pipelineStage: stage.index, pipelineStages: stage.count)
        try gather([parameters] + state.map(\.values), over: tensorParallel.group, into: stageLayout) {
            config.layout(tensorParallelRank: $0, tensorParallelSize: tensorParallel.size, pipelineStage: stage.index,
                          pipelineStages: stage.count)
        } then: { stageBuffers in
            try gather(stageBuffers, over: stage.group, into: config.wholeLayout) {
                config.layout(tensorParallelRank: 0, tensorParallelSize: 1, pipelineStage: $0, pipelineStages: stage.count)
            } then: { whole in
                try body(whole[0], zip(state, whole.dropFirst()).map { ($0.name, $1) })
            }
        }
    }

    /// Calls `body` on rank 0 with the whole model's parameters in fp32, gathered from the
    /// model-parallel ranks' parts (for a one-rank model to generate from; 16-bit storage converts its
    /// part first). Every rank calls it.
    public func withWholeParameters(_ body: (UnsafeMutablePointer<Float>) throws -> Void) throws {
        guard dataParallel.dataParallelWithContext.rank == 0 else { return }
        let parameters = try model.parameters.stored(as: .float32, on: model.device)
        try withExtendedLifetime(parameters) {
            try withWholeModel(parameters: parameters.floats, state: []) { parameters, _ in try body(parameters) }
        }
    }

    /// Gathers `buffers`, laid out on each rank r of `group` as `layout(r)`, onto the group's rank 0
    /// laid out as `target`, and calls `body` there with the gathered buffers; the other ranks send
    /// theirs and return. A group of one passes its buffers through.
    private func gather(_ buffers: [UnsafeMutablePointer<Float>], over group: (any Communicator)?, into target: ParameterLayout,
                        layout: (Int) -> ParameterLayout, then body: ([UnsafeMutablePointer<Float>]) throws -> Void) throws {
        guard let group, group.size > 1 else { return try body(buffers) }
        let mine = layout(group.rank)
        guard group.rank == 0 else {
            for buffer in buffers {
                try group.send(UnsafeBufferPointer(start: buffer, count: mine.totalCount), to: 0, tag: MessageTag.checkpointModelParallel)
            }
            return
        }
        let gathered = buffers.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: target.totalCount) }
        defer { for g in gathered { g.deallocate() } }
        for (buffer, destination) in zip(buffers, gathered) { mine.place(buffer, into: destination, wholeLayout: target) }
        for source in 1 ..< group.size {
            let theirs = layout(source)
            let received = UnsafeMutablePointer<Float>.allocate(capacity: theirs.totalCount)
            defer { received.deallocate() }
            for destination in gathered {
                try group.receive(into: UnsafeMutableBufferPointer(start: received, count: theirs.totalCount), from: source,
                                  tag: MessageTag.checkpointModelParallel)
                theirs.place(received, into: destination, wholeLayout: target)
            }
        }
        try body(gathered)
    }

    /// Where training stands, as a checkpoint records it.
    var progress: Checkpoint.Progress<Model.Architecture> {
        .init(iteration: iteration, consumedTrainSamples: consumedSamples, consumedValidSamples: consumedValidationSamples,
              optimizer: optimizer.settings.kind.rawValue, optimizerStep: optimizer.step, scheduler: scheduler,
              model: model.config, gradScaler: optimizer.gradScaler.flatMap { $0.isDynamic ? $0 : nil })
    }

    /// The whole-model format writes fp32 buffers: 16-bit optimizer state (the precision-aware
    /// optimizer's moments or remainders) is refused, naming it.
    func requireFP32OptimizerState() throws {
        guard !optimizer.settings.keepsSixteenBitState else {
            let sixteenBit = optimizer.stateTensors.filter { $0.values.dtype != .float32 }.map(\.name)
            throw TrainingError(iteration: iteration, "--ckpt-format torch writes fp32 optimizer state; this run keeps "
                                + sixteenBit.joined(separator: ", ") + " in 16 bits: save with --ckpt-format torch_dist")
        }
    }

    /// Resumes from the latest checkpoint in `directory` (--load), as Megatron's load_checkpoint: the
    /// parameters; unless `finetune`, the iteration and consumed samples; unless `finetune` or
    /// `!loadOptimizer` (--no-load-optim), the optimizer state and the schedule's position (so with
    /// --no-load-optim the schedule starts over, as Megatron's). Returns the checkpoint's iteration, or
    /// nil when the directory holds none (Megatron then warns and trains from the initialisation).
    /// Every rank must find the same checkpoint; a failure on one is an error on all.
    @discardableResult
    public func loadCheckpoint(from directory: URL, loadOptimizer: Bool = true, finetune: Bool = false,
                               schedulerSettings: SchedulerSettingsOnLoad = .mustMatch) throws -> Int? {
        var latest: Int?, failure: Error?
        do { latest = try Checkpoint.latestIteration(in: directory) } catch { failure = error }
        try agree(failure, "reading \(directory.appendingPathComponent(Checkpoint.trackerName).path)")
        let mine = Int32(latest ?? -1)
        let highest = try model.groups.world.allReduce(mine, op: .max), lowest = -(try model.groups.world.allReduce(-mine, op: .max))
        guard highest == lowest else {
            throw CheckpointError("--load \(directory.path): the ranks find different checkpoints (iterations \(lowest) "
                              + "to \(highest), -1 meaning none): every rank must read the same directory")
        }
        guard let latest else {
            log(" WARNING: could not find the metadata file \(directory.appendingPathComponent(Checkpoint.trackerName).path); "
                + "will not load any checkpoints and will start from random")
            return nil
        }
        let start = Date()
        let restoreOptimizer = loadOptimizer && !finetune
        var loaded: (progress: Checkpoint.Progress<Model.Architecture>, restoredStates: Set<String>)?
        let main: Set = [Optimizer.mainParametersName, Optimizer.mainParameterRemaindersName]
        // Main parameters the checkpoint keeps in the other form (fp32, or remainders of bf16) are
        // read aside and converted.
        var otherForm: (name: String, values: Tensor)?
        do {
            // Each rank copies its own spans of the optimizer state straight from the (memory-mapped) file.
            var state = try optimizer.stateTensors.map { (name: $0.name, spans: try optimizer.ownedSpans(of: $0.values)) }
            if restoreOptimizer, let other = optimizer.otherMainParametersForm {
                let held = try Checkpoint.optimizerStates(in: directory, iteration: latest)
                if held.contains(other.name), held.isDisjoint(with: main.subtracting([other.name])) {
                    let values = try Tensor(shape: [optimizer.ownedRanges.reduce(0) { $0 + $1.count }], dtype: other.dtype,
                                            on: model.device, zeroed: false)
                    state.append((other.name, try optimizer.ownedSpans(of: values)))
                    otherForm = (other.name, values)
                }
            }
            loaded = try Checkpoint.load(from: directory, iteration: latest, model: model,
                                         optimizer: restoreOptimizer ? (optimizer.settings.kind.rawValue, state, main) : nil)
            if let otherForm, loaded!.restoredStates.contains(otherForm.name) { try optimizer.adoptMainParameters(from: otherForm.values) }
        } catch { failure = error }
        try agree(failure, "loading the checkpoint of iteration \(latest) from \(directory.path)")
        let saved = loaded!.progress
        // Main parameters the checkpoint lacks (an fp32 run's, or none loaded) start from the model's.
        try optimizer.castModelParameters(mainParametersRestored: !loaded!.restoredStates.isDisjoint(with: main))
        if restoreOptimizer, let scaler = optimizer.gradScaler, let savedScaler = saved.gradScaler {
            optimizer.gradScaler = scaler.resuming(from: savedScaler)
        }
        if restoreOptimizer, let savedScheduler = saved.scheduler {
            switch schedulerSettings {
            case .mustMatch:
                let differences = scheduler.settingDifferences(from: savedScheduler)
                guard differences.isEmpty else {
                    throw CheckpointError("--load \(directory.path): this run's learning-rate schedule differs from the checkpoint's "
                                      + "(this run vs the checkpoint): \(differences.joined(separator: ", ")); "
                                      + "--override-opt_param-scheduler keeps this run's, --use-checkpoint-opt_param-scheduler takes the checkpoint's")
                }
                scheduler.numSteps = savedScheduler.numSteps
            case .override: scheduler.numSteps = savedScheduler.numSteps
            case .useCheckpoint: scheduler = savedScheduler
            }
        }
        if restoreOptimizer { optimizer.step = saved.optimizerStep }
        if !finetune {
            iteration = saved.iteration
            consumedSamples = saved.consumedTrainSamples
            consumedValidationSamples = saved.consumedValidSamples
        }
        log("  successfully loaded checkpoint from \(directory.path) at iteration \(latest) "
            + "(\(String(format: "%.1f", Date().timeIntervalSince(start))) s)")
        return latest
    }

    /// Throws on every rank when `failure` happened on any: its own error where it happened,
    /// elsewhere one saying that `what` failed on another rank.
    func agree(_ failure: Error?, _ what: String) throws {
        let failures = try model.groups.world.allReduce(Int32(failure == nil ? 0 : 1), op: .sum)
        if let failure { throw failure }
        if failures > 0 { throw CheckpointError("\(what) failed on another rank") }
    }
}

/// What a loaded checkpoint's learning-rate schedule settings do to this run's (Megatron's
/// OptimizerParamScheduler.load_state_dict): they must match (its default), or this run's win
/// (--override-opt_param-scheduler), or the checkpoint's (--use-checkpoint-opt_param-scheduler).
public enum SchedulerSettingsOnLoad: Sendable { case mustMatch, override, useCheckpoint }
