import ArgumentParser
import MegatronTraining

/// Training, optimizer and learning-rate flags of Megatron-LM's pretrain_gpt.py.
public struct TrainingArguments: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("seq-length"), help: "The sequence length (T5's encoder's; --encoder-seq-length is the same flag).")
    var seqLengthFlag: Int?
    @Option(name: .customLong("encoder-seq-length"), help: "T5's spelling of --seq-length.") var encoderSeqLength: Int?
    /// --seq-length or --encoder-seq-length (Megatron's one value under two names).
    public var seqLength: Int { seqLengthFlag ?? encoderSeqLength ?? 0 }

    /// Megatron's rule: one of --seq-length and --encoder-seq-length.
    public func validate() throws {
        guard (seqLengthFlag == nil) != (encoderSeqLength == nil) else {
            throw ValidationError("give one of --seq-length and --encoder-seq-length (the same value)")
        }
    }
    @Option(name: .customLong("micro-batch-size"), help: "Required, as in Megatron.") public var microBatchSize: Int
    @Option(name: .customLong("global-batch-size"), help: "Default: micro-batch-size × data-parallel size.")
    public var globalBatchSize: Int?
    @Option(name: .customLong("step-batch-size-schedule"),
            help: ArgumentHelp("Global batch size by tokens consumed, \"0:16 2.4B:320 …\" (Megatron's; instead of --global-batch-size).",
                               discussion: "Evaluation then uses micro-batch × data-parallel samples per batch, and iteration-counted "
                                   + "learning-rate flags count that many samples per iteration, as in Megatron: use --train-samples."))
    public var stepBatchSizeSchedule: String?
    @Option(name: .customLong("train-iters")) public var trainIters: Int?
    @Option(name: .customLong("train-samples")) public var trainSamples: Int?
    @Option(name: .customLong("log-interval")) public var logInterval = 100
    @Flag(name: .customLong("log-throughput"), help: "Show model TFLOP/s in the log line.") public var logThroughput = false
    @Flag(name: .customLong("log-params-norm"), help: "Show the parameters' L2 norm in the log line.") public var logParamsNorm = false
    @Flag(name: .customLong("no-check-for-nan-in-loss-and-grad"),
          help: "Skip (and count) iterations whose lm loss or gradient norm is not finite, instead of stopping the run.")
    public var noCheckForNaNInLossAndGrad = false
    @Option(name: .customLong("seed")) public var seed = 1234
    @Flag(name: .customLong("skip-train"), help: "Run no iterations: only evaluate (a checkpoint from --load) on the validation and test splits.")
    public var skipTrain = false

    @Option(name: .customLong("optimizer")) public var optimizer = Optimizer.Kind.adam
    @Option(name: .customLong("lr")) public var lr: Double
    @Option(name: .customLong("min-lr")) public var minLR: Double = 0
    @Option(name: .customLong("lr-decay-style")) public var lrDecayStyle = OptimizerParamScheduler.DecayStyle.linear
    @Option(name: .customLong("lr-decay-iters")) public var lrDecayIters: Int?
    @Option(name: .customLong("lr-decay-samples")) public var lrDecaySamples: Int?
    @Option(name: .customLong("lr-warmup-iters")) public var lrWarmupIters = 0
    @Option(name: .customLong("lr-warmup-samples")) public var lrWarmupSamples = 0
    @Option(name: .customLong("lr-warmup-fraction")) public var lrWarmupFraction: Double?
    @Option(name: .customLong("lr-warmup-init")) public var lrWarmupInit: Double = 0
    @Option(name: .customLong("lr-wsd-decay-iters")) public var lrWSDDecayIters: Int?
    @Option(name: .customLong("lr-wsd-decay-samples")) public var lrWSDDecaySamples: Int?
    @Option(name: .customLong("lr-wsd-decay-style")) public var lrWSDDecayStyle = OptimizerParamScheduler.WSDDecayStyle.exponential
    @Option(name: .customLong("weight-decay")) public var weightDecay: Float = 0.01
    @Option(name: .customLong("start-weight-decay"), help: "Weight decay at the start of a linear or cosine --weight-decay-incr-style.")
    public var startWeightDecay: Double?
    @Option(name: .customLong("end-weight-decay"), help: "Weight decay at the end of the run, reached by --weight-decay-incr-style.")
    public var endWeightDecay: Double?
    @Option(name: .customLong("weight-decay-incr-style"), help: "constant: --weight-decay throughout.")
    public var weightDecayIncrStyle = OptimizerParamScheduler.WeightDecayIncrement.Style.constant
    @Option(name: .customLong("adam-beta1")) public var adamBeta1: Float = 0.9
    @Option(name: .customLong("adam-beta2")) public var adamBeta2: Float = 0.999
    @Option(name: .customLong("adam-eps")) public var adamEps: Float = 1e-8
    @Option(name: .customLong("sgd-momentum")) public var sgdMomentum: Float = 0.9
    @Option(name: .customLong("clip-grad")) public var clipGrad: Float = 1

    /// --step-batch-size-schedule, parsed, or a ValidationError naming the entry at fault.
    public func batchSizeSchedule() throws -> BatchSizeSchedule? {
        guard let stepBatchSizeSchedule else { return nil }
        guard globalBatchSize == nil else { throw ValidationError("give only one of --step-batch-size-schedule and --global-batch-size") }
        return try BatchSizeSchedule(parsing: stepBatchSizeSchedule, sequenceLength: seqLength)
    }

    /// Iterations to run, from --train-iters or --train-samples (exactly one): with a batch size
    /// schedule, the iterations that consume --train-samples.
    public func iterations(globalBatchSize: Int) throws -> Int {
        switch (trainIters, trainSamples) {
        case (let iters?, nil):
            guard iters >= 1 else { throw ValidationError("--train-iters \(iters): expected at least 1") }
            return iters
        case (nil, let samples?) where stepBatchSizeSchedule != nil:
            guard samples >= 1 else { throw ValidationError("--train-samples \(samples): expected at least 1") }
            return try batchSizeSchedule()!.iterations(toConsume: samples)
        case (nil, let samples?):
            guard samples >= globalBatchSize else {
                throw ValidationError("--train-samples \(samples) is less than one global batch (\(globalBatchSize))")
            }
            return samples / globalBatchSize
        case (nil, nil): throw ValidationError("give --train-iters or --train-samples")
        default: throw ValidationError("give only one of --train-iters and --train-samples")
        }
    }

    /// Megatron's schedule in samples: decay over --lr-decay-iters (default --train-iters) × global
    /// batch, or --lr-decay-samples (default --train-samples); warm-up by fraction of that (a sample
    /// count that need not be whole, as in Megatron), or iters/samples. The flags must agree as
    /// arguments.py and OptimizerParamScheduler require, else an error names them.
    public func scheduler(globalBatchSize gbs: Int) throws -> OptimizerParamScheduler {
        let style = lrDecayStyle, wsdStyle = lrWSDDecayStyle
        // Iteration-based flags with --train-iters, sample-based ones with --train-samples.
        let (unit, decayFlag, warmupFlag, wsdFlag) = trainIters != nil
            ? ("iters", "--lr-decay-iters", "--lr-warmup-iters", "--lr-wsd-decay-iters")
            : ("samples", "--lr-decay-samples", "--lr-warmup-samples", "--lr-wsd-decay-samples")
        let otherUnitFlags: [(String, Bool)] = trainIters != nil
            ? [("--lr-decay-samples", lrDecaySamples != nil), ("--lr-warmup-samples", lrWarmupSamples != 0),
               ("--lr-wsd-decay-samples", lrWSDDecaySamples != nil)]
            : [("--lr-decay-iters", lrDecayIters != nil), ("--lr-warmup-iters", lrWarmupIters != 0),
               ("--lr-wsd-decay-iters", lrWSDDecayIters != nil)]
        if let (flag, _) = otherUnitFlags.first(where: \.1) {
            throw ValidationError("\(flag) does not go with --train-\(unit): the schedule is counted in \(unit) (\(decayFlag), \(warmupFlag), \(wsdFlag))")
        }
        let warmupGiven = trainIters != nil ? lrWarmupIters != 0 : lrWarmupSamples != 0
        if lrWarmupFraction != nil, warmupGiven { throw ValidationError("give only one of --lr-warmup-fraction and \(warmupFlag)") }
        if let f = lrWarmupFraction, !(0 ... 1).contains(f) {
            throw ValidationError("--lr-warmup-fraction \(f): expected a value in [0, 1]")
        }

        let decaySteps: Int, wsdSteps: Int?, warmupSteps: Double
        if let trainIters {
            decaySteps = (lrDecayIters ?? trainIters) * gbs
            wsdSteps = lrWSDDecayIters.map { $0 * gbs }
            warmupSteps = lrWarmupFraction.map { $0 * Double(decaySteps) } ?? Double(lrWarmupIters * gbs)
        } else {
            decaySteps = lrDecaySamples ?? trainSamples ?? 0
            wsdSteps = lrWSDDecaySamples
            warmupSteps = lrWarmupFraction.map { $0 * Double(decaySteps) } ?? Double(lrWarmupSamples)
        }
        guard minLR >= 0 else { throw ValidationError("--min-lr \(minLR): expected 0 or more") }
        guard minLR <= lr else { throw ValidationError("--min-lr \(minLR) exceeds --lr \(lr)") }
        guard lrWarmupInit <= lr else { throw ValidationError("--lr-warmup-init \(lrWarmupInit) exceeds --lr \(lr)") }
        guard decaySteps > 0 else { throw ValidationError("\(decayFlag) \(decaySteps / (trainIters != nil ? gbs : 1)): expected at least 1") }
        guard warmupSteps >= 0, warmupSteps < Double(decaySteps) else {
            throw ValidationError("the warm-up (\(lrWarmupFraction != nil ? "--lr-warmup-fraction" : warmupFlag)) must end before the decay does: "
                                  + "\(warmupSteps) samples of warm-up, \(decaySteps) samples to the end of the decay (\(decayFlag), default --train-\(unit))")
        }
        if style == .wsd, wsdSteps == nil { throw ValidationError("--lr-decay-style WSD needs \(wsdFlag)") }
        return OptimizerParamScheduler(maxLR: lr, minLR: minLR, initLR: lrWarmupInit, warmupSteps: warmupSteps,
                                       decaySteps: decaySteps, decayStyle: style, wsdDecaySteps: wsdSteps ?? 0, wsdDecayStyle: wsdStyle,
                                       weightDecayIncrement: try weightDecayIncrement(globalBatchSize: gbs))
    }

    /// Megatron's weight decay schedule over the run's samples: --weight-decay throughout when
    /// constant (--start/--end-weight-decay then not given, as arguments.py asserts), else from
    /// --start-weight-decay to --end-weight-decay (both needed).
    public func weightDecayIncrement(globalBatchSize gbs: Int) throws -> OptimizerParamScheduler.WeightDecayIncrement {
        let style = weightDecayIncrStyle
        let steps = trainIters.map { $0 * gbs } ?? trainSamples ?? 0
        guard style != .constant else {
            if let flag = [("--start-weight-decay", startWeightDecay), ("--end-weight-decay", endWeightDecay)].first(where: { $0.1 != nil })?.0 {
                throw ValidationError("\(flag) needs --weight-decay-incr-style linear or cosine (constant uses --weight-decay)")
            }
            return .init(start: Double(weightDecay), end: Double(weightDecay), steps: steps, style: .constant)
        }
        guard let startWeightDecay, let endWeightDecay else {
            throw ValidationError("--weight-decay-incr-style \(style.rawValue) needs --start-weight-decay and --end-weight-decay")
        }
        for (flag, value) in [("--start-weight-decay", startWeightDecay), ("--end-weight-decay", endWeightDecay)] where !(value >= 0) {
            throw ValidationError("\(flag) \(value): expected 0 or more")
        }
        guard endWeightDecay >= startWeightDecay else {
            throw ValidationError("--end-weight-decay \(endWeightDecay) is below --start-weight-decay \(startWeightDecay): the schedule only increases")
        }
        return .init(start: startWeightDecay, end: endWeightDecay, steps: steps, style: style)
    }

    public func optimizerSettings() throws -> Optimizer.Settings {
        // The ranges torch.optim's AdamW and SGD accept.
        for (flag, value) in [("--adam-beta1", adamBeta1), ("--adam-beta2", adamBeta2)] where !(0 ..< 1).contains(value) {
            throw ValidationError("\(flag) \(value): expected a value in [0, 1)")
        }
        for (flag, value) in [("--lr", Float(lr)), ("--adam-eps", adamEps), ("--weight-decay", weightDecay),
                              ("--sgd-momentum", sgdMomentum), ("--clip-grad", clipGrad)] where !(value >= 0) {
            throw ValidationError("\(flag) \(value): expected 0 or more")
        }
        var s = Optimizer.Settings()
        s.kind = optimizer
        s.weightDecay = weightDecay
        s.adamBeta1 = adamBeta1
        s.adamBeta2 = adamBeta2
        s.adamEpsilon = adamEps
        s.sgdMomentum = sgdMomentum
        s.clipGrad = clipGrad
        return s
    }
}
