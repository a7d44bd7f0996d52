/// The memory behind one or more tensors: a block of the device's caching allocator, given back
/// when the last tensor viewing it goes away.
final class TensorStorage: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    private let capacity: Int
    private let allocator: CachingAllocator

    init(byteCount: Int, allocator: CachingAllocator) throws(OutOfMemoryError) {
        let block = try allocator.allocate(bytes: byteCount)
        self.base = block.pointer
        self.capacity = block.capacity
        self.byteCount = byteCount
        self.allocator = allocator
    }

    deinit {
        allocator.deallocate(base, capacity: capacity)
    }
}
