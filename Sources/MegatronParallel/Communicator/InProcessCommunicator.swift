/// A rank of an `InProcessWorld` (or of a group split from it): collectives between threads of
/// one process through shared memory. Reductions run in parallel, each rank reducing one chunk over
/// all ranks in rank order, so the results match bit for bit on every rank.
public final class InProcessCommunicator: Communicator, @unchecked Sendable {
    let group: InProcessGroup
    public let rank: Int
    public var size: Int { group.size }

    init(group: InProcessGroup, rank: Int) {
        self.group = group
        self.rank = rank
    }

    public func allReduce<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        // One rank holds the reduction already: no rendezvous (the trainer reduces its loss every iteration).
        guard size > 1 else { return }
        try group.arrive(rank, buffer: UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, operation: "all-reduce")
        let mine = chunk(rank: rank, count: buffer.count)
        let reduced = reduce(mine, as: T.self, op: op)
        try group.arrive(rank, operation: "all-reduce", midCollective: true)
        // Every rank has read its inputs: write this rank's chunk of the result everywhere.
        for peer in 0 ..< size {
            let target = group.buffers[peer]!.assumingMemoryBound(to: T.self) + mine.lowerBound
            copyElements(target, reduced, count: mine.count)
        }
        try group.arrive(rank, operation: "all-reduce", midCollective: true)
    }

    public func reduceScatter<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        try group.arrive(rank, buffer: UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, operation: "reduce-scatter")
        let mine = chunk(rank: rank, count: buffer.count)
        let reduced = reduce(mine, as: T.self, op: op)
        try group.arrive(rank, operation: "reduce-scatter", midCollective: true)
        if !mine.isEmpty { copyElements(buffer.baseAddress! + mine.lowerBound, reduced, count: mine.count) }
    }

    public func allGather<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>) throws {
        try group.arrive(rank, buffer: UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, operation: "all-gather")
        for peer in 0 ..< size where peer != rank {
            let theirs = chunk(rank: peer, count: buffer.count)
            guard !theirs.isEmpty else { continue }
            let source = group.buffers[peer]!.assumingMemoryBound(to: T.self) + theirs.lowerBound
            copyElements(buffer.baseAddress! + theirs.lowerBound, source, count: theirs.count)
        }
        try group.arrive(rank, operation: "all-gather", midCollective: true)
    }

    public func broadcast<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        try checkPeer(root, operation: "broadcast")
        try group.arrive(rank, buffer: UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, operation: "broadcast")
        if rank != root && buffer.count > 0 {
            copyElements(buffer.baseAddress!, group.buffers[root]!.assumingMemoryBound(to: T.self), count: buffer.count)
        }
        try group.arrive(rank, operation: "broadcast", midCollective: true)
    }

    public func send<T: CommunicationScalar>(_ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int) throws {
        try checkPeer(destination, operation: "send")
        group.post(Array(UnsafeRawBufferPointer(buffer)), from: rank, to: destination, tag: tag)
    }

    public func receive<T: CommunicationScalar>(into buffer: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int) throws {
        try checkPeer(source, operation: "receive")
        let bytes = try group.take(from: source, to: rank, tag: tag)
        guard bytes.count == buffer.count * MemoryLayout<T>.stride else {
            throw CommunicatorError("receive from rank \(source) (tag \(tag)): message of \(bytes.count) bytes, "
                                    + "expected \(buffer.count * MemoryLayout<T>.stride)")
        }
        bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
    }

    /// Sends are buffered in-process, so sending first never blocks.
    public func sendReceive<T: CommunicationScalar>(_ outgoing: UnsafeBufferPointer<T>, to destination: Int,
                                                    into incoming: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int) throws {
        try send(outgoing, to: destination, tag: tag)
        try receive(into: incoming, from: source, tag: tag)
    }

    /// Sends are buffered in-process: every send first, then every receive.
    public func exchange<T: CommunicationScalar>(_ transfers: [PeerTransfer<T>]) throws {
        for case let .send(buffer, destination, tag) in transfers { try send(buffer, to: destination, tag: tag) }
        for case let .receive(buffer, source, tag) in transfers { try receive(into: buffer, from: source, tag: tag) }
    }

    public func barrier() throws { try group.arrive(rank, operation: "barrier") }

    public func split(color: Int, key: Int) throws -> any Communicator {
        let (child, childRank) = try group.split(rank, color: color, key: key)
        return InProcessCommunicator(group: child, rank: childRank)
    }

    /// The reduction over every rank's deposited buffer of the elements in `range`, ranks in order.
    private func reduce<T: CommunicationScalar>(_ range: Range<Int>, as _: T.Type, op: ReduceOp) -> [T] {
        let inputs = (0 ..< size).map { group.buffers[$0].map { $0.assumingMemoryBound(to: T.self) + range.lowerBound } }
        guard !range.isEmpty else { return [] }
        return [T](unsafeUninitializedCapacity: range.count) { out, initialized in
            copyElements(out.baseAddress!, inputs[0]!, count: range.count)
            for input in inputs.dropFirst() { accumulate(out.baseAddress!, input!, count: range.count, op: op) }
            initialized = range.count
        }
    }
}
