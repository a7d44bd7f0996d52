import ArgumentParser
import MegatronCore
import MegatronModels
import MegatronTraining

/// Megatron's mixed-precision flags (see `Optimizer`, `GradScaler` and `ParameterStorage`). The
/// model's parameters take the 16-bit values and the optimizer keeps fp32 main parameters (or, under
/// the precision-aware optimizer, their remainders); the kernels compute in fp32.
public struct MixedPrecisionArguments: ParsableArguments, Sendable {
    public init() {}

    @Flag(name: .customLong("fp16"), help: "fp16 parameters with fp32 main parameters and dynamic loss scaling.")
    public var fp16 = false
    @Flag(name: .customLong("bf16"), help: "bfloat16 parameters with fp32 main parameters and fp32 gradients.")
    public var bf16 = false
    @Option(name: .customLong("loss-scale"),
            help: "A static loss scale, under --fp16, --bf16 or --use-distributed-optimizer (default, or 0: dynamic under --fp16, none otherwise).")
    public var lossScale: Float?
    @Option(name: .customLong("initial-loss-scale"), help: "Dynamic loss scaling: the scale to start from.")
    public var initialLossScale: Float = 4_294_967_296
    @Option(name: .customLong("min-loss-scale"), help: "Dynamic loss scaling: the scale never falls below this.")
    public var minLossScale: Float = 1
    @Option(name: .customLong("loss-scale-window"), help: "Dynamic loss scaling: overflow-free iterations before the scale doubles.")
    public var lossScaleWindow = 1000
    @Option(name: .customLong("hysteresis"), help: "Dynamic loss scaling: overflows tolerated before the scale halves.")
    public var hysteresis = 2
    /// Megatron's warning when dynamic loss scaling turns --check-for-nan-in-loss-and-grad off.
    public static let checkTurnedOffWarning = "WARNING: Setting args.check_for_nan_in_loss_and_grad to False since dynamic loss scaling is being used"

    @Flag(name: .customLong("accumulate-allreduce-grads-in-fp32"),
          help: "Under --fp16, keep and reduce gradients in fp32 (always so under --bf16).")
    public var accumulateAllreduceGradsInFP32 = false
    @Flag(name: .customLong("grad-reduce-in-bf16"), help: "Under --bf16, keep and reduce gradients in bf16 (default fp32).")
    public var gradReduceInBF16 = false

    @Flag(name: .customLong("use-precision-aware-optimizer"),
          help: "Adam's state in the precisions below; under --bf16 the fp32 main parameters kept as 16-bit remainders of the bf16 parameters.")
    public var usePrecisionAwareOptimizer = false
    @Option(name: .customLong("main-grads-dtype"), help: "Precision-aware optimizer: the gradients' precision (fp32, bf16).")
    public var mainGradsDType = PrecisionName.fp32
    @Option(name: .customLong("main-params-dtype"), help: "Precision-aware optimizer: the main parameters' precision (fp32).")
    public var mainParamsDType = PrecisionName.fp32
    @Option(name: .customLong("exp-avg-dtype"), help: "Precision-aware optimizer: Adam's first moment (fp32, fp16, bf16).")
    public var expAvgDType = PrecisionName.fp32
    @Option(name: .customLong("exp-avg-sq-dtype"), help: "Precision-aware optimizer: Adam's second moment (fp32, fp16, bf16).")
    public var expAvgSqDType = PrecisionName.fp32

    /// A precision as Megatron's flags spell it.
    public enum PrecisionName: String, ExpressibleByArgument, Sendable, CaseIterable {
        case fp32, fp16, bf16
        var dtype: DType { switch self { case .fp32: .float32; case .fp16: .float16; case .bf16: .bfloat16 } }
    }

    /// What the model's buffers store: the parameters in 16 bits under --fp16 / --bf16, the
    /// gradients in fp32 under --bf16 (unless --grad-reduce-in-bf16 or --main-grads-dtype bf16) and
    /// under --accumulate-allreduce-grads-in-fp32, else in the parameters' precision.
    public var storage: ParameterStorage {
        if fp16 { return ParameterStorage(parameters: .float16, gradients: accumulateAllreduceGradsInFP32 ? .float32 : .float16) }
        guard bf16 else { return .float32 }
        let bf16Gradients = gradReduceInBF16 || (usePrecisionAwareOptimizer && mainGradsDType == .bf16)
        return ParameterStorage(parameters: .bfloat16, gradients: bf16Gradients ? .bfloat16 : .float32)
    }

    /// Sets the precision and loss scaling of `settings` as Megatron's get_megatron_optimizer builds
    /// its grad scaler, or throws naming the flag that does not fit.
    public func apply(to settings: inout Optimizer.Settings, useDistributedOptimizer: Bool) throws {
        guard !(fp16 && bf16) else { throw ValidationError("--fp16 and --bf16 exclude each other: pick one") }
        guard !gradReduceInBF16 || bf16 else { throw ValidationError("--grad-reduce-in-bf16 needs --bf16") }
        guard !(accumulateAllreduceGradsInFP32 && (gradReduceInBF16 || mainGradsDType == .bf16)) else {
            throw ValidationError("--accumulate-allreduce-grads-in-fp32 keeps gradients in fp32: it excludes --grad-reduce-in-bf16 and --main-grads-dtype bf16")
        }
        if usePrecisionAwareOptimizer {
            guard settings.kind == .adam else { throw ValidationError("--use-precision-aware-optimizer: only with --optimizer adam") }
            guard mainParamsDType == .fp32 else {
                throw ValidationError("--main-params-dtype \(mainParamsDType.rawValue): only fp32 main parameters are supported (kept as remainders under --bf16)")
            }
            guard mainGradsDType == .fp32 || bf16 else { throw ValidationError("--main-grads-dtype bf16 needs --bf16") }
            settings.expAvgDType = expAvgDType.dtype
            settings.expAvgSqDType = expAvgSqDType.dtype
            settings.storeParamRemainders = bf16
        } else {
            for (flag, value) in [("--main-grads-dtype", mainGradsDType), ("--main-params-dtype", mainParamsDType),
                                  ("--exp-avg-dtype", expAvgDType), ("--exp-avg-sq-dtype", expAvgSqDType)] where value != .fp32 {
                throw ValidationError("\(flag) \(value.rawValue) needs --use-precision-aware-optimizer")
            }
        }
        settings.paramsDType = fp16 ? .float16 : bf16 ? .bfloat16 : .float32
        settings.gradBufferDType = storage.gradients
        // Megatron reads --loss-scale 0 as not given, and its fp32 optimizer ignores the flag.
        if let lossScale, lossScale != 0, fp16 || bf16 || useDistributedOptimizer {
            let scaler = GradScaler.constant(lossScale)
            try scaler.validate()
            settings.gradScaler = scaler
        } else if fp16 {
            let scaler = GradScaler.dynamic(initialScale: initialLossScale, minScale: minLossScale, window: lossScaleWindow,
                                            hysteresis: hysteresis)
            try scaler.validate()
            settings.gradScaler = scaler
        }
    }
}
