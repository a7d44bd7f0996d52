import MegatronCore
import MegatronParallel

/// Megatron's context parallelism over `group` (cp ranks): each sequence of s tokens splits into
/// 2·cp chunks of s/(2·cp), and rank r holds chunks r and 2·cp − 1 − r of every sequence, so each
/// rank gets an equal share of the causal attention's work (Megatron's load balancing: an early
/// chunk, which attends to few keys, with a late one, which attends to many). A rank's rows are its
/// two chunks of the first sequence, then of the second, and so on, with their tokens' positions in
/// the whole sequence. Every layer but attention computes on these rows alone; attention passes the
/// keys and values round the ring of ranks (`RingAttention`). The ranks share the parameters, and
/// data parallelism sums their gradients.
public struct ContextParallel: Sendable {
    public let group: any Communicator

    public init(group: any Communicator) { self.group = group }

    public var size: Int { group.size }
    public var rank: Int { group.rank }

    /// Throws, naming the flag, unless `size` context-parallel ranks can split sequences of
    /// `sequenceLength` tokens (nil: not known yet) into 2·size equal chunks and run their attention:
    /// the ring has no attention dropout and does not keep attention within documents.
    public static func check(size: Int, sequenceLength: Int?, attentionDropout: Float, resetsAttentionMask: Bool) throws {
        guard size > 1 else { return }
        let flag = "--context-parallel-size \(size)"
        if let s = sequenceLength, s % (2 * size) != 0 {
            throw ConfigError(flag: "--context-parallel-size", "\(flag): --seq-length \(s) does not split into \(2 * size) equal chunks "
                              + "(two per context-parallel rank)")
        }
        guard attentionDropout == 0 else {
            throw ConfigError(flag: "--attention-dropout", "\(flag): the ring attention has no attention dropout here; set --attention-dropout 0")
        }
        guard !resetsAttentionMask else {
            throw ConfigError(flag: "--reset-attention-mask", "\(flag): --reset-attention-mask does not combine with context parallelism here")
        }
    }

    /// The chunks (of 2·cp per sequence) that rank `rank` holds, in its row order.
    func chunks(ofRank rank: Int) -> [Int] { [rank, 2 * size - 1 - rank] }

    /// Where `rows` of this rank's rows (of `batch` sequences of `localSequenceLength` tokens: two
    /// chunks each) lie in the micro-batch of whole sequences, as runs of rows.
    func wholeRows(_ rows: Range<Int>, batch: Int, localSequenceLength s: Int) -> DropoutRows {
        let chunk = s / 2, whole = s * size
        var runs: [DropoutRows.Run] = []
        for b in 0 ..< batch {
            for (k, c) in chunks(ofRank: rank).enumerated() {
                let local = b * s + k * chunk, lower = max(local, rows.lowerBound), upper = min(local + chunk, rows.upperBound)
                guard lower < upper else { continue }
                runs.append(DropoutRows.Run(local: lower - rows.lowerBound, whole: b * whole + c * chunk + lower - local, count: upper - lower))
            }
        }
        return DropoutRows(runs)
    }

    /// This rank's rows of `whole`, a micro-batch of whole sequences, whose length must split into
    /// 2·cp chunks.
    func localRows(of whole: MicroBatch, on device: CPUDevice) throws -> MicroBatch {
        let s = whole.sequenceLength, chunk = s / (2 * size)
        try Self.check(size: size, sequenceLength: s, attentionDropout: 0, resetsAttentionMask: whole.attentionFirstKeys != nil)
        var rows: [Int] = []
        for b in 0 ..< whole.batch {
            for c in chunks(ofRank: rank) { rows += (b * s + c * chunk) ..< (b * s + (c + 1) * chunk) }
        }
        func select(_ t: Tensor) throws -> Tensor {
            if t.dtype == .int32 {
                let values = UnsafeBufferPointer(start: t.int32s, count: t.count)
                return try Tensor(int32s: rows.map { values[$0] }, shape: [rows.count], on: device)
            }
            let values = UnsafeBufferPointer(start: t.floats, count: t.count)
            return try Tensor(rows.map { values[$0] }, shape: [rows.count], on: device)
        }
        return MicroBatch(tokens: try select(whole.tokens), labels: try select(whole.labels), lossMask: try select(whole.lossMask),
                          positions: try select(whole.positions), attentionFirstKeys: nil, batch: whole.batch,
                          sequenceLength: s / size)
    }
}
