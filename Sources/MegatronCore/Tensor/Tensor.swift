/// A contiguous, row-major, n-dimensional array of one `DType`.
///
/// A `Tensor` is a view: copying the value shares the memory (a `TensorStorage` block from the
/// device's caching allocator), as slices of a flat parameter buffer must. Writes go through the
/// pointer accessors; whoever holds a tensor decides who may write it, as in any kernel library.
/// Transposes are never materialised: GEMM takes them as flags.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let dtype: DType
    let storage: TensorStorage
    let byteOffset: Int

    /// A new tensor of `shape` on `device`, zero-filled unless `zeroed` is false; an
    /// `OutOfMemoryError` past the device's memory limit.
    public init(shape: [Int], dtype: DType = .float32, on device: CPUDevice, zeroed: Bool = true) throws(OutOfMemoryError) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in \(shape)")
        self.shape = shape
        self.dtype = dtype
        let bytes = shape.reduce(1, *) * dtype.size
        self.storage = try TensorStorage(byteCount: bytes, allocator: device.allocator)
        self.byteOffset = 0
        if zeroed { storage.base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
    }

    /// An fp32 tensor holding `values`.
    public init(_ values: [Float], shape: [Int], on device: CPUDevice) throws {
        try self.init(copying: values, shape: shape, dtype: .float32, on: device)
    }

    /// An int32 tensor holding `values`.
    public init(int32s values: [Int32], shape: [Int], on device: CPUDevice) throws {
        try self.init(copying: values, shape: shape, dtype: .int32, on: device)
    }

    private init<T>(copying values: [T], shape: [Int], dtype: DType, on device: CPUDevice) throws {
        guard shape.reduce(1, *) == values.count else {
            throw TensorError("Tensor: \(values.count) values do not fill shape \(shape)")
        }
        try self.init(shape: shape, dtype: dtype, on: device, zeroed: false)
        values.withUnsafeBytes { rawPointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    private init(viewing storage: TensorStorage, byteOffset: Int, shape: [Int], dtype: DType) {
        self.storage = storage
        self.byteOffset = byteOffset
        self.shape = shape
        self.dtype = dtype
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var byteCount: Int { count * dtype.size }

    /// The size of the last dimension (1 for a scalar).
    public var columns: Int { shape.last ?? 1 }
    /// Elements divided by the last dimension: the token count of a [tokens, hidden] activation.
    public var rows: Int { columns == 0 ? 0 : count / columns }

    public var rawPointer: UnsafeMutableRawPointer { storage.base + byteOffset }

    /// The elements as fp32; the tensor must be `.float32`.
    public var floats: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "Tensor.floats on a \(dtype) tensor")
        return rawPointer.assumingMemoryBound(to: Float.self)
    }

    /// The elements as int32; the tensor must be `.int32`.
    public var int32s: UnsafeMutablePointer<Int32> {
        precondition(dtype == .int32, "Tensor.int32s on a \(dtype) tensor")
        return rawPointer.assumingMemoryBound(to: Int32.self)
    }

    /// The raw 16-bit patterns of an fp16, bf16 or uint16 tensor.
    public var halfBits: UnsafeMutablePointer<UInt16> {
        precondition(dtype.size == 2, "Tensor.halfBits on a \(dtype) tensor")
        return rawPointer.assumingMemoryBound(to: UInt16.self)
    }

    /// The same memory under another shape with as many elements.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        guard newShape.reduce(1, *) == count, newShape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError("reshape: cannot view shape \(shape) (\(count) elements) as \(newShape)")
        }
        return Tensor(viewing: storage, byteOffset: byteOffset, shape: newShape, dtype: dtype)
    }

    /// Rows `range` of the first dimension, sharing memory.
    public func slice(_ range: Range<Int>) throws -> Tensor {
        guard let first = shape.first, range.lowerBound >= 0, range.upperBound <= first else {
            throw TensorError("slice: rows \(range) out of bounds for shape \(shape)")
        }
        let rowElements = shape.dropFirst().reduce(1, *)
        return Tensor(viewing: storage, byteOffset: byteOffset + range.lowerBound * rowElements * dtype.size,
                      shape: [range.count] + shape.dropFirst(), dtype: dtype)
    }

    /// `count` elements from flat element `offset`, as `shape` (a view into a flat buffer).
    public func view(offset: Int, shape newShape: [Int]) throws -> Tensor {
        let n = newShape.reduce(1, *)
        guard offset >= 0, offset + n <= count, newShape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError("view: \(newShape) at element \(offset) exceeds the \(count) elements of \(shape)")
        }
        return Tensor(viewing: storage, byteOffset: byteOffset + offset * dtype.size, shape: newShape, dtype: dtype)
    }

    /// The fp32 elements copied into an array.
    public func toFloatArray() -> [Float] {
        Array(UnsafeBufferPointer(start: floats, count: count))
    }

    /// The int32 elements copied into an array.
    public func toInt32Array() -> [Int32] {
        Array(UnsafeBufferPointer(start: int32s, count: count))
    }

    /// Sets every byte to zero.
    public func zero() {
        rawPointer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
    }

    /// Copies `source`'s bytes; shapes must have the same element count and dtype.
    public func copy(from source: Tensor) throws {
        guard source.count == count, source.dtype == dtype else {
            throw TensorError("copy: source \(source.dtype) \(source.shape) into \(dtype) \(shape)")
        }
        rawPointer.copyMemory(from: source.rawPointer, byteCount: byteCount)
    }

    public var description: String { "Tensor(\(dtype), \(shape))" }

    /// Throws unless the shape is `expected`; `name` says which argument this is in `operation`.
    public func expect(shape expected: [Int], _ operation: String, _ name: String) throws {
        guard shape == expected else { throw TensorError.shape(operation, name, shape, expected: expected) }
    }

    /// Throws unless the dtype is `expected`.
    public func expect(dtype expected: DType, _ operation: String, _ name: String) throws {
        guard dtype == expected else { throw TensorError.dtype(operation, name, dtype, expected: expected) }
    }
}
