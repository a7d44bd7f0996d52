import CKernels

/// GELU fused with the preceding bias add: y = gelu(x + b), with Megatron's tanh approximation
/// (its fused `bias_gelu`), gelu(u) = ½·u·(1 + tanh(√(2/π)·(u + 0.044715·u³))), or exact, as
/// PyTorch's F.gelu, gelu(u) = ½·u·(1 + erf(u/√2)), which Megatron's MLP uses when the fusion is off
/// (no biases, or --no-bias-gelu-fusion).
public enum GELU {
    public enum Approximation: Sendable { case tanh, none }

    /// x [..., f], b [f] or nil → y [..., f].
    public static func forward(_ input: Tensor, bias: Tensor?, approximation: Approximation = .tanh,
                               on device: CPUDevice) throws -> Tensor {
        try input.expect(dtype: .float32, "GELU", "input")
        try bias?.expect(shape: [input.columns], "GELU", "bias")
        let y = try Tensor(shape: input.shape, on: device, zeroed: false)
        let cols = input.columns
        device.parallelRows(input.rows, columns: cols) { r, _ in
            let o = r.lowerBound * cols
            mg_gelu_forward(y.floats + o, input.floats + o, bias?.floats, r.count, cols, approximation == .none ? 1 : 0)
        }
        return y
    }

    /// dx = dy·gelu′(x + b); adds Σ_rows dx into `gradBias` when given.
    public static func backward(_ gradOutput: Tensor, input: Tensor, bias: Tensor?, gradBias: Tensor?,
                                approximation: Approximation = .tanh, on device: CPUDevice) throws -> Tensor {
        try input.expect(dtype: .float32, "GELU.backward", "input")
        try gradOutput.expect(shape: input.shape, "GELU.backward", "gradOutput")
        try bias?.expect(shape: [input.columns], "GELU.backward", "bias")
        try gradBias?.expect(shape: [input.columns], "GELU.backward", "gradBias")
        let dx = try Tensor(shape: input.shape, on: device, zeroed: false)
        let cols = input.columns
        try device.parallelRowsAccumulating(input.rows, columns: cols, into: [gradBias]) { r, grads in
            let o = r.lowerBound * cols
            mg_gelu_backward(dx.floats + o, grads[0], gradOutput.floats + o, input.floats + o, bias?.floats, r.count, cols,
                             approximation == .none ? 1 : 0)
        }
        return dx
    }
}
