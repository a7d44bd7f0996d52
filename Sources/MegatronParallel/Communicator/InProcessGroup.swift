import Foundation

/// The state one group of an `InProcessWorld` shares: a reusable barrier, the buffers its ranks
/// deposit for the collective under way, split requests and point-to-point mailboxes. All fields
/// change under the world's lock; buffers deposited before a barrier are read after it.
final class InProcessGroup: @unchecked Sendable {
    let world: InProcessWorld
    /// The world rank of each member, by rank in this group.
    let worldRanks: [Int]
    var size: Int { worldRanks.count }

    private var arrived = Set<Int>()
    private var generation = 0
    /// Per rank: the buffer and element count it passed to the collective under way.
    private(set) var buffers: [UnsafeMutableRawPointer?]
    private(set) var counts: [Int]
    /// Per rank: the (color, key) it passed to the split under way.
    private(set) var splitRequests: [(color: Int, key: Int)]
    private(set) var splitResult: [Int: InProcessGroup] = [:]
    private var mailboxes: [MailboxKey: [[UInt8]]] = [:]

    struct MailboxKey: Hashable { let source: Int, destination: Int, tag: Int }

    init(world: InProcessWorld, worldRanks: [Int]) {
        self.world = world
        self.worldRanks = worldRanks
        buffers = Array(repeating: nil, count: worldRanks.count)
        counts = Array(repeating: 0, count: worldRanks.count)
        splitRequests = Array(repeating: (0, 0), count: worldRanks.count)
    }

    /// Records this rank's buffer, waits until every rank has arrived, and checks that all passed
    /// the same element count.
    func arrive(_ rank: Int, buffer: UnsafeMutableRawPointer?, count: Int, operation: String) throws {
        try arrive(rank, operation: operation) {
            self.buffers[rank] = buffer
            self.counts[rank] = count
        }
        if let other = counts.firstIndex(where: { $0 != count }) {
            throw CommunicatorError("\(operation): rank \(rank) passed \(count) elements but rank \(other) passed \(counts[other])")
        }
    }

    /// Waits until every rank of the group has arrived (a barrier). `deposit` runs under the lock
    /// on arrival; `complete` runs under the lock by the last rank to arrive, before anyone leaves.
    /// A collective's later barriers pass `midCollective`: once every rank is inside, all of them
    /// only copy memory to the next barrier, so they wait for each other even when some rank
    /// elsewhere has failed — leaving early would free a buffer that peers are still writing.
    func arrive(_ rank: Int, operation: String, midCollective: Bool = false, deposit: () -> Void = {},
                complete: () -> Void = {}) throws {
        let condition = world.condition
        condition.lock()
        defer { condition.unlock() }
        if !midCollective, let failure = world.failure { throw failure }
        deposit()
        let entered = generation
        arrived.insert(rank)
        if arrived.count == size {
            complete()
            arrived.removeAll()
            generation &+= 1
            condition.broadcast()
            return
        }
        let deadline = Date(timeIntervalSinceNow: world.timeoutSeconds)
        while generation == entered {
            if !midCollective, let failure = world.failure { throw failure }
            if !condition.wait(until: deadline) && generation == entered {
                let missing = (0 ..< size).filter { !arrived.contains($0) }.map { worldRanks[$0] }
                world.record(CommunicatorError(
                    "\(operation): rank(s) \(missing.map(String.init).joined(separator: ", ")) did not arrive within "
                        + "\(Int(world.timeoutSeconds)) s", failedRank: missing.first))
                throw world.failure!
            }
        }
    }

    /// Records this rank's split request; the last to arrive builds the new groups.
    func split(_ rank: Int, color: Int, key: Int) throws -> (group: InProcessGroup, rank: Int) {
        try arrive(rank, operation: "split", deposit: { self.splitRequests[rank] = (color, key) }) {
            var members: [Int: [Int]] = [:]
            for r in 0 ..< size { members[splitRequests[r].color, default: []].append(r) }
            splitResult = members.mapValues { ranks in
                let ordered = ranks.sorted { (splitRequests[$0].key, $0) < (splitRequests[$1].key, $1) }
                return InProcessGroup(world: world, worldRanks: ordered.map { worldRanks[$0] })
            }
        }
        world.condition.lock()
        defer { world.condition.unlock() }
        let group = splitResult[color]!
        return (group, group.worldRanks.firstIndex(of: worldRanks[rank])!)
    }

    func post(_ bytes: [UInt8], from source: Int, to destination: Int, tag: Int) {
        world.condition.lock()
        mailboxes[MailboxKey(source: source, destination: destination, tag: tag), default: []].append(bytes)
        world.condition.broadcast()
        world.condition.unlock()
    }

    /// Waits for the next message from `source` to `destination` with `tag`.
    func take(from source: Int, to destination: Int, tag: Int) throws -> [UInt8] {
        let key = MailboxKey(source: source, destination: destination, tag: tag)
        let condition = world.condition
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: world.timeoutSeconds)
        while mailboxes[key, default: []].isEmpty {
            if let failure = world.failure { throw failure }
            if !condition.wait(until: deadline) && mailboxes[key, default: []].isEmpty {
                world.record(CommunicatorError(
                    "receive: no message from rank \(worldRanks[source]) (tag \(tag)) within \(Int(world.timeoutSeconds)) s",
                    failedRank: worldRanks[source]))
                throw world.failure!
            }
        }
        return mailboxes[key]!.removeFirst()
    }
}
