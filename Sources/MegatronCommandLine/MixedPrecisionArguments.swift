import ArgumentParser
import MegatronCore
import MegatronTraining

/// Megatron's mixed-precision flags (see `Optimizer` and `GradScaler`). On this CPU backend the
/// model's parameters take the 16-bit values (in fp32 buffers) and the optimizer keeps fp32 main
/// parameters; the kernels compute in fp32.
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

    /// Sets the precision and loss scaling of `settings` as Megatron's get_megatron_optimizer builds
    /// its grad scaler, or throws naming the flag that does not fit.
    public func apply(to settings: inout Optimizer.Settings, useDistributedOptimizer: Bool) throws {
        guard !(fp16 && bf16) else { throw ValidationError("--fp16 and --bf16 exclude each other: pick one") }
        settings.paramsDType = fp16 ? .float16 : bf16 ? .bfloat16 : .float32
        // Megatron keeps bf16 gradients in fp32 whatever the flag says.
        settings.gradBufferDType = fp16 && !accumulateAllreduceGradsInFP32 ? .float16 : .float32
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
