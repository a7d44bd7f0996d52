import Foundation
import MegatronCore

/// Saving and resuming a training run (`Checkpoint` holds the format).
extension Trainer {
    /// Saves the checkpoint of `iteration` to `directory` (see `Checkpoint`). Every data-parallel rank
    /// takes part: under the distributed optimizer each contributes the state it owns; rank 0 writes,
    /// and every rank learns whether that succeeded.
    public func saveCheckpoint(to directory: URL) throws {
        let group = dataParallel?.dataParallel
        log(" saving checkpoint at iteration \(String(format: "%7d", iteration)) to \(directory.path)")
        let start = Date()
        // Under the distributed optimizer the other ranks send rank 0 their shards of the state, in
        // state, rank and span order; rank 0 alone holds the whole state, for the moment of the save.
        let shardedGroup = dataParallel?.settings.useDistributedOptimizer == true && (group?.size ?? 1) > 1 ? group : nil
        var failure: Error?
        if (group?.rank ?? 0) == 0 {
            try optimizer.withFullState { state in
                if let shardedGroup, let dataParallel {
                    for (_, values) in state {
                        for source in 1 ..< shardedGroup.size {
                            for range in dataParallel.ownedRanges(ofRank: source) {
                                try shardedGroup.receive(into: UnsafeMutableBufferPointer(start: values + range.lowerBound, count: range.count),
                                                         from: source, tag: Self.checkpointTag)
                            }
                        }
                    }
                }
                do {
                    try Checkpoint.save(to: directory, progress: progress, parameters: model.parameters.floats, optimizerState: state)
                } catch { failure = error }
            }
        } else if let shardedGroup {
            for (_, state) in optimizer.stateTensors {
                for (range, values) in optimizer.ownedSpans(of: state) {
                    try shardedGroup.send(UnsafeBufferPointer(start: values, count: range.count), to: 0, tag: Self.checkpointTag)
                }
            }
        }
        try agree(failure, "saving the checkpoint of iteration \(iteration) to \(directory.path)")
        log("  successfully saved checkpoint from iteration \(String(format: "%7d", iteration)) to \(directory.path) "
            + "(\(String(format: "%.1f", Date().timeIntervalSince(start))) s)")
    }

    /// The message tag of the optimizer shards sent to rank 0 for a save.
    static let checkpointTag = 7100

    /// Where training stands, as a checkpoint records it.
    var progress: Checkpoint.Progress {
        .init(iteration: iteration, consumedTrainSamples: consumedSamples, consumedValidSamples: consumedValidationSamples,
              optimizer: optimizer.settings.kind.rawValue, optimizerStep: optimizer.step, scheduler: scheduler,
              model: model.config)
    }

    /// What a loaded checkpoint's learning-rate schedule settings do to this run's (Megatron's
    /// OptimizerParamScheduler.load_state_dict): they must match (its default), or this run's win
    /// (--override-opt_param-scheduler), or the checkpoint's (--use-checkpoint-opt_param-scheduler).
    public enum SchedulerSettingsOnLoad: Sendable { case mustMatch, override, useCheckpoint }

    /// Resumes from the latest checkpoint in `directory` (--load), as Megatron's load_checkpoint: the
    /// parameters; unless `finetune`, the iteration and consumed samples; unless `finetune` or
    /// `!loadOptimizer` (--no-load-optim), the optimizer state and the schedule's position (so with
    /// --no-load-optim the schedule starts over, as Megatron's). Returns the checkpoint's iteration, or
    /// nil when the directory holds none (Megatron then warns and trains from the initialisation).
    /// Every data-parallel rank must find the same checkpoint; a failure on one is an error on all.
    @discardableResult
    public func loadCheckpoint(from directory: URL, loadOptimizer: Bool = true, finetune: Bool = false,
                               schedulerSettings: SchedulerSettingsOnLoad = .mustMatch) throws -> Int? {
        var latest: Int?, failure: Error?
        do { latest = try Checkpoint.latestIteration(in: directory) } catch { failure = error }
        try agree(failure, "reading \(directory.appendingPathComponent(Checkpoint.trackerName).path)")
        if let group = dataParallel?.dataParallel, group.size > 1 {
            let mine = Int32(latest ?? -1)
            let highest = try group.allReduce(mine, op: .max), lowest = -(try group.allReduce(-mine, op: .max))
            guard highest == lowest else {
                throw TensorError("--load \(directory.path): the data-parallel ranks find different checkpoints (iterations \(lowest) "
                                  + "to \(highest), -1 meaning none): every rank must read the same directory")
            }
        }
        guard let latest else {
            log(" WARNING: could not find the metadata file \(directory.appendingPathComponent(Checkpoint.trackerName).path); "
                + "will not load any checkpoints and will start from random")
            return nil
        }
        let start = Date()
        let restoreOptimizer = loadOptimizer && !finetune
        var loaded: Checkpoint.Progress?
        do {
            // Each rank copies its own spans of the optimizer state straight from the (memory-mapped) file.
            let state = optimizer.stateTensors.map { (name: $0.name, spans: optimizer.ownedSpans(of: $0.values)) }
            loaded = try Checkpoint.load(from: directory, iteration: latest, model: model,
                                         optimizer: restoreOptimizer ? (optimizer.settings.kind.rawValue, state) : nil)
        } catch { failure = error }
        try agree(failure, "loading the checkpoint of iteration \(latest) from \(directory.path)")
        let saved = loaded!
        if restoreOptimizer, let savedScheduler = saved.scheduler {
            switch schedulerSettings {
            case .mustMatch:
                let differences = scheduler.settingDifferences(from: savedScheduler)
                guard differences.isEmpty else {
                    throw TensorError("--load \(directory.path): this run's learning-rate schedule differs from the checkpoint's "
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

    /// Throws on every data-parallel rank when `failure` happened on any: its own error where it
    /// happened, elsewhere one saying that `what` failed on another rank.
    func agree(_ failure: Error?, _ what: String) throws {
        if let group = dataParallel?.dataParallel, group.size > 1,
           try group.allReduce(Int32(failure == nil ? 0 : 1), op: .sum) > 0, failure == nil {
            throw TensorError("\(what) failed on another data-parallel rank")
        }
        if let failure { throw failure }
    }
}
