import Foundation

/// A thread that runs work in submission order while the training thread computes: what lets a
/// gradient bucket's all-reduce overlap the rest of backward, a parameter bucket's all-gather the
/// next forward, and an asynchronous checkpoint's writes the next iterations. The first error a
/// piece of work throws is kept and rethrown by `waitUntilIdle` and `wait(for:)`; later work is
/// skipped.
final class BackgroundThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [() throws -> Void] = []
    private var running = false
    private var failure: Error?
    private var stopped = false
    /// Pieces of work submitted and finished (run or skipped) so far.
    private var submitted = 0, finished = 0

    init(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// Queues `work` behind everything already submitted; returns its ticket for `wait(for:)`.
    @discardableResult
    func submit(_ work: @escaping () throws -> Void) -> Int {
        condition.lock()
        defer { condition.unlock() }
        pending.append(work)
        submitted += 1
        condition.broadcast()
        return submitted
    }

    /// Waits until the work of `ticket` (and so everything submitted before it) has run; rethrows
    /// the first failure.
    func wait(for ticket: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        while finished < ticket && failure == nil { condition.wait() }
        if let failure { throw failure }
    }

    /// Whether the work of `ticket` has run (or been skipped after a failure), without waiting.
    func hasFinished(_ ticket: Int) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return finished >= ticket
    }

    /// Waits until all submitted work has run; rethrows the first failure.
    func waitUntilIdle() throws {
        condition.lock()
        defer { condition.unlock() }
        while !pending.isEmpty || running { condition.wait() }
        if let failure { throw failure }
    }

    /// Ends the thread once the queue is empty.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        while true {
            while pending.isEmpty && !stopped { condition.wait() }
            if pending.isEmpty { break }
            let work = pending.removeFirst()
            running = true
            let skip = failure != nil
            condition.unlock()
            var error: Error?
            if !skip {
                do { try work() } catch let thrown { error = thrown }
            }
            condition.lock()
            if failure == nil { failure = error }
            running = false
            finished += 1
            condition.broadcast()
        }
        condition.unlock()
    }
}
