import MegatronParallel

/// The checks every `Communicator` implementation must pass, run collectively by every rank of a
/// world: the in-process one under Swift Testing, the MPI one under `mpirun` (the
/// `communicator-conformance` executable). Expected values are computed independently from the
/// ranks, so a check fails on wrong data, not only on a crash.
public struct CommunicatorConformance {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    let world: any Communicator
    public private(set) var checks = 0

    public init(world: any Communicator) { self.world = world }

    /// Runs every check; throws the first failure, naming the rank and the check.
    public mutating func run() throws {
        try identity()
        try allReduce()
        try reduceScatterAndAllGather()
        try broadcast()
        try pointToPoint()
        try split()
        try processGroups()
        try world.barrier()
    }

    private mutating func expect(_ condition: Bool, _ what: @autoclosure () -> String) throws {
        checks += 1
        if !condition { throw Failure(description: "rank \(world.rank) of \(world.size): \(what())") }
    }

    /// Ranks are 0 ..< size, each exactly once.
    mutating func identity() throws {
        let n = world.size, r = world.rank
        try expect(n >= 1 && (0 ..< n).contains(r), "rank \(r) outside 0..<\(n)")
        var ranks = [Int32](repeating: -1, count: n)
        ranks[r] = Int32(r)
        try ranks.withUnsafeMutableBufferPointer { try world.allGather($0) }
        try expect(ranks == (0 ..< n).map(Int32.init), "all-gather of ranks gave \(ranks)")
    }

    mutating func allReduce() throws {
        let n = world.size, r = world.rank
        // Float sum over a long buffer (longer than any chunking), exact in fp32: small integers.
        let length = (1 << 20) + 3
        var values = (0 ..< length).map { Float(($0 % 97) * (r + 1)) }
        try values.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .sum) }
        let factor = Float(n * (n + 1) / 2)
        try expect(values.indices.allSatisfy { values[$0] == Float($0 % 97) * factor }, "fp32 all-reduce sum")
        // Max, with the maximum on a different rank per element.
        var maxima = (0 ..< 1000).map { Double(($0 + r) % n) - 0.5 }
        try maxima.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .max) }
        try expect(maxima.allSatisfy { $0 == Double(n - 1) - 0.5 }, "fp64 all-reduce max")
        let sum = try world.allReduce(Int32(r + 1), op: .sum)
        try expect(sum == Int32(n * (n + 1) / 2), "int32 all-reduce of one value gave \(sum)")
        // Inexact sums must still agree bit for bit on every rank.
        var noisy = (0 ..< 4096).map { Float(1) / Float(3 + $0 + 7 * r) }
        try noisy.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .sum) }
        var low = noisy, high = noisy.map { -$0 }
        try low.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .max) }
        try high.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .max) }
        try expect(zip(low, high).allSatisfy { $0.0 == -$0.1 }, "fp32 all-reduce results differ between ranks")
        var empty: [Float] = []
        try empty.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .sum) }
    }

    /// Chunks of equal length, of lengths that differ by one (the first `count % size` longer), and
    /// longer than a backend's message pieces (MPI: 65,536 elements).
    mutating func reduceScatterAndAllGather() throws {
        let n = world.size, r = world.rank
        for count in [n * 1000, n * 1000 + n - 1, n - 1, n * 140_001 + 1] {
            let mine = world.chunk(rank: r, count: count)
            try expect(mine.count == count / n + (r < count % n ? 1 : 0), "chunk \(mine) of \(count)")
            var values = (0 ..< count).map { Float($0 * (r + 1)) }
            try values.withUnsafeMutableBufferPointer { try world.reduceScatter($0, op: .sum) }
            let factor = Float(n * (n + 1) / 2)
            try expect(mine.allSatisfy { values[$0] == Float($0) * factor }, "reduce-scatter sum of \(count)")
            var gathered = [Float](repeating: .nan, count: count)
            for i in mine { gathered[i] = Float(i) + 0.25 }
            try gathered.withUnsafeMutableBufferPointer { try world.allGather($0) }
            try expect(gathered.indices.allSatisfy { gathered[$0] == Float($0) + 0.25 }, "all-gather of \(count)")
        }
    }

    mutating func broadcast() throws {
        let n = world.size, r = world.rank
        for root in 0 ..< n {
            var values = (0 ..< 777).map { Double($0) + (r == root ? Double(root) * 1000 : -1) }
            try values.withUnsafeMutableBufferPointer { try world.broadcast($0, root: root) }
            try expect(values.indices.allSatisfy { values[$0] == Double($0) + Double(root) * 1000 }, "broadcast from \(root)")
        }
    }

    /// A ring exchange, plus two tagged messages received in the opposite order to their sending.
    mutating func pointToPoint() throws {
        let n = world.size, r = world.rank
        let next = (r + 1) % n, previous = (r + n - 1) % n
        let outgoing = (0 ..< 300).map { Float(r * 1000 + $0) }
        var incoming = [Float](repeating: 0, count: 300)
        // Even ranks send first and odd ranks receive first, so blocking sends cannot deadlock.
        if r % 2 == 0 || n == 1 {
            try outgoing.withUnsafeBufferPointer { try world.send($0, to: next, tag: 7) }
            try incoming.withUnsafeMutableBufferPointer { try world.receive(into: $0, from: previous, tag: 7) }
        } else {
            try incoming.withUnsafeMutableBufferPointer { try world.receive(into: $0, from: previous, tag: 7) }
            try outgoing.withUnsafeBufferPointer { try world.send($0, to: next, tag: 7) }
        }
        try expect(incoming == (0 ..< 300).map { Float(previous * 1000 + $0) }, "ring send/receive")
        // Every rank sends and receives at once, around the ring the other way: 1M floats, beyond any
        // eager limit, so blocking sends would deadlock.
        let large = [Float](repeating: Float(r), count: 1 << 20)
        var back = [Float](repeating: -1, count: 1 << 20)
        try large.withUnsafeBufferPointer { out in
            try back.withUnsafeMutableBufferPointer { try world.sendReceive(out, to: previous, into: $0, from: next, tag: 8) }
        }
        try expect(back.allSatisfy { $0 == Float(next) }, "ring sendReceive")
        // Both ways around the ring in one batch, as an interleaved pipeline does: each rank sends
        // 1M floats to either neighbour (one tag and one payload each way, so that on two ranks, where
        // both neighbours are one rank, only the tags tell the messages apart) and receives from both.
        let backwardOut = [Float](repeating: Float(-1 - r), count: 1 << 20)
        var fromPrevious = [Float](repeating: -1, count: 1 << 20), fromNext = [Float](repeating: 0, count: 1 << 20)
        try large.withUnsafeBufferPointer { forwardOut in
            try backwardOut.withUnsafeBufferPointer { backwardOut in
                try fromPrevious.withUnsafeMutableBufferPointer { forward in
                    try fromNext.withUnsafeMutableBufferPointer { backward in
                        try world.exchange([.send(forwardOut, to: next, tag: 9), .send(backwardOut, to: previous, tag: 10),
                                            .receive(forward, from: previous, tag: 9), .receive(backward, from: next, tag: 10)])
                    }
                }
            }
        }
        try expect(fromPrevious.allSatisfy { $0 == Float(previous) } && fromNext.allSatisfy { $0 == Float(-1 - next) },
                   "ring exchange both ways")
        if n > 1 && r < 2 {
            let peer = 1 - r
            if r == 0 {
                try [Int32(1)].withUnsafeBufferPointer { try world.send($0, to: peer, tag: 1) }
                try [Int32(2), 2].withUnsafeBufferPointer { try world.send($0, to: peer, tag: 2) }
            } else {
                var two = [Int32](repeating: 0, count: 2), one = [Int32(0)]
                try two.withUnsafeMutableBufferPointer { try world.receive(into: $0, from: peer, tag: 2) }
                try one.withUnsafeMutableBufferPointer { try world.receive(into: $0, from: peer, tag: 1) }
                try expect(two == [2, 2] && one == [1], "tagged messages matched out of order")
            }
        }
    }

    /// Even and odd ranks split apart, ordered by descending world rank.
    mutating func split() throws {
        let n = world.size, r = world.rank
        let group = try world.split(color: r % 2, key: -r)
        let members = (0 ..< n).filter { $0 % 2 == r % 2 }.reversed().map { $0 }
        try expect(group.size == members.count && group.rank == members.firstIndex(of: r)!,
                   "split: rank \(group.rank) of \(group.size), expected \(members.firstIndex(of: r)!) of \(members.count)")
        let sum = try group.allReduce(Int32(r), op: .sum)
        try expect(sum == Int32(members.reduce(0, +)), "all-reduce within a split group")
        try group.barrier()
    }

    /// The grid's groups, built with `ProcessGroups`, hold exactly the ranks `ParallelState` lists.
    mutating func processGroups() throws {
        let n = world.size
        var layouts = [(1, 1)]
        if n % 2 == 0 { layouts += [(2, 1), (1, 2)] }
        if n % 4 == 0 { layouts.append((2, 2)) }
        for (tp, pp) in layouts {
            let state = try ParallelState(worldSize: n, tensorModelParallelSize: tp, pipelineModelParallelSize: pp)
            let groups = try ProcessGroups(world: world, state: state)
            for (communicator, dimensions) in [(groups.tensorModelParallel, [ParallelState.Dimension.tensor]),
                                               (groups.pipelineModelParallel, [.pipeline]),
                                               (groups.dataParallel, [.data]),
                                               (groups.modelParallel, [.tensor, .pipeline])] {
                let expected = state.group(varying: Set(dimensions), containing: world.rank)
                var members = [Int32](repeating: -1, count: communicator.size)
                members[communicator.rank] = Int32(world.rank)
                try members.withUnsafeMutableBufferPointer { try communicator.allGather($0) }
                try expect(members.map(Int.init) == expected, "TP=\(tp) PP=\(pp) \(dimensions) group \(members), expected \(expected)")
            }
        }
    }
}
