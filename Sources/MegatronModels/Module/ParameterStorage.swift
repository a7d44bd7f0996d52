import MegatronCore

/// The precisions a model's flat buffers keep its parameters and gradients in. fp32 and fp32, or
/// under --bf16 / --fp16 the parameters in that format (Megatron's Float16Module: half the bytes;
/// the modules compute in fp32 through `ParameterWindow`s) and the gradients in fp32 (Megatron's
/// --accumulate-allreduce-grads-in-fp32, its bf16 default) or in the parameters' format (its fp16
/// default, --grad-reduce-in-bf16, --main-grads-dtype bf16).
public struct ParameterStorage: Sendable, Equatable, CustomStringConvertible {
    public var parameters: DType
    public var gradients: DType

    public init(parameters: DType = .float32, gradients: DType = .float32) {
        self.parameters = parameters
        self.gradients = gradients
    }

    public static let float32 = ParameterStorage()

    /// Whether the parameters are stored narrower than the fp32 the kernels compute in.
    public var isSixteenBit: Bool { parameters != .float32 }

    /// Throws unless the pair is one Megatron trains with.
    func validate() throws {
        guard [.float32, .bfloat16, .float16].contains(parameters) else {
            throw TensorError("parameter storage: \(parameters) is not a floating-point format")
        }
        guard gradients == .float32 || gradients == parameters else {
            throw TensorError("parameter storage: \(parameters) parameters keep their gradients in fp32 or \(parameters), not \(gradients)")
        }
    }

    public var description: String {
        parameters == gradients ? "\(parameters) parameters and gradients" : "\(parameters) parameters, \(gradients) gradients"
    }
}
