import Foundation
import MegatronCore
import MegatronModels

/// The pretraining loop: each iteration accumulates gradients over global-batch / (micro-batch · dp)
/// micro-batches (through the pipeline schedule when the model is one stage of several),
/// synchronises them over the data-parallel group (with its context-parallel peers), clips, steps the optimizer and the learning-rate
/// schedule, and every `logInterval` iterations logs Megatron's line.
///
/// Data-parallel rank r takes Megatron's share of each iteration's samples: of every
/// micro-batch · dp consecutive samples, the r-th run of micro-batch samples. Its m-th micro-batch
/// is therefore micro-batch m·dp + r of the iteration, which also names its dropout masks, so any
/// data-parallel size computes the same thing as one rank.
public final class Trainer<Model: PretrainingModel> {
    public let model: Model
    public let optimizer: Optimizer
    public internal(set) var scheduler: OptimizerParamScheduler
    public let settings: TrainingSettings
    public let dataParallel: DistributedDataParallel
    /// Validation and test evaluation, when set (before `train`).
    public var evaluation: Evaluation?
    /// --tensorboard-dir: Megatron's TensorBoard scalars, on the rank that prints the log.
    public var tensorboard: TensorBoardLog?
    public internal(set) var consumedValidationSamples = 0
    let sample: (Int) throws -> Model.Sample
    let log: (String) -> Void
    public internal(set) var consumedSamples = 0
    /// The last completed iteration: 0 before training, or the iteration a checkpoint resumed from.
    public internal(set) var iteration = 0
    /// Whether the last `train` stopped at --exit-interval, --exit-duration-in-mins or an exit signal
    /// before --train-iters.
    public private(set) var exited = false
    /// The asynchronous save being written (--async-save), published by `finishPendingSave`.
    var pendingSave: PendingSave<Model.Architecture>?

    /// `sample(i)` returns training sample i (GPT's: sequence-length + 1 tokens), or throws why it
    /// cannot. Without `dataParallel`, data parallelism with the default settings over the model's
    /// data-parallel group (with its context-parallel peers).
    public init(model: Model, optimizer: Optimizer, scheduler: OptimizerParamScheduler, settings: TrainingSettings,
                dataParallel: DistributedDataParallel? = nil, sample: @escaping (Int) throws -> Model.Sample,
                log: @escaping (String) -> Void) throws {
        self.model = model
        self.dataParallel = try dataParallel ?? DistributedDataParallel(model: model)
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
        let dp = model.groups.dataParallel.size
        guard s.globalBatchSize % (s.microBatchSize * dp) == 0 else {
            throw ConfigError(flag: "--global-batch-size", "--global-batch-size \(s.globalBatchSize) is not divisible by --micro-batch-size "
                              + "\(s.microBatchSize) × data-parallel size \(dp)")
        }
        var results: [IterationResult] = []
        defer { try? tensorboard?.writer.flush() }
        var interval = TrainingLog()
        let firstIteration = iteration + 1
        var savedIteration: Int?
        exited = false
        if s.skipTrain { log(" skipping training (--skip-train is on) ...") }
        let lastIteration = s.skipTrain ? iteration : s.trainIters
        for iteration in firstIteration ..< max(firstIteration, lastIteration + 1) {
            let start = Date()
            let globalBatchSize = s.batchSizeSchedule?.globalBatchSize(consumedSamples: consumedSamples) ?? s.globalBatchSize
            guard globalBatchSize % (s.microBatchSize * dp) == 0 else {
                throw ConfigError(flag: "--step-batch-size-schedule", "--step-batch-size-schedule: the global batch size \(globalBatchSize) at \(consumedSamples) consumed "
                                  + "samples is not divisible by --micro-batch-size \(s.microBatchSize) × data-parallel size \(dp)")
            }
            let microBatches = globalBatchSize / (s.microBatchSize * dp)
            // Megatron's throughput is per device: the model's FLOPs over every rank.
            let flops = model.flopsPerIteration(samples: globalBatchSize, sequenceLength: s.sequenceLength)
                / Double(model.groups.state.worldSize)
            model.zeroGradients()
            dataParallel.startGradSync()
            // The last micro-batch's backward completes the gradients: data parallelism reduces each
            // bucket as it goes.
            // Under a loss scaler the gradients come out multiplied by its scale (the optimizer divides it out).
            let schedule = schedule(of: sample, from: consumedSamples, iteration: iteration)
            let forwardBackwardStart = Date()
            let stageLosses = try schedule.forwardBackward(count: microBatches, lossWeight: optimizer.lossScale / Float(microBatches),
                                                           gradientsReady: dataParallel.gradientsReady)
            let forwardBackwardSeconds = Date().timeIntervalSince(forwardBackwardStart)
            try dataParallel.finalizeModelGradients()
            let paramGather = (seconds: dataParallel.paramGatherSeconds, wait: dataParallel.paramGatherWaitSeconds)
            let losses = try globalBatchLosses(stageLosses)
            // Megatron's reported lm loss (GPT's averaged over every token of the global batch).
            let loss = Float(losses[0].value)
            let checking = s.checkForNaNInLossAndGrad && !optimizer.usesDynamicLossScaling
            if checking, !loss.isFinite, losses[0].count > 0 {
                throw Self.nonFinite("the \(losses[0].name)", Double(loss), iteration: iteration)
            }
            let learningRate = scheduler.learningRate
            // An asynchronous save reads the parameters and optimizer state in place: the step waits for it.
            try finishPendingSave(blocking: true)
            let (computedNorm, skipped) = try optimizer.step(learningRate: Float(learningRate),
                                                             weightDecay: scheduler.weightDecay.map { Float($0) })
            if checking, let computedNorm, !computedNorm.isFinite {
                throw Self.nonFinite("the gradient norm", computedNorm, iteration: iteration)
            }
            if checking, computedNorm == nil {
                throw TrainingError(iteration: iteration, "the gradients hold an inf or NaN at --loss-scale \(optimizer.lossScale) "
                                  + "(--check-for-nan-in-loss-and-grad; --no-check-for-nan-in-loss-and-grad skips such iterations)")
            }
            let gradNorm = computedNorm ?? .nan  // the result's NaN: no norm (a loss-scale overflow)
            if !skipped {
                try dataParallel.gatherParameters()
                scheduler.step(globalBatchSize)
            }
            consumedSamples += globalBatchSize
            self.iteration = iteration
            let seconds = Date().timeIntervalSince(start)
            var result = IterationResult(iteration: iteration, loss: loss, gradNorm: gradNorm,
                                         learningRate: learningRate, skipped: skipped, seconds: seconds)
            result.losses = losses
            result.gradSyncSeconds = dataParallel.lastCommunicationSeconds
            result.gradSyncWaitSeconds = dataParallel.lastWaitSeconds
            (result.paramGatherSeconds, result.paramGatherWaitSeconds) = paramGather
            result.forwardBackwardSeconds = forwardBackwardSeconds
            result.pipelineCommunicationSeconds = schedule.communication.seconds
            results.append(result)
            interval.add(result)
            // Megatron logs the first iteration too (to show the start-up cost), and keeps its
            // sums, so the next line averages from the first.
            let logsLine = iteration % s.logInterval == 0 || iteration == firstIteration
            let logsScalars = tensorboard.map { iteration % $0.interval == 0 } ?? false
            // A collective over the model-parallel ranks, so every rank computes it every iteration
            // (as Megatron does), not only where a line or scalar is written.
            var paramsNorm: Double?
            if s.logParamsNorm {
                try dataParallel.finishParamGather()
                paramsNorm = try model.wholeModelNorm(of: model.parameters)
            }
            if logsScalars {
                tensorboard?.iteration(iteration, consumedSamples: consumedSamples, learningRate: scheduler.learningRate,
                                       batchSize: globalBatchSize, losses: losses.filter { $0.count > 0 }, lossScale: optimizer.lossScale,
                                       gradNorm: loggedGradNorm(computedNorm),
                                       paramsNorm: paramsNorm)
            }
            if logsLine {
                // Megatron writes no iteration time for the first iteration (its start-up cost), but its throughput.
                let perIteration = interval.secondsPerIteration
                tensorboard?.timers(iteration, secondsPerIteration: iteration > firstIteration ? perIteration : nil,
                                    throughput: s.logThroughput ? flops / perIteration / 1e12 : nil)
                log(interval.line(iteration: iteration, trainIters: s.trainIters, consumedSamples: consumedSamples,
                                  flopsPerIteration: s.logThroughput ? flops : nil, learningRate: scheduler.learningRate,
                                  globalBatchSize: globalBatchSize, lossScale: optimizer.lossScale, gradNorm: loggedGradNorm(computedNorm),
                                  paramsNorm: paramsNorm))
                try tensorboard?.writer.flush()
                if iteration > firstIteration { interval = interval.next() }
            }
            if let evaluation, let validation = evaluation.validation, let every = evaluation.interval, iteration % every == 0 {
                try evaluateAndLog(validation, from: consumedValidationSamples, label: "iteration \(iteration)")
                consumedValidationSamples += evaluation.iterations * s.globalBatchSize
            }
            try finishPendingSave(blocking: false)
            if let save = s.save, let every = s.saveInterval, iteration % every == 0 {
                try saveCheckpoint(to: save)
                savedIteration = iteration
            }
            if let line = try exitLine(after: iteration) {
                if let save = s.save, savedIteration != iteration { try saveCheckpoint(to: save) }
                try finishPendingSave(blocking: true)
                try dataParallel.finishParamGather()
                log(line)
                exited = true
                return results
            }
        }
        if let save = s.save, iteration >= firstIteration, savedIteration != iteration { try saveCheckpoint(to: save) }
        try finishPendingSave(blocking: true)
        try dataParallel.finishParamGather()
        if let evaluation {
            if let validation = evaluation.validation {
                try evaluateAndLog(validation, from: consumedValidationSamples, label: "iteration \(iteration) on validation set",
                                   toTensorBoard: !s.skipTrain)
                consumedValidationSamples += evaluation.iterations * s.globalBatchSize
            }
            if let test = evaluation.test {
                try evaluateAndLog(test, from: 0, label: "iteration \(iteration) on test set", toTensorBoard: !s.skipTrain)
            }
        }
        return results
    }

    /// Megatron's line for stopping after `iteration`, in its order of checks, or nil to go on: an exit
    /// signal on any rank, the time limit passed on any rank's clock (so every rank stops at the same
    /// iteration), --exit-interval.
    private func exitLine(after iteration: Int) throws -> String? {
        let s = settings
        // Megatron's print_datetime.
        let line = { (what: String) in "[\(what)] datetime: \(TrainingLog.timestamp()) " }
        if let signal = s.exitSignal, try model.groups.world.allReduce(Int32(signal.wasReceived ? 1 : 0), op: .max) > 0 {
            return line("exiting program after receiving \(signal.name).")
        }
        if let limit = s.exitDurationInMinutes, limit > 0 {
            let minutes = Date().timeIntervalSince(s.startTime) / 60
            if try model.groups.world.allReduce(Int32(minutes > limit ? 1 : 0), op: .max) > 0 {
                return line("exiting program after \(minutes) minutes")
            }
        }
        if let every = s.exitInterval, iteration % every == 0 { return line("exiting program at iteration \(iteration)") }
        return nil
    }

    /// The pipeline schedule of this data-parallel rank's micro-batches of `sample` from sample
    /// `first`: of every micro-batch · dp consecutive samples, the dpRank-th run. Micro-batch m's
    /// dropout masks are those of micro-batch m·dp + dpRank of `iteration` (0 in evaluation, which
    /// draws none).
    private func schedule(of sample: @escaping (Int) throws -> Model.Sample, from first: Int, iteration: Int) -> PipelineSchedule<Model> {
        let s = settings, model = model
        let dp = model.groups.dataParallel.size, dpRank = model.groups.dataParallel.rank
        var schedule = PipelineSchedule(model: model, tokens: s.microBatchSize * s.sequenceLength) { m in
            let start = first + (m * dp + dpRank) * s.microBatchSize
            return (try model.microBatch(of: (start ..< start + s.microBatchSize).map { try sample($0) }),
                    DropoutKey(seed: s.seed, iteration: iteration, microBatch: m * dp + dpRank))
        }
        schedule.parametersNeeded = dataParallel.parametersNeeded
        return schedule
    }

    /// The last pipeline stage's reported losses (sums and counts over its micro-batches), summed
    /// over its data-parallel ranks, on every rank: one sum over all ranks, to which only the first
    /// tensor-parallel rank of the last stage contributes (its tensor-parallel peers hold the same
    /// losses, the other stages zeros under the model's `reportedLossNames`).
    private func globalBatchLosses(_ stageLosses: [ReportedLoss]) throws -> [ReportedLoss] {
        let contributes = model.pipeline.isLast && model.tensorParallel.rank == 0
        var sums: [Double] = stageLosses.flatMap { contributes ? [$0.sum, $0.count] : [0, 0] }
        try sums.withUnsafeMutableBufferPointer { try model.groups.world.allReduce($0, op: .sum) }
        return stageLosses.enumerated().map { ReportedLoss($1.name, sum: sums[2 * $0], count: sums[2 * $0 + 1]) }
    }

    /// The error that ends a run under --check-for-nan-in-loss-and-grad.
    private static func nonFinite(_ what: String, _ value: Double, iteration: Int) -> TrainingError {
        TrainingError(iteration: iteration, "\(what) is \(value.isNaN ? "NaN" : "\(value)") (--check-for-nan-in-loss-and-grad, "
                    + "on by default, stops the run; with --no-check-for-nan-in-loss-and-grad the step is skipped instead)")
    }

    /// The grad norm as Megatron's log shows it: none after a loss-scale overflow (nil, Megatron's
    /// None); its fp32 optimizer computes the norm only to clip (--clip-grad > 0), so none is shown
    /// otherwise, while its distributed and mixed-precision optimizers then show 0.000.
    private func loggedGradNorm(_ norm: Double?) -> Double? {
        guard let norm else { return nil }
        if optimizer.settings.clipGrad > 0 { return norm }
        return dataParallel.settings.useDistributedOptimizer || optimizer.settings.paramsDType != .float32 ? 0 : nil
    }

    /// Megatron's evaluation: the reported losses over `iterations` global batches, without dropout
    /// or gradients, on every data-parallel rank (GPT's lm loss averaged over every token with a
    /// nonzero loss mask).
    public struct Evaluation {
        /// --eval-interval: evaluate on the validation samples every this many iterations (nil: only at the end).
        public var interval: Int?
        /// --eval-iters: global batches per evaluation.
        public var iterations: Int
        /// Validation and test samples by index, when those splits exist.
        public var validation: ((Int) throws -> Model.Sample)?
        public var test: ((Int) throws -> Model.Sample)?

        public init(interval: Int?, iterations: Int, validation: ((Int) throws -> Model.Sample)?, test: ((Int) throws -> Model.Sample)?) {
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
    /// validation lines (each loss and its perplexity, exp of the loss capped at 20).
    private func evaluateAndLog(_ sample: @escaping (Int) throws -> Model.Sample, from first: Int, label: String, toTensorBoard: Bool = true) throws {
        let s = settings, iterations = evaluation!.iterations
        let microBatches = s.globalBatchSize / (s.microBatchSize * model.groups.dataParallel.size)
        let losses = try globalBatchLosses(schedule(of: sample, from: first, iteration: 0).forwardOnly(count: iterations * microBatches))
        if toTensorBoard { tensorboard?.validation(losses, iteration: iteration, consumedSamples: consumedSamples) }
        let line = " validation loss at \(label) | "
            + losses.map { "\($0.name) value: \(String(format: "%.6E", $0.value)) | \($0.name) PPL: \(String(format: "%.6E", $0.perplexity)) | " }
                .joined()
        let rule = String(repeating: "-", count: line.count + 1)
        log(rule + "\n" + line + "\n" + rule)
    }
}
