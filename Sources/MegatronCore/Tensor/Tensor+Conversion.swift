import CKernels

extension Tensor {
    /// A copy converted between fp32 and fp16/bf16: fp32 → 16-bit rounds to nearest, ties to even
    /// (NaN stays NaN, overflow becomes ±inf, fp16 subnormals are kept); 16-bit → fp32 is exact.
    public func converted(to target: DType, on device: CPUDevice) throws -> Tensor {
        let out = try Tensor(shape: shape, dtype: target, on: device, zeroed: false)
        let source = self
        switch (dtype, target) {
        case (.float32, .float16):
            device.parallelElements(count) { r in mg_f32_to_f16(out.halfBits + r.lowerBound, source.floats + r.lowerBound, r.count) }
        case (.float32, .bfloat16):
            device.parallelElements(count) { r in mg_f32_to_bf16(out.halfBits + r.lowerBound, source.floats + r.lowerBound, r.count) }
        case (.float16, .float32):
            device.parallelElements(count) { r in mg_f16_to_f32(out.floats + r.lowerBound, source.halfBits + r.lowerBound, r.count) }
        case (.bfloat16, .float32):
            device.parallelElements(count) { r in mg_bf16_to_f32(out.floats + r.lowerBound, source.halfBits + r.lowerBound, r.count) }
        case _ where dtype == target:
            try out.copy(from: self)
        default:
            throw TensorError("convert: no conversion from \(dtype) to \(target)")
        }
        return out
    }
}

extension Tensor {
    /// This tensor in `precision`: itself when it already is, else a converted copy.
    public func stored(as precision: DType, on device: CPUDevice) throws -> Tensor {
        dtype == precision ? self : try converted(to: precision, on: device)
    }
}

extension Tensor {
    /// Sets this fp32 tensor to `source` (default: itself) rounded to the nearest value of `precision`
    /// (fp16 or bf16; fp32 copies), as converting to it and back would: what a 16-bit copy holds, kept
    /// in fp32 so that the fp32 kernels compute on it. fp16 overflow becomes ±inf.
    public func round(to precision: DType, from source: Tensor? = nil, on device: CPUDevice) throws {
        let source = source ?? self
        try expect(dtype: .float32, "round(to:)", "tensor")
        try source.expect(shape: shape, "round(to:)", "source")
        let code = try precision.roundingCode("round(to:)"), (x, y) = (source, self)
        if code == Int32(MG_PRECISION_F32) && x.rawPointer == y.rawPointer { return }
        device.parallelElements(count) { r in mg_round(y.floats + r.lowerBound, x.floats + r.lowerBound, r.count, code) }
    }
}

extension DType {
    /// The C kernels' code for rounding fp32 values to this precision (mg_round, mg_unscale_gradients).
    func roundingCode(_ operation: String) throws -> Int32 {
        switch self {
        case .float32: Int32(MG_PRECISION_F32)
        case .float16: Int32(MG_PRECISION_F16)
        case .bfloat16: Int32(MG_PRECISION_BF16)
        default: throw TensorError("\(operation): \(self) is not a floating-point precision")
        }
    }
}
