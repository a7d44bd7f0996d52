import Foundation

/// Ranks as threads of one process: the world they share (one lock and condition for every group
/// in it, the first failure, the timeout) and the harness that runs one thread per rank.
///
/// A rank that throws marks the world failed; every rank waiting in, or later entering, a
/// collective then throws an error naming it. A collective that some rank does not reach within
/// `timeoutSeconds` fails the same way, naming the ranks that are missing.
public final class InProcessWorld: @unchecked Sendable {
    public let size: Int
    let timeoutSeconds: Double
    let condition = NSCondition()
    /// The first failure; set once, under `condition`.
    private(set) var failure: CommunicatorError?
    private var group: InProcessGroup!

    /// A world of `size` ranks. `timeoutSeconds` bounds every wait (Megatron's
    /// --distributed-timeout-minutes).
    public init(size: Int, timeoutSeconds: Double = 600) {
        precondition(size >= 1, "InProcessWorld: size must be at least 1")
        self.size = size
        self.timeoutSeconds = timeoutSeconds
        group = InProcessGroup(world: self, worldRanks: Array(0 ..< size))
    }

    /// The world communicator of `rank`.
    public func communicator(rank: Int) -> InProcessCommunicator {
        InProcessCommunicator(group: group, rank: rank)
    }

    /// Records that `rank` failed with `cause`; every rank's next wait throws.
    public func fail(rank: Int, _ cause: any Error) {
        condition.lock()
        record(CommunicatorError("rank \(rank) failed: \(cause)", failedRank: rank, cause: cause))
        condition.unlock()
    }

    /// Records `error` as the world's failure unless one is already recorded, and wakes every waiter.
    /// Call with `condition` locked.
    func record(_ error: CommunicatorError) {
        if failure == nil { failure = error }
        condition.broadcast()
    }

    /// Runs `body` once per rank, each on its own thread with that rank's world communicator, and
    /// returns when all have returned. If any rank throws, the others are released from their waits
    /// and this throws the first failure, naming the rank.
    public func run(_ body: @escaping @Sendable (InProcessCommunicator) throws -> Void) throws {
        let done = DispatchGroup()
        for rank in 0 ..< size {
            done.enter()
            let thread = Thread { [self] in
                defer { done.leave() }
                do {
                    try body(communicator(rank: rank))
                } catch let error as CommunicatorError where error.failedRank != nil && error.failedRank != rank {
                    // Released because another rank failed: that failure is the one to report.
                } catch {
                    fail(rank: rank, error)
                }
            }
            thread.stackSize = 16 << 20
            thread.name = "rank \(rank)"
            thread.start()
        }
        done.wait()
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
    }
}
