import CKernels

extension Tensor {
    /// A copy converted between fp32 and fp16/bf16: fp32 → 16-bit rounds to nearest, ties to even
    /// (NaN stays NaN, overflow becomes ±inf, fp16 subnormals are kept); 16-bit → fp32 is exact.
    public func converted(to target: DType, on device: CPUDevice) throws -> Tensor {
        let out = try Tensor(shape: shape, dtype: target, on: device, zeroed: false)
        try out.assign(converting: self, on: device)
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

extension Tensor {
    /// Sets this tensor to `source` (as many elements, fp32, fp16 or bf16) converted to its own dtype:
    /// loading 16-bit storage into fp32 (exact) or storing fp32 in 16 bits (round to nearest even).
    public func assign(converting source: Tensor, on device: CPUDevice) throws {
        guard source.count == count else {
            throw TensorError("assign(converting:): \(source.count) values into \(count)")
        }
        let (x, y) = (source, self)
        if source.dtype == dtype {
            rawPointer.copyMemory(from: source.rawPointer, byteCount: byteCount)
        } else if source.dtype == .float32 {
            let code = try dtype.roundingCode("assign(converting:)")
            device.parallelElements(count) { r in mg_f32_to_half(y.halfBits + r.lowerBound, x.floats + r.lowerBound, r.count, code) }
        } else if dtype == .float32 {
            let code = try source.dtype.roundingCode("assign(converting:)")
            device.parallelElements(count) { r in mg_half_to_f32(y.floats + r.lowerBound, x.halfBits + r.lowerBound, r.count, code) }
        } else {
            throw TensorError("assign(converting:): no conversion from \(source.dtype) to \(dtype)")
        }
    }

    /// Sets this tensor to the fp32 `values` (as many) converted to its dtype (fp32, fp16, bf16).
    public func assign(converting values: UnsafeBufferPointer<Float>, on device: CPUDevice) throws {
        guard values.count == count else { throw TensorError("assign(converting:): \(values.count) values into \(count)") }
        nonisolated(unsafe) let x = values.baseAddress!
        let y = self
        if dtype == .float32 {
            rawPointer.copyMemory(from: x, byteCount: byteCount)
            return
        }
        let code = try dtype.roundingCode("assign(converting:)")
        device.parallelElements(count) { r in mg_f32_to_half(y.halfBits + r.lowerBound, x + r.lowerBound, r.count, code) }
    }

    /// Adds the fp32 tensor `x` (as many elements) into this one: fp32, or 16-bit storage, each sum
    /// rounded back to 16 bits (a gradient kept in 16 bits accumulating an fp32 contribution).
    public func accumulate(_ x: Tensor, on device: CPUDevice) throws {
        try x.expect(dtype: .float32, "accumulate", "addend")
        guard x.count == count else { throw TensorError("accumulate: \(x.count) values into \(count)") }
        let y = self
        if dtype == .float32 {
            device.parallelElements(count) { r in mg_axpy(y.floats + r.lowerBound, x.floats + r.lowerBound, 1, r.count) }
            return
        }
        let code = try dtype.roundingCode("accumulate")
        device.parallelElements(count) { r in mg_accumulate_half(y.halfBits + r.lowerBound, x.floats + r.lowerBound, r.count, code) }
    }
}

extension DType {
    /// Copies `count` elements of `source` (of this dtype) into `target` (of `targetType`): bytes for
    /// the same dtype, else between fp32 and fp16/bf16 as `Tensor.assign(converting:)` converts; any
    /// other pair throws, naming `what` (a checkpoint tensor read into a run that keeps it otherwise).
    public func convert(_ count: Int, from source: UnsafeRawPointer, to target: UnsafeMutableRawPointer, as targetType: DType,
                        _ what: String) throws {
        if targetType == self { return target.copyMemory(from: source, byteCount: count * size) }
        if self == .float32, targetType == .float16 || targetType == .bfloat16 {
            mg_f32_to_half(target.assumingMemoryBound(to: UInt16.self), source.assumingMemoryBound(to: Float.self), count,
                           try targetType.roundingCode(what))
        } else if targetType == .float32, self == .float16 || self == .bfloat16 {
            mg_half_to_f32(target.assumingMemoryBound(to: Float.self), source.assumingMemoryBound(to: UInt16.self), count, try roundingCode(what))
        } else {
            throw TensorError("\(what): stored as \(self), which cannot be read as \(targetType)")
        }
    }
}

extension Tensor {
    /// Elements of a 16-bit tensor read in fp32 at once (`forEachFP32Block`): 16 MiB.
    public static let fp32BlockElements = 1 << 22

    /// Calls `body` with each run of this tensor's elements, `start ..< start + block.count`, converted
    /// to fp32 in `scratch` (as many elements at a time as it holds, so that a 16-bit buffer is never
    /// widened whole); with `writeBack`, each block as `body` left it is converted back.
    public func forEachFP32Block(scratch: Tensor, writeBack: Bool = false, on device: CPUDevice,
                                 _ body: (_ start: Int, _ block: Tensor) throws -> Void) throws {
        guard scratch.count > 0 else { throw TensorError("forEachFP32Block: an empty scratch block") }
        for start in stride(from: 0, to: count, by: scratch.count) {
            let n = Swift.min(scratch.count, count - start)
            let stored = try view(offset: start, shape: [n]), block = try scratch.view(offset: 0, shape: [n])
            try block.assign(converting: stored, on: device)
            try body(start, block)
            if writeBack { try stored.assign(converting: block, on: device) }
        }
    }
}
