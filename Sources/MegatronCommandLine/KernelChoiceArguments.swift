import ArgumentParser

/// Megatron's switches between CUDA implementations of the same computation (Transformer Engine or
/// local layers, fused or unfused kernels, flash attention). This backend has one CPU implementation
/// of each, which computes what they all compute: attention flash-style in fp32 (never storing the
/// s × s scores), the bias-dropout-add, RoPE and SwiGLU steps fused, weight gradients accumulated in
/// place. Launch scripts keep them; they are checked and change nothing. (--no-bias-gelu-fusion, which
/// changes the math, is a model flag.)
public struct KernelChoiceArguments: ParsableArguments, Sendable {
    public init() {}

    public enum AttentionBackend: String, ExpressibleByArgument, CaseIterable, Sendable { case flash, fused, unfused, local, auto }
    public enum TransformerImplementation: String, ExpressibleByArgument, CaseIterable, Sendable {
        case local, transformerEngine = "transformer_engine", inferenceOptimized = "inference_optimized"
    }

    @Option(name: .customLong("attention-backend"), help: "flash, fused, unfused, local or auto: one attention kernel here.")
    public var attentionBackend = AttentionBackend.auto
    @Option(name: .customLong("transformer-impl"), help: "local, transformer_engine or inference_optimized: one implementation here.")
    public var transformerImpl = TransformerImplementation.transformerEngine
    @Flag(name: .customLong("use-mcore-models"), help: "Megatron-core models (the only kind here).") public var useMcoreModels = false
    @Flag(name: .customLong("use-flash-attn"), help: "Flash attention (what the attention kernel does).") public var useFlashAttn = false
    @Flag(name: .customLong("attention-softmax-in-fp32"), help: "Softmax in fp32 (as every computation here).")
    public var attentionSoftmaxInFP32 = false
    @Flag(name: .customLong("no-masked-softmax-fusion")) public var noMaskedSoftmaxFusion = false
    @Flag(name: .customLong("no-bias-swiglu-fusion")) public var noBiasSwiGLUFusion = false
    @Flag(name: .customLong("no-bias-dropout-fusion")) public var noBiasDropoutFusion = false
    @Flag(name: .customLong("no-rope-fusion")) public var noRopeFusion = false
    @Flag(name: .customLong("no-gradient-accumulation-fusion")) public var noGradientAccumulationFusion = false
}
