import CBLAS
import CKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The CPU as a compute device: how many threads kernels and OpenBLAS use, and the caching allocator
/// tensors come from. Passed to every kernel explicitly; nothing about it is global except OpenBLAS's
/// own thread count, which each GEMM call sets to its device's count so that it is never left to
/// chance (two devices used from two threads at once would contend for it), and OpenBLAS's thread
/// timeout, shortened once per process (`blasThreadTimeoutLog2`).
public final class CPUDevice: Sendable {
    /// Threads for kernels and GEMM.
    public let threads: Int
    public let allocator: CachingAllocator
    /// Where GEMM and attention report their wall time, when profiling.
    public let timer: KernelTimer?

    /// The environment variable that sets the default thread count (`--threads` overrides it).
    public static let threadsEnvironmentVariable = "MEGATRON_NUM_THREADS"

    /// A device using `threads` threads (≥ 1), its tensors within `memoryLimitBytes` (default: the
    /// machine's physical memory); sets OpenBLAS to the same count.
    public init(threads: Int, timer: KernelTimer? = nil, memoryLimitBytes: Int? = nil) {
        precondition(threads >= 1, "CPUDevice: threads must be at least 1")
        self.threads = threads
        self.allocator = CachingAllocator(limitBytes: memoryLimitBytes)
        self.timer = timer
        _ = Self.shortenedBLASThreadTimeout
        openblas_set_num_threads(Int32(threads))
    }

    /// log₂ of the TSC cycles an idle OpenBLAS worker thread spins before it sleeps, unless
    /// `OPENBLAS_THREAD_TIMEOUT` is set: 2^16 cycles, tens of microseconds.
    ///
    /// OpenBLAS's default is 2^28 cycles, about 0.1 s of spinning (calling sched_yield) after every
    /// GEMM. Between GEMMs this device runs its own kernels on every core, so each of them shared a
    /// core with a spinning worker. Measured on the 124M model, micro-batch 1, 2 cores, alternating
    /// runs of `megatron-bench gpt --profile` with this value and with 28: attention backward 709–759
    /// → 450–513 ms per step, step median 6.6–7.0 → 5.6–6.0 s. GEMMs, which pay a wake-up after a
    /// sleep, took the same time within noise. 2^16 keeps the workers awake across back-to-back GEMMs and out of
    /// the way of everything else.
    public static let blasThreadTimeoutLog2 = 16

    /// Applied once per process, before the first device uses OpenBLAS: sets the timeout
    /// variable (when the user has not) and restarts OpenBLAS's threads so that they read it.
    private static let shortenedBLASThreadTimeout: Void = {
        guard getenv("OPENBLAS_THREAD_TIMEOUT") == nil else { return }
        setenv("OPENBLAS_THREAD_TIMEOUT", String(blasThreadTimeoutLog2), 1)
        openblas_read_env()
        _ = blas_thread_shutdown_()
    }()

    /// The thread count from `MEGATRON_NUM_THREADS` when set and valid, else every core.
    public static func defaultThreadCount(environment: [String: String]) throws -> Int {
        guard let value = environment[threadsEnvironmentVariable] else { return coreCount }
        guard let n = Int(value), n >= 1 else {
            throw TensorError("\(threadsEnvironmentVariable)=\(value): expected a positive integer")
        }
        return n
    }

    /// Cores this process may run on.
    public static var coreCount: Int { Int(openblas_get_num_procs()) }

    /// OpenBLAS's build configuration and the core kernel it chose, e.g. "OpenBLAS 0.3.21 … (Zen)".
    public static var blasDescription: String {
        "\(String(cString: openblas_get_config())) (core \(String(cString: openblas_get_corename())))"
    }

    /// Whether the kernels run their AVX2+FMA+F16C versions on this CPU.
    public static var usesAVX2: Bool { mg_cpu_has_avx2_fma() != 0 }

    /// Runs `body(range, task)` over a split of `0 ..< count` into at most `threads` contiguous
    /// ranges of at least `minimumPerTask` items, `task` numbering the ranges from 0. The split
    /// depends only on `count` and the thread count, so results are reproducible.
    public func parallelFor(_ count: Int, minimumPerTask: Int = 1, _ body: @Sendable (Range<Int>, Int) -> Void) {
        let tasks = taskCount(count, minimumPerTask: minimumPerTask)
        if tasks <= 1 {
            if count > 0 { body(0 ..< count, 0) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: tasks) { task in
            body(Self.chunk(task, of: tasks, count: count), task)
        }
    }

    /// How many ranges `parallelFor` would use.
    public func taskCount(_ count: Int, minimumPerTask: Int = 1) -> Int {
        max(1, min(threads, count / max(1, minimumPerTask)))
    }

    static func chunk(_ task: Int, of tasks: Int, count: Int) -> Range<Int> {
        let base = count / tasks, extra = count % tasks
        let start = task * base + min(task, extra)
        return start ..< start + base + (task < extra ? 1 : 0)
    }

    /// Sets OpenBLAS's process-wide thread count to this device's, if another device changed it.
    func claimBLASThreads() {
        if openblas_get_num_threads() != Int32(threads) { openblas_set_num_threads(Int32(threads)) }
    }

    /// Runs `body` with OpenBLAS on one thread, for code that calls GEMM from several threads of
    /// its own; restores the device's count afterwards.
    func withSingleThreadedBLAS<R>(_ body: () throws -> R) rethrows -> R {
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(threads)) }
        return try body()
    }
}
