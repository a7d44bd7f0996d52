import CMPI
import Foundation

/// A communicator over MPI (OpenMPI): the engine for runs across processes and machines, launched
/// with `mpirun`. Collectives map one to one onto MPI's in-place collectives on `comm`; errors come
/// back as codes (MPI_ERRORS_RETURN) and are thrown with MPI's own message. MPI is initialised with
/// MPI_THREAD_MULTIPLE when the library provides it, at least MPI_THREAD_SERIALIZED: callers
/// (the gradient bucket thread and the training thread) never call MPI at the same time.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    let comm: MPI_Comm
    public let rank: Int
    public let size: Int
    /// Whether MPI runs with MPI_THREAD_MULTIPLE: several threads may call it at once.
    public let providesThreadMultiple: Bool

    private init(comm: MPI_Comm) throws {
        self.comm = comm
        var r: Int32 = 0, s: Int32 = 0
        try Self.check(MPI_Comm_rank(comm, &r), "MPI_Comm_rank")
        try Self.check(MPI_Comm_size(comm, &s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
        var level: Int32 = 0
        try Self.check(MPI_Query_thread(&level), "MPI_Query_thread")
        providesThreadMultiple = level >= mg_mpi_thread_multiple()
        try Self.check(MPI_Comm_set_errhandler(comm, mg_mpi_errors_return()), "MPI_Comm_set_errhandler")
    }

    /// Whether this process was started by OpenMPI's `mpirun` (its environment names the rank).
    public static var launchedByMPIRun: Bool {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil
    }

    /// The process count a launcher announced in the environment (mpirun, a PMI launcher, Slurm's
    /// srun), before MPI is initialised; nil when none did.
    public static var launcherWorldSize: Int? {
        let environment = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"].lazy.compactMap { environment[$0].flatMap(Int.init) }.first
    }

    /// Initialises MPI (once per process) and returns the world communicator.
    public static func world() throws -> MPICommunicator {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            try check(MPI_Init_thread(nil, nil, mg_mpi_thread_multiple(), &provided), "MPI_Init_thread")
            guard provided >= mg_mpi_thread_serialized() else {
                throw CommunicatorError("MPI provides thread level \(provided); swift-megatron needs MPI_THREAD_SERIALIZED or more")
            }
        }
        return try MPICommunicator(comm: mg_mpi_comm_world())
    }

    /// Ends MPI; call once, after the last collective, on every rank.
    public static func finalize() {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if finalized == 0 { MPI_Finalize() }
    }

    /// Ends the whole job: OpenMPI terminates every rank, and this process exits with `code`.
    public static func abort(code: Int32) -> Never {
        MPI_Abort(mg_mpi_comm_world(), code)
        exit(code)
    }

    public func allReduce<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        // MPI counts are 32-bit: reduce a long buffer in pieces.
        var start = 0
        while start < buffer.count {
            let n = min(buffer.count - start, Int(Int32.max))
            try Self.check(MPI_Allreduce(mg_mpi_in_place(), buffer.baseAddress! + start, Int32(n), Self.datatype(T.self),
                                         Self.mpiOp(op), comm), "MPI_Allreduce")
            start += n
        }
    }

    /// Pairwise exchange: in step k = 1 … n−1 this rank sends its copy of chunk (rank + k) mod n to
    /// that chunk's owner and adds the copy of its own chunk that rank (rank − k) mod n sends, so each
    /// rank sends (n−1)/n of the buffer once. Messages go in pieces of at most `pieceElements` through
    /// one small receive buffer (no chunk-sized allocation, and its page faults, per call); every rank
    /// counts pieces over the longest chunk, so sends and receives pair up.
    public func reduceScatter<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        let mine = chunk(rank: rank, count: buffer.count), longest = chunk(rank: 0, count: buffer.count).count
        let piece = min(Self.pieceElements, max(longest, 1))
        let incoming = UnsafeMutableBufferPointer<T>.allocate(capacity: piece)
        defer { incoming.deallocate() }
        let base = buffer.baseAddress
        for k in 1 ..< max(size, 1) {
            let destination = (rank + k) % size, source = (rank - k + size) % size
            let outgoing = chunk(rank: destination, count: buffer.count)
            for offset in stride(from: 0, to: longest, by: piece) {
                let sending = max(0, min(piece, outgoing.count - offset)), receiving = max(0, min(piece, mine.count - offset))
                var status = MPI_Status()
                try Self.check(MPI_Sendrecv(base.map { $0 + outgoing.lowerBound + offset }, Int32(sending), Self.datatype(T.self),
                                            Int32(destination), Self.reduceScatterTag,
                                            incoming.baseAddress, Int32(receiving), Self.datatype(T.self),
                                            Int32(source), Self.reduceScatterTag, comm, &status), "MPI_Sendrecv (reduce-scatter)")
                if receiving > 0 { accumulate(base! + mine.lowerBound + offset, incoming.baseAddress!, count: receiving, op: op) }
            }
        }
    }

    /// Elements per reduce-scatter message: 256 KiB of fp32.
    static let pieceElements = 1 << 16

    /// The tag of reduce-scatter's messages, apart from the tags callers use with send/receive.
    static let reduceScatterTag: Int32 = 0x7EED

    public func allGather<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>) throws {
        guard buffer.count > 0 else { return try barrier() }
        let counts = try chunkCounts(buffer.count)
        let displacements = try (0 ..< size).map { try Self.count(chunk(rank: $0, count: buffer.count).lowerBound) }
        try Self.check(MPI_Allgatherv(mg_mpi_in_place(), 0, Self.datatype(T.self), buffer.baseAddress!, counts, displacements,
                                      Self.datatype(T.self), comm), "MPI_Allgatherv")
    }

    /// Every rank's chunk length, as MPI's 32-bit counts.
    private func chunkCounts(_ count: Int) throws -> [Int32] {
        try (0 ..< size).map { try Self.count(chunk(rank: $0, count: count).count) }
    }

    public func broadcast<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        try checkPeer(root, operation: "broadcast")
        guard buffer.count > 0 else { return try barrier() }
        try Self.check(MPI_Bcast(buffer.baseAddress!, try Self.count(buffer.count), Self.datatype(T.self), Int32(root), comm),
                       "MPI_Bcast")
    }

    public func send<T: CommunicationScalar>(_ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int) throws {
        try checkPeer(destination, operation: "send")
        try Self.check(MPI_Send(buffer.baseAddress, try Self.count(buffer.count), Self.datatype(T.self), Int32(destination),
                                Int32(tag), comm), "MPI_Send to rank \(destination)")
    }

    public func receive<T: CommunicationScalar>(into buffer: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int) throws {
        try checkPeer(source, operation: "receive")
        var status = MPI_Status()
        try Self.check(MPI_Recv(buffer.baseAddress, try Self.count(buffer.count), Self.datatype(T.self), Int32(source),
                                Int32(tag), comm, &status), "MPI_Recv from rank \(source)")
        var received: Int32 = 0
        MPI_Get_count(&status, Self.datatype(T.self), &received)
        guard Int(received) == buffer.count else {
            throw CommunicatorError("receive from rank \(source) (tag \(tag)): \(received) elements, expected \(buffer.count)")
        }
    }

    public func sendReceive<T: CommunicationScalar>(_ outgoing: UnsafeBufferPointer<T>, to destination: Int,
                                                    into incoming: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int) throws {
        try checkPeer(destination, operation: "sendReceive")
        try checkPeer(source, operation: "sendReceive")
        var status = MPI_Status()
        try Self.check(MPI_Sendrecv(outgoing.baseAddress, try Self.count(outgoing.count), Self.datatype(T.self), Int32(destination),
                                    Int32(tag), incoming.baseAddress, try Self.count(incoming.count), Self.datatype(T.self),
                                    Int32(source), Int32(tag), comm, &status),
                       "MPI_Sendrecv to rank \(destination), from rank \(source)")
        var received: Int32 = 0
        MPI_Get_count(&status, Self.datatype(T.self), &received)
        guard Int(received) == incoming.count else {
            throw CommunicatorError("sendReceive from rank \(source) (tag \(tag)): \(received) elements, expected \(incoming.count)")
        }
    }

    public func exchange<T: CommunicationScalar>(_ transfers: [PeerTransfer<T>]) throws {
        var requests = [MPI_Request?](repeating: nil, count: transfers.count)
        for (i, transfer) in transfers.enumerated() {
            switch transfer {
            case let .send(buffer, destination, tag):
                try checkPeer(destination, operation: "exchange")
                try Self.check(MPI_Isend(buffer.baseAddress, try Self.count(buffer.count), Self.datatype(T.self), Int32(destination),
                                         Int32(tag), comm, &requests[i]), "MPI_Isend to rank \(destination)")
            case let .receive(buffer, source, tag):
                try checkPeer(source, operation: "exchange")
                try Self.check(MPI_Irecv(buffer.baseAddress, try Self.count(buffer.count), Self.datatype(T.self), Int32(source),
                                         Int32(tag), comm, &requests[i]), "MPI_Irecv from rank \(source)")
            }
        }
        var statuses = [MPI_Status](repeating: MPI_Status(), count: transfers.count)
        try Self.check(MPI_Waitall(Int32(transfers.count), &requests, &statuses), "MPI_Waitall of \(transfers.count) transfers")
        for case let (i, .receive(buffer, source, tag)) in transfers.enumerated() {
            var received: Int32 = 0
            MPI_Get_count(&statuses[i], Self.datatype(T.self), &received)
            guard Int(received) == buffer.count else {
                throw CommunicatorError("exchange: receive from rank \(source) (tag \(tag)): \(received) elements, expected \(buffer.count)")
            }
        }
    }

    public func barrier() throws { try Self.check(MPI_Barrier(comm), "MPI_Barrier") }

    public func split(color: Int, key: Int) throws -> any Communicator {
        var child = mg_mpi_comm_null()
        try Self.check(MPI_Comm_split(comm, Int32(color), Int32(key), &child), "MPI_Comm_split")
        return try MPICommunicator(comm: child!)
    }

    // MARK: MPI's types and errors

    static func datatype<T: CommunicationScalar>(_: T.Type) -> MPI_Datatype {
        switch T.kind {
        case .float32: mg_mpi_float()
        case .float64: mg_mpi_double()
        case .int32: mg_mpi_int32()
        case .uint16: mg_mpi_uint16()
        }
    }

    static func mpiOp(_ op: ReduceOp) -> MPI_Op {
        switch op {
        case .sum: mg_mpi_sum()
        case .max: mg_mpi_max()
        }
    }

    static func count(_ n: Int) throws -> Int32 {
        guard n <= Int(Int32.max) else { throw CommunicatorError("MPI: \(n) elements exceed MPI's 32-bit count") }
        return Int32(n)
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code != mg_mpi_success() else { return }
        var text = [CChar](repeating: 0, count: Int(mg_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &text, &length)
        let message = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw CommunicatorError("\(call) failed: \(message)")
    }
}
