import Dispatch
import Foundation

/// Megatron's exit signal handler (--exit-signal-handler): the signal (SIGTERM by default, what a
/// cluster scheduler sends before it stops a job) no longer kills the process but is recorded, and
/// the trainer, at the end of the iteration, saves a checkpoint and exits. The signal is taken from a
/// dispatch source, not a handler of ours, so nothing global is written here; the ranks of one
/// process share one `ExitSignal`, and every rank learns of any rank's. On Linux the dispatch runtime
/// catches the signal itself from the first source on, for the rest of the process's life (it then
/// no longer kills the process, source or not), and several `ExitSignal`s of one signal each see it.
public final class ExitSignal: @unchecked Sendable {
    /// The signals it can wait for, by name.
    public static let names: [String: Int32] = ["SIGTERM": SIGTERM, "SIGINT": SIGINT, "SIGHUP": SIGHUP, "SIGUSR1": SIGUSR1,
                                                "SIGUSR2": SIGUSR2]
    public let name: String
    private let source: DispatchSourceSignal
    private let lock = NSLock()
    private var received = false

    /// Starts catching the signal called `name` (a key of `names`), or nil for an unknown name.
    public init?(_ name: String = "SIGTERM") {
        guard let number = Self.names[name] else { return nil }
        self.name = name
        source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        #if canImport(Darwin)
        signal(number, SIG_IGN)  // kqueue still reports it; on Linux the runtime installs its own handler
        #endif
        source.setEventHandler { [weak self] in self?.record() }
        source.resume()
    }

    deinit { source.cancel() }

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
