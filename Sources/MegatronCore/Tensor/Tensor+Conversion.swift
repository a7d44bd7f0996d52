import CKernels

extension Tensor {
    /// A copy converted between fp32 and fp16/bf16: fp32 → 16-bit rounds to nearest, ties to even
    /// (NaN stays NaN, overflow becomes ±inf, fp16 subnormals are kept); 16-bit → fp32 is exact.
    public func converted(to target: DType, on device: CPUDevice) throws -> Tensor {
        let out = Tensor(shape: shape, dtype: target, on: device, zeroed: false)
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
