import MegatronCore

/// Megatron's BertLMHead, between the encoder's output and the output layer: a dense layer
/// (replicated), the exact (erf) GELU, and a norm, on the rows this rank holds:
///
///     y = norm(gelu(x·Wᵀ + b))    x, y [rows, h]
struct BertLMHead {
    let dense: (weight: Parameter, bias: Parameter)
    let layerNorm: Norm
    let device: CPUDevice

    /// What the backward needs.
    struct Saved {
        let input: Tensor       // x
        let dense: Tensor       // x·Wᵀ, before the bias (GELU adds it)
        let activation: Tensor  // gelu(x·Wᵀ + b), the norm's input
        let norm: Norm.Saved
    }

    func forward(_ x: Tensor) throws -> (Tensor, Saved) {
        let projected = try Linear.forward(x, weight: dense.weight.value, bias: nil, on: device)
        let activation = try GELU.forward(projected, bias: dense.bias.value, approximation: .none, on: device)
        let (y, norm) = try layerNorm.forward(activation)
        return (y, Saved(input: x, dense: projected, activation: activation, norm: norm))
    }

    /// ∂x from ∂y; accumulates the dense layer's and the norm's gradients.
    func backward(_ dy: Tensor, saved s: Saved) throws -> Tensor {
        let dActivation = try layerNorm.backward(dy, input: s.activation, saved: s.norm)
        let dProjected = try GELU.backward(dActivation, input: s.dense, bias: dense.bias.value, gradBias: dense.bias.gradient,
                                           approximation: .none, on: device)
        return try Linear.backward(dProjected, input: s.input, weight: dense.weight, gradBias: nil, on: device)
    }
}
