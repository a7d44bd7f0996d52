import CKernels

/// Root-mean-square normalisation over the last dimension (Zhang & Sennrich, 2019):
/// y = x·ρ·γ with ρ = 1/√(mean(x²) + ε).
public enum RMSNorm {
    /// x [..., h], γ [h] → y [..., h] and ρ [rows].
    public static func forward(_ input: Tensor, weight: Tensor, epsilon: Float,
                               on device: CPUDevice) throws -> (output: Tensor, rstd: Tensor) {
        try input.expect(dtype: .float32, "RMSNorm", "input")
        try weight.expect(shape: [input.columns], "RMSNorm", "weight")
        let rows = input.rows, cols = input.columns
        let y = try Tensor(shape: input.shape, on: device, zeroed: false)
        let rstd = try Tensor(shape: [rows], on: device, zeroed: false)
        device.parallelRows(rows, columns: cols) { r, _ in
            let o = r.lowerBound
            mg_rmsnorm_forward(y.floats + o * cols, rstd.floats + o, input.floats + o * cols, weight.floats,
                               r.count, cols, epsilon)
        }
        return (y, rstd)
    }

    /// dx = ρ·(g − x̂·mean(g·x̂)) with g = dy·γ, x̂ = x·ρ, added into `accumulatingInto` when given;
    /// adds Σ_rows dy·x̂ into `gradWeight`.
    public static func backward(_ gradOutput: Tensor, input: Tensor, weight: Tensor, rstd: Tensor,
                                gradWeight: Tensor, accumulatingInto gradInput: Tensor? = nil,
                                on device: CPUDevice) throws -> Tensor {
        let rows = input.rows, cols = input.columns
        try input.expect(dtype: .float32, "RMSNorm.backward", "input")
        try weight.expect(shape: [cols], "RMSNorm.backward", "weight")
        try gradOutput.expect(shape: input.shape, "RMSNorm.backward", "gradOutput")
        try gradWeight.expect(shape: [cols], "RMSNorm.backward", "gradWeight")
        try rstd.expect(shape: [rows], "RMSNorm.backward", "rstd")
        try gradInput?.expect(shape: input.shape, "RMSNorm.backward", "gradInput")
        let dx = try gradInput ?? Tensor(shape: input.shape, on: device, zeroed: false)
        let accumulate: Int32 = gradInput == nil ? 0 : 1
        try device.parallelRowsAccumulating(rows, columns: cols, into: [gradWeight]) { r, grads in
            let o = r.lowerBound
            mg_rmsnorm_backward(dx.floats + o * cols, grads[0], gradOutput.floats + o * cols, input.floats + o * cols,
                                weight.floats, rstd.floats + o, r.count, cols, accumulate)
        }
        return dx
    }
}
