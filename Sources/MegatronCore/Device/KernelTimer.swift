import Foundation

/// Wall time spent in named kernels, for profiling a training step (`megatron-bench gpt --profile`):
/// a device given a timer reports each GEMM (named by its shape and transposes, with its FLOPs) and
/// each attention call to it. Thread-safe; kernels that run on several threads report once, from the
/// calling thread, so the times add up to wall time.
public final class KernelTimer: @unchecked Sendable {
    /// What was measured under one name.
    public struct Entry: Sendable {
        public var calls = 0
        public var seconds = 0.0
        public var flops = 0.0
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]

    public init() {}

    /// Runs `body`, adding its wall time (and `flops`) to `name`'s entry.
    @discardableResult
    public func measure<R>(_ name: String, flops: Double = 0, _ body: () throws -> R) rethrows -> R {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            lock.withLock {
                var entry = entries[name, default: Entry()]
                entry.calls += 1
                entry.seconds += seconds
                entry.flops += flops
                entries[name] = entry
            }
        }
        return try body()
    }

    /// Everything measured since the last reset, by name.
    public var snapshot: [String: Entry] { lock.withLock { entries } }

    public func reset() { lock.withLock { entries = [:] } }
}

extension CPUDevice {
    /// `body`, timed under `name` when the device has a timer (the name is built only then).
    @inline(__always) @discardableResult
    public func timed<R>(_ name: @autoclosure () -> String, flops: @autoclosure () -> Double = 0,
                  _ body: () throws -> R) rethrows -> R {
        guard let timer else { return try body() }
        return try timer.measure(name(), flops: flops(), body)
    }
}
