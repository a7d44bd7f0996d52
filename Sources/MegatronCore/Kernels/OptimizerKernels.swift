import CKernels

#if canImport(Glibc)
import Glibc
#endif

/// The AdamW update over flat fp32 buffers (Loshchilov & Hutter, 2019), as Megatron's fused Adam with
/// decoupled weight decay.
public enum AdamW {
    public struct Hyperparameters: Sendable, Equatable {
        public var learningRate: Float
        public var beta1: Float = 0.9
        public var beta2: Float = 0.999
        public var epsilon: Float = 1e-8
        public var weightDecay: Float = 0.01

        public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                    weightDecay: Float = 0.01) {
            self.learningRate = learningRate
            self.beta1 = beta1
            self.beta2 = beta2
            self.epsilon = epsilon
            self.weightDecay = weightDecay
        }
    }

    /// One update at `step` (1-based, for the bias corrections) of `param` from `grad`·`gradScale`
    /// (the inverse loss scale under fp16), updating the moments `expAvg` and `expAvgSq`.
    public static func update(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, step: Int,
                              _ h: Hyperparameters, gradScale: Float = 1, on device: CPUDevice) throws {
        try param.expect(dtype: .float32, "AdamW", "param")
        for (name, t) in [("grad", grad), ("exp_avg", expAvg), ("exp_avg_sq", expAvgSq)] {
            try t.expect(shape: param.shape, "AdamW", name)
        }
        guard step >= 1 else { throw TensorError("AdamW: step \(step) must be at least 1") }
        let bc1 = Float(1 - pow(Double(h.beta1), Double(step)))
        let bc2 = Float(1 - pow(Double(h.beta2), Double(step)))
        device.parallelElements(param.count) { r in
            let o = r.lowerBound
            mg_adamw(param.floats + o, grad.floats + o, expAvg.floats + o, expAvgSq.floats + o, r.count,
                     h.learningRate, h.beta1, h.beta2, h.epsilon, h.weightDecay, bc1, bc2, gradScale)
        }
    }
}

/// SGD with momentum and L2 weight decay, as torch.optim.SGD (Megatron's `--optimizer sgd`).
public enum SGD {
    /// p ← p − lr·buf, buf ← momentum·buf + (gradScale·g + wd·p) (buf = that gradient on the first step).
    /// `momentumBuffer` nil means plain SGD.
    public static func update(param: Tensor, grad: Tensor, momentumBuffer: Tensor?, firstStep: Bool,
                              learningRate: Float, momentum: Float, weightDecay: Float, gradScale: Float = 1,
                              on device: CPUDevice) throws {
        try param.expect(dtype: .float32, "SGD", "param")
        try grad.expect(shape: param.shape, "SGD", "grad")
        try momentumBuffer?.expect(shape: param.shape, "SGD", "momentum buffer")
        device.parallelElements(param.count) { r in
            let o = r.lowerBound
            mg_sgd(param.floats + o, grad.floats + o, momentumBuffer.map { $0.floats + o }, r.count, learningRate,
                   momentum, weightDecay, gradScale, firstStep ? 1 : 0)
        }
    }
}

/// The loss scaler's pass over the gradients (Megatron's _unscale_main_grads_and_check_for_nan).
public enum LossScaling {
    /// Rounds `grads` to `precision` (fp32, fp16 or bf16: what a gradient buffer of that type holds),
    /// multiplies them by `inverseScale`, and returns whether a rounded value was an inf or NaN. One pass.
    public static func unscale(_ grads: Tensor, by inverseScale: Float, roundingTo precision: DType, on device: CPUDevice) throws -> Bool {
        try grads.expect(dtype: .float32, "LossScaling.unscale", "grads")
        let mode = try precision.roundingCode("LossScaling.unscale")
        let flags = TaskSlots(count: device.threads, value: Int32(0))
        defer { flags.deallocate() }
        device.parallelFor(grads.count, minimumPerTask: CPUDevice.minimumElementsPerTask) { r, task in
            flags[task] = mg_unscale_gradients(grads.floats + r.lowerBound, r.count, inverseScale, mode)
        }
        return (0 ..< device.threads).contains { flags[$0] != 0 }
    }
}

/// fp32 main parameters kept as bf16 parameters plus the 16 bits they lack (Transformer Engine's
/// store_param_remainders under Megatron's precision-aware optimizer): main = the bf16 value's bits
/// shifted up by 16 plus the signed remainder, exactly. Splitting rounds to the nearest bf16 value,
/// ties away from zero, so that the remainder fits in 16 signed bits.
public enum ParamRemainders {
    /// main [n] fp32 ← params [n] bf16 and remainders [n] (uint16 tensor holding int16 values).
    public static func join(_ params: Tensor, remainders: Tensor, into main: Tensor, on device: CPUDevice) throws {
        try check(params, remainders, main, "join")
        device.parallelElements(main.count) { r in
            let o = r.lowerBound
            mg_join_remainders(main.floats + o, params.halfBits + o,
                               UnsafeRawPointer(remainders.halfBits + o).assumingMemoryBound(to: Int16.self), r.count)
        }
    }

    /// params [n] bf16 and remainders [n] ← main [n] fp32.
    public static func split(_ main: Tensor, into params: Tensor, remainders: Tensor, on device: CPUDevice) throws {
        try check(params, remainders, main, "split")
        device.parallelElements(main.count) { r in
            let o = r.lowerBound
            mg_split_remainders(params.halfBits + o, UnsafeMutableRawPointer(remainders.halfBits + o).assumingMemoryBound(to: Int16.self),
                                main.floats + o, r.count)
        }
    }

    private static func check(_ params: Tensor, _ remainders: Tensor, _ main: Tensor, _ operation: String) throws {
        try params.expect(dtype: .bfloat16, "ParamRemainders.\(operation)", "params")
        try remainders.expect(dtype: .uint16, "ParamRemainders.\(operation)", "remainders")
        try main.expect(dtype: .float32, "ParamRemainders.\(operation)", "main")
        guard params.count == main.count, remainders.count == main.count else {
            throw TensorError("ParamRemainders.\(operation): \(params.count) params, \(remainders.count) remainders, \(main.count) main values")
        }
    }
}
