import CKernels

/// Layer normalisation over the last dimension (Ba et al., 2016), as Megatron's fused LayerNorm:
/// y = (x − μ)·ρ·γ + β with μ the row mean, σ² the biased row variance and ρ = 1/√(σ² + ε).
public enum LayerNorm {
    /// Per-row statistics the backward needs: μ and ρ, each [rows].
    public struct Saved: Sendable {
        public let mean: Tensor
        public let rstd: Tensor
    }

    /// x [..., h], γ [h], β [h] or nil → y [..., h].
    public static func forward(_ input: Tensor, weight: Tensor, bias: Tensor?, epsilon: Float,
                               on device: CPUDevice) throws -> (output: Tensor, saved: Saved) {
        let (rows, cols) = try validate(input, weight: weight, bias: bias)
        let y = try Tensor(shape: input.shape, on: device, zeroed: false)
        let mean = try Tensor(shape: [rows], on: device, zeroed: false)
        let rstd = try Tensor(shape: [rows], on: device, zeroed: false)
        device.parallelRows(rows, columns: cols) { r, _ in
            let o = r.lowerBound
            mg_layernorm_forward(y.floats + o * cols, mean.floats + o, rstd.floats + o, input.floats + o * cols,
                                 weight.floats, bias?.floats, r.count, cols, epsilon)
        }
        return (y, Saved(mean: mean, rstd: rstd))
    }

    /// Given dy, returns dx = ρ·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ, x̂ = (x − μ)·ρ, added into
    /// `accumulatingInto` when given (the residual stream's other gradient) and returned; adds
    /// Σ_rows dy·x̂ into `gradWeight` and Σ_rows dy into `gradBias`.
    public static func backward(_ gradOutput: Tensor, input: Tensor, weight: Tensor, saved: Saved,
                                gradWeight: Tensor, gradBias: Tensor?, accumulatingInto gradInput: Tensor? = nil,
                                on device: CPUDevice) throws -> Tensor {
        let (rows, cols) = try validate(input, weight: weight, bias: nil)
        try gradOutput.expect(shape: input.shape, "LayerNorm.backward", "gradOutput")
        try gradWeight.expect(shape: [cols], "LayerNorm.backward", "gradWeight")
        try gradBias?.expect(shape: [cols], "LayerNorm.backward", "gradBias")
        try saved.rstd.expect(shape: [rows], "LayerNorm.backward", "saved rstd")
        try gradInput?.expect(shape: input.shape, "LayerNorm.backward", "gradInput")
        let dx = try gradInput ?? Tensor(shape: input.shape, on: device, zeroed: false)
        let accumulate: Int32 = gradInput == nil ? 0 : 1
        try device.parallelRowsAccumulating(rows, columns: cols, into: [gradWeight, gradBias]) { r, grads in
            let o = r.lowerBound
            mg_layernorm_backward(dx.floats + o * cols, grads[0], grads[1], gradOutput.floats + o * cols,
                                  input.floats + o * cols, weight.floats, saved.mean.floats + o,
                                  saved.rstd.floats + o, r.count, cols, accumulate)
        }
        return dx
    }

    private static func validate(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> (Int, Int) {
        try x.expect(dtype: .float32, "LayerNorm", "input")
        try weight.expect(shape: [x.columns], "LayerNorm", "weight")
        try bias?.expect(shape: [x.columns], "LayerNorm", "bias")
        return (x.rows, x.columns)
    }
}
