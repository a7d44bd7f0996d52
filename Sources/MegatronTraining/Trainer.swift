import Foundation
import MegatronCore
import MegatronModels

/// The pretraining loop: each iteration accumulates gradients over global-batch / (micro-batch · dp)
/// micro-batches, synchronises them over the data-parallel group, clips, steps the optimizer and
/// the learning-rate schedule, and every `logInterval` iterations logs Megatron's line.
///
/// Data-parallel rank r takes Megatron's share of each iteration's samples: of every
/// micro-batch · dp consecutive samples, the r-th run of micro-batch samples. Its m-th micro-batch
/// is therefore micro-batch m·dp + r of the iteration, which also names its dropout masks, so any
/// data-parallel size computes the same thing as one rank.
public final class Trainer {
    public struct Settings: Sendable {
        public var trainIters: Int
        public var microBatchSize: Int
        public var globalBatchSize: Int
        public var sequenceLength: Int
        public var logInterval = 100
        public var seed: UInt64 = 1234
        /// --eod-mask-loss and --reset-position-ids, when either is set.
        public var documentBoundaries: MicroBatch.DocumentBoundaries?
        /// --log-throughput: the log line shows model TFLOP/s.
        public var logThroughput = false
        /// --log-params-norm: the log line shows the L2 norm of the parameters after the step.
        public var logParamsNorm = false
        /// Megatron's --check-for-nan-in-loss-and-grad (on by default): a non-finite lm loss or gradient
        /// norm ends the run with an error. Off, such an iteration is skipped (no update) and counted.
        public var checkForNaNInLossAndGrad = true
        /// --save and --save-interval: write a checkpoint there every this many iterations (nil: only
        /// at the end), and at the end of training if the last iteration was not saved.
        public var save: URL?
        public var saveInterval: Int?
        /// --exit-interval: stop after the first iteration divisible by this, saving a checkpoint first
        /// under --save (no final evaluation: Megatron exits the program there).
        public var exitInterval: Int?

        public init(trainIters: Int, microBatchSize: Int, globalBatchSize: Int, sequenceLength: Int) {
            self.trainIters = trainIters
            self.microBatchSize = microBatchSize
            self.globalBatchSize = globalBatchSize
            self.sequenceLength = sequenceLength
        }
    }

    /// What one iteration produced.
    public struct IterationResult: Sendable {
        public let iteration: Int
        public let loss: Float
        public let gradNorm: Double
        public let learningRate: Double
        public let skipped: Bool
        public let seconds: Double
        /// Seconds the gradient reductions took, and how long the training thread waited for them
        /// after backward (less than the first when they overlapped backward).
        public var gradSyncSeconds = 0.0, gradSyncWaitSeconds = 0.0

        public init(iteration: Int, loss: Float, gradNorm: Double, learningRate: Double, skipped: Bool, seconds: Double) {
            self.iteration = iteration
            self.loss = loss
            self.gradNorm = gradNorm
            self.learningRate = learningRate
            self.skipped = skipped
            self.seconds = seconds
        }
    }

    public let model: GPTModel
    public let optimizer: Optimizer
    public private(set) var scheduler: OptimizerParamScheduler
    public let settings: Settings
    public let dataParallel: DistributedDataParallel?
    /// Validation and test evaluation, when set (before `train`).
    public var evaluation: Evaluation?
    /// --tensorboard-dir: Megatron's TensorBoard scalars, on the rank that prints the log.
    public var tensorboard: TensorBoardLog?
    public private(set) var consumedValidationSamples = 0
    let sample: (Int) -> [Int32]
    let log: (String) -> Void
    public private(set) var consumedSamples = 0
    /// The last completed iteration: 0 before training, or the iteration a checkpoint resumed from.
    public private(set) var iteration = 0
    /// Whether the last `train` stopped at --exit-interval before --train-iters.
    public private(set) var exited = false

    /// `sample(i)` returns training sample i (sequence-length + 1 tokens). Without `dataParallel`
    /// this is the only rank.
    public init(model: GPTModel, optimizer: Optimizer, scheduler: OptimizerParamScheduler, settings: Settings,
                dataParallel: DistributedDataParallel? = nil, sample: @escaping (Int) -> [Int32], log: @escaping (String) -> Void) {
        self.model = model
        self.dataParallel = dataParallel
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.settings = settings
        self.sample = sample
        self.log = log
    }

    /// Runs the iterations after `iteration` up to `trainIters` (or --exit-interval).
    @discardableResult
    public func train() throws -> [IterationResult] {
        let s = settings
        let dp = dataParallel?.dataParallel.size ?? 1, dpRank = dataParallel?.dataParallel.rank ?? 0
        guard s.globalBatchSize % (s.microBatchSize * dp) == 0 else {
            throw TensorError("--global-batch-size \(s.globalBatchSize) is not divisible by --micro-batch-size "
                              + "\(s.microBatchSize) × data-parallel size \(dp)")
        }
        let microBatches = s.globalBatchSize / (s.microBatchSize * dp)
        let flops = modelFLOPsPerIteration(model.config, globalBatchSize: s.globalBatchSize, sequenceLength: s.sequenceLength)
        var results: [IterationResult] = []
        defer { try? tensorboard?.writer.flush() }
        var interval = TrainingLog()
        let firstIteration = iteration + 1
        var savedIteration: Int?
        exited = false
        for iteration in firstIteration ..< max(firstIteration, s.trainIters + 1) {
            let start = Date()
            model.zeroGradients()
            var lossSums = [0.0, 0.0]   // Σ mask·ℓ, Σ mask over the iteration's micro-batches
            for micro in 0 ..< microBatches {
                let first = consumedSamples + (micro * dp + dpRank) * s.microBatchSize
                let batch = try MicroBatch(samples: (first ..< first + s.microBatchSize).map(sample), boundaries: s.documentBoundaries,
                                           on: model.device)
                // The last micro-batch's backward completes the gradients: reduce them as it goes.
                let completes = micro == microBatches - 1
                if completes { dataParallel?.startGradSync() }
                let ready = completes ? dataParallel.map { ddp in { (range: Range<Int>) in try ddp.gradientsReady(range) } } : nil
                let loss = try model.forwardBackward(batch, lossWeight: 1 / Float(microBatches),
                                                     dropout: .init(seed: s.seed, iteration: iteration, microBatch: micro * dp + dpRank),
                                                     gradientsReady: ready)
                lossSums[0] += Double(loss.sum)
                lossSums[1] += Double(loss.tokens)
            }
            try dataParallel?.finishGradSync()
            if let group = dataParallel?.dataParallel, dp > 1 {
                try lossSums.withUnsafeMutableBufferPointer { try group.allReduce($0, op: .sum) }
            }
            // Megatron's reported lm loss: averaged over every token of the global batch.
            let loss = Float(lossSums[0] / lossSums[1])
            if s.checkForNaNInLossAndGrad, !loss.isFinite, lossSums[1] > 0 {
                throw Self.nonFinite("the lm loss", Double(loss), iteration: iteration)
            }
            let learningRate = scheduler.learningRate
            let (gradNorm, skipped) = try optimizer.step(learningRate: Float(learningRate), weightDecay: scheduler.weightDecay.map { Float($0) })
            if s.checkForNaNInLossAndGrad, !gradNorm.isFinite {
                throw Self.nonFinite("the gradient norm", gradNorm, iteration: iteration)
            }
            if !skipped {
                try dataParallel?.gatherParameters()
                scheduler.step(s.globalBatchSize)
            }
            consumedSamples += s.globalBatchSize
            self.iteration = iteration
            let seconds = Date().timeIntervalSince(start)
            var result = IterationResult(iteration: iteration, loss: loss, gradNorm: gradNorm,
                                         learningRate: learningRate, skipped: skipped, seconds: seconds)
            result.gradSyncSeconds = dataParallel?.lastCommunicationSeconds ?? 0
            result.gradSyncWaitSeconds = dataParallel?.lastWaitSeconds ?? 0
            results.append(result)
            interval.add(result)
            // Megatron logs the first iteration too (to show the start-up cost), and keeps its
            // sums, so the next line averages from the first.
            let logsLine = iteration % s.logInterval == 0 || iteration == firstIteration
            let logsScalars = tensorboard.map { iteration % $0.interval == 0 } ?? false
            let paramsNorm = s.logParamsNorm && (logsLine || logsScalars)
                ? try Elementwise.globalL2Norm([model.parameters], on: model.device) : nil
            if logsScalars {
                tensorboard?.iteration(iteration, consumedSamples: consumedSamples, learningRate: scheduler.learningRate,
                                       batchSize: s.globalBatchSize, loss: lossSums[1] > 0 ? loss : nil, gradNorm: loggedGradNorm(gradNorm),
                                       paramsNorm: paramsNorm)
            }
            if logsLine {
                // Megatron writes no iteration time for the first iteration (its start-up cost), but its throughput.
                let perIteration = interval.secondsPerIteration
                tensorboard?.timers(iteration, secondsPerIteration: iteration > firstIteration ? perIteration : nil,
                                    throughput: s.logThroughput ? flops / Double(dp) / perIteration / 1e12 : nil)
                log(interval.line(iteration: iteration, trainIters: s.trainIters, consumedSamples: consumedSamples,
                                  flopsPerIteration: s.logThroughput ? flops / Double(dp) : nil, learningRate: scheduler.learningRate,
                                  globalBatchSize: s.globalBatchSize, gradNorm: loggedGradNorm(gradNorm), paramsNorm: paramsNorm))
                try tensorboard?.writer.flush()
                if iteration > firstIteration { interval = TrainingLog() }
            }
            if let evaluation, let validation = evaluation.validation, let every = evaluation.interval, iteration % every == 0 {
                try evaluateAndLog(validation, from: consumedValidationSamples, label: "iteration \(iteration)")
                consumedValidationSamples += evaluation.iterations * s.globalBatchSize
            }
            if let save = s.save, let every = s.saveInterval, iteration % every == 0 {
                try saveCheckpoint(to: save)
                savedIteration = iteration
            }
            if let every = s.exitInterval, iteration % every == 0 {
                if let save = s.save, savedIteration != iteration { try saveCheckpoint(to: save) }
                log(" exiting program at iteration \(iteration)")
                exited = true
                return results
            }
        }
        if let save = s.save, iteration >= firstIteration, savedIteration != iteration { try saveCheckpoint(to: save) }
        if let evaluation {
            if let validation = evaluation.validation {
                try evaluateAndLog(validation, from: consumedValidationSamples, label: "iteration \(iteration) on validation set")
                consumedValidationSamples += evaluation.iterations * s.globalBatchSize
            }
            if let test = evaluation.test {
                try evaluateAndLog(test, from: 0, label: "iteration \(iteration) on test set")
            }
        }
        return results
    }

    /// Saves the checkpoint of `iteration` to `directory` (see `Checkpoint`). Every data-parallel rank
    /// takes part: under the distributed optimizer each contributes the state it owns; rank 0 writes,
    /// and every rank learns whether that succeeded.
    public func saveCheckpoint(to directory: URL) throws {
        let group = dataParallel?.dataParallel
        log(" saving checkpoint at iteration \(pad(iteration, 7)) to \(directory.path)")
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
        log("  successfully saved checkpoint from iteration \(pad(iteration, 7)) to \(directory.path) "
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
    private func agree(_ failure: Error?, _ what: String) throws {
        if let group = dataParallel?.dataParallel, group.size > 1,
           try group.allReduce(Int32(failure == nil ? 0 : 1), op: .sum) > 0, failure == nil {
            throw TensorError("\(what) failed on another data-parallel rank")
        }
        if let failure { throw failure }
    }

    private func pad(_ n: Int, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - String(n).count)) + String(n)
    }

    /// The error that ends a run under --check-for-nan-in-loss-and-grad.
    private static func nonFinite(_ what: String, _ value: Double, iteration: Int) -> TensorError {
        TensorError("iteration \(iteration): \(what) is \(value.isNaN ? "NaN" : "\(value)") (--check-for-nan-in-loss-and-grad, "
                    + "on by default, stops the run; with --no-check-for-nan-in-loss-and-grad the step is skipped instead)")
    }

    /// The grad norm as Megatron's log shows it: its fp32 optimizer computes the norm only to clip
    /// (--clip-grad > 0), so none is shown otherwise; its distributed optimizer then shows 0.000.
    private func loggedGradNorm(_ norm: Double) -> Double? {
        if optimizer.settings.clipGrad > 0 { return norm }
        return dataParallel?.settings.useDistributedOptimizer == true ? 0 : nil
    }

    /// Megatron's evaluation: the lm loss over `iterations` global batches, without dropout or
    /// gradients, averaged over every token with a nonzero loss mask on every data-parallel rank.
    public struct Evaluation {
        /// --eval-interval: evaluate on the validation samples every this many iterations (nil: only at the end).
        public var interval: Int?
        /// --eval-iters: global batches per evaluation.
        public var iterations: Int
        /// Validation and test samples by index, when those splits exist.
        public var validation: ((Int) -> [Int32])?
        public var test: ((Int) -> [Int32])?

        public init(interval: Int?, iterations: Int, validation: ((Int) -> [Int32])?, test: ((Int) -> [Int32])?) {
            self.interval = interval
            self.iterations = iterations
            self.validation = validation
            self.test = test
        }

        /// Validation samples a run needs: one evaluation per interval and one at the end
        /// (Megatron's train_iters // eval_interval + 1 evaluations).
        public func validationSamples(trainIters: Int, globalBatchSize: Int) -> Int {
            ((interval.map { trainIters / $0 } ?? 0) + 1) * iterations * globalBatchSize
        }
    }

    /// Evaluates on samples `first ..< first + iterations · global batch` of `sample` and logs Megatron's
    /// validation lines (the loss and its perplexity, exp of the loss capped at 20).
    private func evaluateAndLog(_ sample: (Int) -> [Int32], from first: Int, label: String) throws {
        let s = settings, iterations = evaluation!.iterations
        let dp = dataParallel?.dataParallel.size ?? 1, dpRank = dataParallel?.dataParallel.rank ?? 0
        let microBatches = s.globalBatchSize / (s.microBatchSize * dp)
        var sums = [0.0, 0.0]   // Σ loss·tokens, Σ tokens
        for batch in 0 ..< iterations * microBatches {
            let start = first + (batch * dp + dpRank) * s.microBatchSize
            let micro = try MicroBatch(samples: (start ..< start + s.microBatchSize).map(sample), boundaries: s.documentBoundaries,
                                       on: model.device)
            let loss = try model.loss(micro)
            sums[0] += Double(loss.sum)
            sums[1] += Double(loss.tokens)
        }
        if let group = dataParallel?.dataParallel, dp > 1 {
            try sums.withUnsafeMutableBufferPointer { try group.allReduce($0, op: .sum) }
        }
        let loss = sums[0] / sums[1]
        tensorboard?.validation(loss: loss, perplexity: exp(min(20, loss)), iteration: iteration, consumedSamples: consumedSamples)
        let line = " validation loss at \(label) | lm loss value: \(String(format: "%.6E", loss)) | "
            + "lm loss PPL: \(String(format: "%.6E", exp(min(20, loss)))) | "
        let rule = String(repeating: "-", count: line.count + 1)
        log(rule + "\n" + line + "\n" + rule)
    }
}

/// Megatron's per-iteration log line, averaged over the iterations since the last one (the
/// throughput only with --log-throughput, the grad norm only when the optimizer computed one, the
/// params norm only with --log-params-norm):
///  [2026-11-28 09:00:00.000000] iteration       10/     100 | consumed samples:          640 |
/// elapsed time per iteration (ms): 1234.5 | throughput per GPU (TFLOP/s/GPU): 1.2 |
/// learning rate: 1.000000E-04 | global batch size:    64 | lm loss: 1.234567E+00 | loss scale: 1.0 |
/// grad norm: 1.234 | number of skipped iterations:   0 | number of nan iterations:   0 |
/// (on one line). The learning rate shown is the schedule's after this iteration's step, as Megatron's.
public struct TrainingLog {
    var iterations = 0, skipped = 0, nan = 0

    public init() {}
    var seconds = 0.0
    var lossSum = 0.0, lossCount = 0

    public mutating func add(_ r: Trainer.IterationResult) {
        iterations += 1
        seconds += r.seconds
        if r.skipped {
            skipped += 1
            if !r.gradNorm.isFinite { nan += 1 }
        } else {
            lossSum += Double(r.loss)
            lossCount += 1
        }
    }

    var secondsPerIteration: Double { seconds / Double(max(iterations, 1)) }

    public func line(iteration: Int, trainIters: Int, consumedSamples: Int, flopsPerIteration: Double?, learningRate: Double,
              globalBatchSize: Int, gradNorm: Double?, paramsNorm: Double? = nil) -> String {
        let perIteration = secondsPerIteration
        var line = " [\(Self.timestamp())]"
        line += " iteration \(pad(iteration, 8))/\(pad(trainIters, 8)) |"
        line += " consumed samples: \(pad(consumedSamples, 12)) |"
        line += " elapsed time per iteration (ms): \(String(format: "%.1f", perIteration * 1000)) |"
        if let flopsPerIteration {
            line += " throughput per GPU (TFLOP/s/GPU): \(String(format: "%.1f", flopsPerIteration / perIteration / 1e12)) |"
        }
        line += " learning rate: \(String(format: "%.6E", learningRate)) |"
        line += " global batch size: \(pad(globalBatchSize, 5)) |"
        if lossCount > 0 { line += " lm loss: \(String(format: "%.6E", lossSum / Double(lossCount))) |" }
        line += " loss scale: 1.0 |"
        if let gradNorm, gradNorm.isFinite { line += " grad norm: \(String(format: "%.3f", gradNorm)) |" }
        if let paramsNorm { line += " params norm: \(String(format: "%.3f", paramsNorm)) |" }
        line += " number of skipped iterations: \(pad(skipped, 3)) |"
        line += " number of nan iterations: \(pad(nan, 3)) |"
        return line
    }

    private func pad(_ n: Int, _ width: Int) -> String {
        let text = String(n)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec, parts = tm()
        localtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d.%06d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1000)
    }
}
