/// A group of ranks that exchange and reduce buffers: the seam between the training code and the
/// engine that moves bytes (MPI across processes and machines, or threads of one process).
///
/// Every method except `send`, `receive`, `sendReceive` and `exchange` is collective: all ranks of the group call it, in the
/// same order, with buffers of the same length. The in-process backend sums in rank order, so every
/// rank gets the same bits; the MPI standard only recommends that for MPI_Allreduce. A peer that
/// fails makes the waiting ranks throw (in-process) or ends the job (MPI: a rank that throws calls
/// MPI_Abort, mpirun ends the job when a process dies). A peer that hangs is caught by the
/// in-process timeout; MPI has none (mpirun's --timeout bounds a whole job).
public protocol Communicator: AnyObject, Sendable {
    /// This rank's index in the group, 0 ..< size.
    var rank: Int { get }
    var size: Int { get }

    /// Replaces `buffer` on every rank by the element-wise reduction over all ranks.
    func allReduce<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws

    /// `buffer` splits into `size` contiguous chunks (`chunk(rank:count:)`); afterwards chunk `rank`
    /// holds the element-wise reduction of every rank's chunk `rank`. The other chunks are left
    /// undefined.
    func reduceScatter<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws

    /// `buffer` splits into `size` contiguous chunks (`chunk(rank:count:)`), chunk `rank` filled by
    /// this rank; afterwards every chunk holds its owner's values on every rank.
    func allGather<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>) throws

    /// Copies `buffer` of rank `root` into `buffer` on every rank.
    func broadcast<T: CommunicationScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws

    /// Sends `buffer` to rank `destination`; a `receive` there with the same tag takes it.
    func send<T: CommunicationScalar>(_ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int) throws

    /// Waits for the message with `tag` from rank `source` and copies it into `buffer`, whose length
    /// must equal the message's.
    func receive<T: CommunicationScalar>(into buffer: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int) throws

    /// Sends `outgoing` to rank `destination` and receives the message with the same tag from rank
    /// `source` into `incoming`, at once (MPI_Sendrecv): two ranks that exchange with each other,
    /// or a ring, cannot deadlock on each other's blocking sends.
    func sendReceive<T: CommunicationScalar>(_ outgoing: UnsafeBufferPointer<T>, to destination: Int,
                                             into incoming: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int) throws

    /// Starts every send and receive of `transfers` at once and returns when all are done (MPI_Isend
    /// and MPI_Irecv, then MPI_Waitall: Megatron's batched point-to-point ops). Ranks that each post
    /// their part of a pattern (a pipeline's sends both ways around a ring) cannot deadlock on each
    /// other; messages with the same peer and tag match in the order posted.
    func exchange<T: CommunicationScalar>(_ transfers: [PeerTransfer<T>]) throws

    /// Returns when every rank has called it.
    func barrier() throws

    /// Splits the group (collectively): ranks passing the same `color` form a new communicator in
    /// which they are ordered by `key`, then by their rank here (MPI_Comm_split's rule).
    func split(color: Int, key: Int) throws -> any Communicator
}

public enum ReduceOp: Sendable { case sum, max }

/// One point-to-point transfer of a batch (`Communicator.exchange`).
public enum PeerTransfer<T: CommunicationScalar> {
    /// Sends the buffer to rank `to` with `tag`.
    case send(UnsafeBufferPointer<T>, to: Int, tag: Int)
    /// Receives the message with `tag` from rank `from` into the buffer, whose length must equal the message's.
    case receive(UnsafeMutableBufferPointer<T>, from: Int, tag: Int)
}

/// Element types a communicator carries.
public protocol CommunicationScalar: Numeric, Comparable, Sendable {
    static var kind: ScalarKind { get }
}

public enum ScalarKind: Sendable { case float32, float64, int32, uint16 }

extension Float: CommunicationScalar { public static var kind: ScalarKind { .float32 } }
extension Double: CommunicationScalar { public static var kind: ScalarKind { .float64 } }
extension Int32: CommunicationScalar { public static var kind: ScalarKind { .int32 } }
/// 16-bit words: fp16/bf16 values moved as their bits (all-gathers of 16-bit parameters); their
/// reductions are integer ones, meaningless for those.
extension UInt16: CommunicationScalar { public static var kind: ScalarKind { .uint16 } }

/// A communication failure: names the rank, the operation and the cause.
public struct CommunicatorError: Error, CustomStringConvertible {
    public let description: String
    /// The rank (in the world) whose failure caused this error, when known.
    public let failedRank: Int?
    /// The error that rank threw, when this reports one (an in-process rank's).
    public let cause: (any Error)?

    public init(_ description: String, failedRank: Int? = nil, cause: (any Error)? = nil) {
        self.description = description
        self.failedRank = failedRank
        self.cause = cause
    }
}

extension Communicator {
    /// The reduction of one value over all ranks.
    public func allReduce<T: CommunicationScalar>(_ value: T, op: ReduceOp) throws -> T {
        var v = value
        try withUnsafeMutablePointer(to: &v) { try allReduce(UnsafeMutableBufferPointer(start: $0, count: 1), op: op) }
        return v
    }

    /// The chunk of `count` elements that reduce-scatter and all-gather give `rank`: `size`
    /// contiguous chunks in rank order, the first `count % size` of them one element longer.
    public func chunk(rank: Int, count: Int) -> Range<Int> {
        let base = count / size, extra = count % size
        let start = rank * base + min(rank, extra)
        return start ..< start + base + (rank < extra ? 1 : 0)
    }

    func checkPeer(_ peer: Int, operation: String) throws {
        guard (0 ..< size).contains(peer) else {
            throw CommunicatorError("\(operation): rank \(peer) is outside the group of \(size)")
        }
    }
}

/// `target[i] = op(target[i], source[i])` for `count` elements, in a loop compiled for the concrete
/// scalar type (a generic loop runs through witness tables, many times slower).
func accumulate<T: CommunicationScalar>(_ target: UnsafeMutablePointer<T>, _ source: UnsafePointer<T>, count: Int, op: ReduceOp) {
    let t = UnsafeMutableRawPointer(target), s = UnsafeRawPointer(source)
    switch T.kind {
    case .float32: accumulate(t.assumingMemoryBound(to: Float.self), s.assumingMemoryBound(to: Float.self), count, op)
    case .float64: accumulate(t.assumingMemoryBound(to: Double.self), s.assumingMemoryBound(to: Double.self), count, op)
    case .int32: accumulate(t.assumingMemoryBound(to: Int32.self), s.assumingMemoryBound(to: Int32.self), count, op)
    case .uint16: accumulate(t.assumingMemoryBound(to: UInt16.self), s.assumingMemoryBound(to: UInt16.self), count, op)
    }
}

private func accumulate(_ t: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ count: Int, _ op: ReduceOp) {
    switch op {
    case .sum: for i in 0 ..< count { t[i] += s[i] }
    case .max: for i in 0 ..< count where s[i] > t[i] { t[i] = s[i] }
    }
}

private func accumulate(_ t: UnsafeMutablePointer<Double>, _ s: UnsafePointer<Double>, _ count: Int, _ op: ReduceOp) {
    switch op {
    case .sum: for i in 0 ..< count { t[i] += s[i] }
    case .max: for i in 0 ..< count where s[i] > t[i] { t[i] = s[i] }
    }
}

private func accumulate(_ t: UnsafeMutablePointer<Int32>, _ s: UnsafePointer<Int32>, _ count: Int, _ op: ReduceOp) {
    switch op {
    case .sum: for i in 0 ..< count { t[i] &+= s[i] }
    case .max: for i in 0 ..< count where s[i] > t[i] { t[i] = s[i] }
    }
}

private func accumulate(_ t: UnsafeMutablePointer<UInt16>, _ s: UnsafePointer<UInt16>, _ count: Int, _ op: ReduceOp) {
    switch op {
    case .sum: for i in 0 ..< count { t[i] &+= s[i] }
    case .max: for i in 0 ..< count where s[i] > t[i] { t[i] = s[i] }
    }
}

/// Copies `count` elements as bytes (memcpy; the regions must not overlap).
func copyElements<T: CommunicationScalar>(_ target: UnsafeMutablePointer<T>, _ source: UnsafePointer<T>, count: Int) {
    UnsafeMutableRawPointer(target).copyMemory(from: source, byteCount: count * MemoryLayout<T>.stride)
}
