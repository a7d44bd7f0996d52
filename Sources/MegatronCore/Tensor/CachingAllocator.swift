import CKernels
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Hands out 64-byte-aligned blocks and keeps freed ones for reuse.
///
/// A training step allocates and frees the same activation sizes every iteration. glibc would return
/// large freed blocks to the operating system and fault them back in, page by page, on the next step;
/// keeping them here turns every step after the first into pure reuse. Requests are rounded up to a
/// size class (multiples of 64 bytes up to 4 KiB, then four classes per power of two, so at most 25%
/// is wasted) and a freed block waits in its class's free list.
///
/// Blocks of 2 MiB and more start on a 2 MiB boundary and are offered to the kernel for transparent
/// huge pages (`madvise(MADV_HUGEPAGE)`; Linux's default THP mode honours only such requests). With
/// 4 KiB pages every streaming kernel crossed a page, and its TLB entry, each 1024 floats: a C
/// harness on the 2-core VM, 96 MiB buffers, alternating 20 times, measured memcpy on two threads
/// at 22.7–24.9 GB/s with 4 KiB pages and 28.4–30.7 GB/s with huge pages, an add-and-scale kernel
/// at 20.7–22.9 and 28.1–30.0 GB/s. GEMMs (which pack their operands) did not change.
public final class CachingAllocator: Sendable {
    /// Counters since creation (or the last `resetStatistics`).
    public struct Statistics: Sendable, Equatable {
        /// Blocks requested.
        public var requests = 0
        /// Requests served from a cached block.
        public var reuses = 0
        /// Bytes in blocks handed out and not yet returned.
        public var liveBytes = 0
        /// The most `liveBytes` has been.
        public var peakLiveBytes = 0
        /// Bytes held in free lists.
        public var cachedBytes = 0

        /// Share of requests served without a fresh allocation.
        public var reuseRate: Double { requests == 0 ? 0 : Double(reuses) / Double(requests) }
    }

    private struct State {
        /// Free blocks by size class, as addresses (plain integers, so the state is Sendable).
        var freeBlocks: [Int: [UInt]] = [:]
        var statistics = Statistics()
    }

    public static let alignment = 64
    /// The huge-page size big blocks are aligned to.
    public static let hugePageBytes = 2 << 20
    /// The most bytes the blocks in use may add up to: a request beyond it fails with an
    /// `OutOfMemoryError` instead of the system killing the process.
    public let limitBytes: Int
    private let state = Mutex(State())

    /// An allocator whose blocks in use stay within `limitBytes` (default: the machine's physical memory).
    public init(limitBytes: Int? = nil) {
        self.limitBytes = limitBytes ?? Self.physicalMemoryBytes
    }

    /// The machine's physical memory.
    public static var physicalMemoryBytes: Int { sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE)) }

    deinit {
        releaseCachedBlocks()
    }

    /// The size class a request of `bytes` is rounded up to.
    public static func sizeClass(_ bytes: Int) -> Int {
        let minimum = max(bytes, alignment)
        if minimum <= 4096 { return (minimum + alignment - 1) / alignment * alignment }
        let power = Int.bitWidth - (minimum - 1).leadingZeroBitCount  // 2^power ≥ minimum
        let step = 1 << (power - 3)
        return (minimum + step - 1) / step * step
    }

    /// A block of at least `bytes` bytes, 64-byte aligned (2 MiB from 2 MiB up), contents undefined;
    /// an `OutOfMemoryError` when the blocks in use would pass `limitBytes`, or the system has none.
    public func allocate(bytes: Int) throws(OutOfMemoryError) -> (pointer: UnsafeMutableRawPointer, capacity: Int) {
        let capacity = Self.sizeClass(bytes)
        let cached: Result<UInt?, OutOfMemoryError> = state.withLock { state in
            guard state.statistics.liveBytes + capacity <= limitBytes else {
                return .failure(OutOfMemoryError(requestedBytes: bytes, liveBytes: state.statistics.liveBytes, limitBytes: limitBytes))
            }
            state.statistics.requests += 1
            state.statistics.liveBytes += capacity
            state.statistics.peakLiveBytes = max(state.statistics.peakLiveBytes, state.statistics.liveBytes)
            guard let block = state.freeBlocks[capacity]?.popLast() else { return .success(nil) }
            state.statistics.reuses += 1
            state.statistics.cachedBytes -= capacity
            return .success(block)
        }
        if let cached = try cached.get(), let block = UnsafeMutableRawPointer(bitPattern: cached) { return (block, capacity) }
        var raw: UnsafeMutableRawPointer?
        let alignment = capacity >= Self.hugePageBytes ? Self.hugePageBytes : Self.alignment
        guard posix_memalign(&raw, alignment, capacity) == 0, let raw else {
            let live = state.withLock { state in
                state.statistics.liveBytes -= capacity
                return state.statistics.liveBytes
            }
            throw OutOfMemoryError(requestedBytes: bytes, liveBytes: live, limitBytes: limitBytes)
        }
        #if os(Linux)
        if alignment == Self.hugePageBytes { _ = madvise(raw, capacity, MADV_HUGEPAGE) }
        #endif
        return (raw, capacity)
    }

    /// Returns a block obtained from `allocate` with the capacity it reported.
    public func deallocate(_ pointer: UnsafeMutableRawPointer, capacity: Int) {
        state.withLock { state in
            state.freeBlocks[capacity, default: []].append(UInt(bitPattern: pointer))
            state.statistics.liveBytes -= capacity
            state.statistics.cachedBytes += capacity
        }
    }

    /// Frees every cached block back to the system (trimming the C heap too, where glibc keeps the
    /// blocks below its mmap threshold).
    public func releaseCachedBlocks() {
        let blocks = state.withLock { state in
            let blocks = state.freeBlocks.values.flatMap { $0 }
            state.freeBlocks.removeAll()
            state.statistics.cachedBytes = 0
            return blocks
        }
        for block in blocks { free(UnsafeMutableRawPointer(bitPattern: block)) }
        if !blocks.isEmpty { mg_trim_heap() }
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    public func resetStatistics() {
        state.withLock { state in
            let live = state.statistics.liveBytes, cached = state.statistics.cachedBytes
            state.statistics = Statistics(liveBytes: live, peakLiveBytes: live, cachedBytes: cached)
        }
    }
}

/// A tensor the caching allocator could not provide: the size asked for, what was in use, and the limit.
public struct OutOfMemoryError: Error, CustomStringConvertible, Equatable {
    public let requestedBytes: Int
    public let liveBytes: Int
    public let limitBytes: Int

    public init(requestedBytes: Int, liveBytes: Int, limitBytes: Int) {
        self.requestedBytes = requestedBytes
        self.liveBytes = liveBytes
        self.limitBytes = limitBytes
    }

    public var description: String {
        "out of memory: a tensor of \(requestedBytes) bytes was asked for with \(liveBytes) bytes in use, "
            + "over the limit of \(limitBytes) bytes"
    }
}
