import Dispatch
import Foundation

/// Megatron's exit signal handler (--exit-signal-handler): while it exists, the signal (SIGTERM by
/// default, what a cluster scheduler sends before it stops a job) no longer kills the process but
/// is recorded, and the trainer, at the end of the iteration, saves a checkpoint and exits. The
/// signal is taken from a dispatch source, not a C handler, so nothing global is written; the
/// ranks of one process share one `ExitSignal`, and every rank learns of any rank's.
public final class ExitSignal: @unchecked Sendable {
    /// The signals it can wait for, by name.
    public static let names: [String: Int32] = ["SIGTERM": SIGTERM, "SIGINT": SIGINT, "SIGHUP": SIGHUP, "SIGUSR1": SIGUSR1,
                                                "SIGUSR2": SIGUSR2]
    public let name: String
    private let number: Int32
    private let source: DispatchSourceSignal
    private let lock = NSLock()
    private var received = false

    /// Starts catching the signal called `name` (a key of `names`), or nil for an unknown name.
    public init?(_ name: String = "SIGTERM") {
        guard let number = Self.names[name] else { return nil }
        self.name = name
        self.number = number
        source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        signal(number, SIG_IGN)  // the dispatch source still sees it
        source.setEventHandler { [unowned self] in self.record() }
        source.resume()
    }

    deinit {
        source.cancel()
        signal(number, SIG_DFL)
    }

    private func record() {
        lock.lock()
        received = true
        lock.unlock()
    }

    /// Whether the signal has arrived.
    public var wasReceived: Bool {
        lock.lock()
        defer { lock.unlock() }
        return received
    }
}
