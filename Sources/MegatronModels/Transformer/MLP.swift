import MegatronCore

/// Megatron's MLP over this tensor-parallel rank's ffn/t features: fc1 (column-parallel), GELU or
/// SwiGLU, fc2 (row-parallel). With x the normalised input:
///
///     fc1        = linear_fc1(x)                 [T, f/t]; with SwiGLU [T, 2f/t], this rank's gates and values
///     activation = gelu(fc1 + b1) | silu(gate)·value   [T, f/t]
///     output     = linear_fc2(activation)        [T, h] summed over the group, without linear_fc2's bias
///                                                (the layer's bias-dropout-add adds it)
///
/// GELU takes fc1's bias in its fused kernel (Megatron's bias-GELU): fc1 skips it then.
struct MLP {
    let linearFC1: ColumnParallelLinear
    let linearFC2: RowParallelLinear
    let swiglu: Bool
    let geluApproximation: GELU.Approximation
    let device: CPUDevice

    /// What the backward needs besides the input.
    struct Activations {
        let fc1: Tensor         // [T, f/t], or [T, 2f/t] with SwiGLU
        let activation: Tensor  // [T, f/t]
    }

    /// The output [rows, h] from the normalised input x [T, h] (every row: `linearFC1.gatherInput`'s).
    func forward(_ x: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: Activations) {
        let a = try activations(x)
        return (try linearFC2.forward(a.activation, rows: pass.rows), a)
    }

    /// fc1 and its activation (run again by selective recomputation).
    func activations(_ x: Tensor) throws -> Activations {
        let fc1 = try linearFC1.forward(x)
        let activation = swiglu ? try SwiGLU.forward(fc1, on: device)
            : try GELU.forward(fc1, bias: linearFC1.bias?.value, approximation: geluApproximation, on: device)
        return Activations(fc1: fc1, activation: activation)
    }

    /// ∂x [rows, h] (summed over the group) from ∂output of this rank's rows; accumulates fc1's and
    /// fc2's weight gradients and fc1's bias gradient.
    func backward(_ dOutput: Tensor, input x: Tensor, activations a: Activations, pass: LayerPass) throws -> Tensor {
        let dActivation = try linearFC2.backward(dOutput, input: a.activation, rows: pass.rows)
        let dFC1 = swiglu ? try SwiGLU.backward(dActivation, input: a.fc1, on: device)
            : try GELU.backward(dActivation, input: a.fc1, bias: linearFC1.bias?.value, gradBias: linearFC1.bias?.gradient,
                                approximation: geluApproximation, on: device)
        return try linearFC1.backward(dFC1, input: x, rows: pass.rows)
    }
}
