import CKernels

/// SwiGLU (Shazeer, 2020), Megatron's `--swiglu`: the fc1 output [..., 2f] is split into halves
/// [x1 | x2] and y = silu(x1)·x2 with silu(u) = u·σ(u).
public enum SwiGLU {
    /// x [..., 2f] → y [..., f].
    public static func forward(_ input: Tensor, on device: CPUDevice) throws -> Tensor {
        let f = try halfWidth(input)
        let y = try Tensor(shape: input.shape.dropLast() + [f], on: device, zeroed: false)
        device.parallelRows(input.rows, columns: 2 * f) { r, _ in
            mg_swiglu_forward(y.floats + r.lowerBound * f, input.floats + r.lowerBound * 2 * f, r.count, f)
        }
        return y
    }

    /// dx [..., 2f] = [dy·x2·silu′(x1) | dy·silu(x1)].
    public static func backward(_ gradOutput: Tensor, input: Tensor, on device: CPUDevice) throws -> Tensor {
        let f = try halfWidth(input)
        try gradOutput.expect(shape: input.shape.dropLast() + [f], "SwiGLU.backward", "gradOutput")
        let dx = try Tensor(shape: input.shape, on: device, zeroed: false)
        device.parallelRows(input.rows, columns: 2 * f) { r, _ in
            mg_swiglu_backward(dx.floats + r.lowerBound * 2 * f, gradOutput.floats + r.lowerBound * f,
                               input.floats + r.lowerBound * 2 * f, r.count, f)
        }
        return dx
    }

    private static func halfWidth(_ x: Tensor) throws -> Int {
        try x.expect(dtype: .float32, "SwiGLU", "input")
        guard x.columns % 2 == 0 else {
            throw TensorError("SwiGLU: input \(x.shape) must have an even last dimension [x1 | x2]")
        }
        return x.columns / 2
    }
}
