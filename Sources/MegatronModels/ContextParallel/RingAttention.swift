import Foundation
import MegatronCore
import MegatronParallel

/// Megatron's context-parallel attention core (its p2p "ring attention"): rank r's rows of every
/// sequence are chunks r and 2·cp − 1 − r (`ContextParallel`), and the keys and values of each rank
/// go round the ring of context-parallel ranks. At step i rank r holds rank (r − i)'s and attends each
/// of its query chunks to each held key/value chunk that comes before it in the sequence (all of its
/// keys) or is the same chunk (causal), then merges the partial softmaxes by their per-row
/// log-sum-exp:
///
///     lse = log(e^lse₁ + e^lse₂),   out = e^(lse₁ − lse)·out₁ + e^(lse₂ − lse)·out₂
///
/// The backward sends the held keys and values round again with their gradient, which every
/// rank adds its pairs' part to; one step more brings each rank its own. A pair's probabilities come
/// from the final log-sum-exp, and the kernel's correction term rowsum(dO ∘ O) from the final
/// output, so the pairs' gradients add up to the whole attention's. No attention dropout.
public struct RingAttention {
    public let contextParallel: ContextParallel
    /// This rank's heads over its rows: `batch` sequences of two chunks each.
    public let layout: AttentionLayout
    public let scale: Float
    public let device: CPUDevice

    public init(contextParallel: ContextParallel, layout: AttentionLayout, scale: Float, device: CPUDevice) {
        self.contextParallel = contextParallel
        self.layout = layout
        self.scale = scale
        self.device = device
    }

    /// Tokens of one chunk.
    private var chunk: Int { layout.sequenceLength / 2 }
    /// The heads over one chunk of each sequence: the layout of a pair.
    private var pairLayout: AttentionLayout { layout.resized(sequenceLength: chunk) }

    /// The pairs of one of this rank's query chunks and one of rank `owner`'s key/value chunks that
    /// contribute (by their index among the two), and whether the pair is a chunk with itself (causal).
    private func pairs(withChunksOf owner: Int) -> [(query: Int, key: Int, causal: Bool)] {
        let mine = contextParallel.chunks(ofRank: contextParallel.rank), theirs = contextParallel.chunks(ofRank: owner)
        return mine.indices.flatMap { q in theirs.indices.filter { theirs[$0] <= mine[q] }.map { (q, $0, theirs[$0] == mine[q]) } }
    }

    /// qkv [T, rowWidth] of this rank's rows → (context [T, heads·d], lse [batch, heads, 2·chunk]).
    public func forward(qkv: Tensor) throws -> (context: Tensor, lse: Tensor) {
        let l = layout, cp = contextParallel.size, r = contextParallel.rank
        let context = try Tensor(shape: [l.tokens, l.heads * l.headDim], on: device)
        let lse = try Tensor(shape: [l.batch, l.heads, l.sequenceLength], on: device, zeroed: false)
        lse.floats.update(repeating: -.infinity, count: lse.count)
        var held = try keyValues(of: qkv)
        for step in 0 ..< cp {
            let heldChunks = try (0 ..< 2).map { try rows(of: held, chunk: $0) }
            for pair in pairs(withChunksOf: (r - step + cp) % cp) {
                let (partial, partialLSE) = try Attention.forward(qkv: combine(queries: qkv, chunk: pair.query, keyValues: heldChunks[pair.key]),
                                                                  layout: pairLayout, scale: scale, causal: pair.causal, on: device)
                merge(partial, partialLSE, intoChunk: pair.query, context: context, lse: lse)
            }
            if step < cp - 1 { held = try passOn([held], tags: [MessageTag.contextParallel])[0] }
        }
        return (context, lse)
    }

    /// ∂qkv [T, rowWidth] of this rank's rows from ∂context, given the forward's qkv, context and lse.
    public func backward(_ gradContext: Tensor, qkv: Tensor, context: Tensor, lse: Tensor) throws -> Tensor {
        let cp = contextParallel.size, r = contextParallel.rank
        let gradQKV = try Tensor(shape: qkv.shape, on: device)
        var held = try keyValues(of: qkv), heldGrad = try Tensor(shape: held.shape, on: device)
        // Each query chunk's rows of the context, its gradient and the log-sum-exp, which every pair reads.
        let contexts = try (0 ..< 2).map { try rows(of: context, chunk: $0) }
        let gradContexts = try (0 ..< 2).map { try rows(of: gradContext, chunk: $0) }, lses = try (0 ..< 2).map { try lseRows(lse, chunk: $0) }
        for step in 0 ..< cp {
            let heldChunks = try (0 ..< 2).map { try rows(of: held, chunk: $0) }
            for pair in pairs(withChunksOf: (r - step + cp) % cp) {
                let g = try Attention.backward(gradContexts[pair.query],
                                               qkv: combine(queries: qkv, chunk: pair.query, keyValues: heldChunks[pair.key]),
                                               context: contexts[pair.query], lse: lses[pair.query],
                                               layout: pairLayout, scale: scale, causal: pair.causal, on: device)
                add(g, columns: queryColumns, to: queryColumns, of: gradQKV, chunk: pair.query)
                add(g, columns: keyValueColumns, to: packedColumns, of: heldGrad, chunk: pair.key)
            }
            if step < cp - 1 {
                let passed = try passOn([held, heldGrad], tags: [MessageTag.contextParallel, MessageTag.contextParallelGradient])
                (held, heldGrad) = (passed[0], passed[1])
            } else if cp > 1 {
                heldGrad = try passOn([heldGrad], tags: [MessageTag.contextParallelGradient])[0]
            }
        }
        // heldGrad is now this rank's keys' and values' gradient, gathered from every rank.
        for c in 0 ..< 2 { add(try rows(of: heldGrad, chunk: c), columns: packedColumns, to: keyValueColumns, of: gradQKV, chunk: c) }
        return gradQKV
    }

    // MARK: chunks and columns

    /// Column runs of the query heads, and of the key and value heads, in a fused QKV row; and of
    /// the key and value heads packed side by side (`keyValues`), in that order.
    private var queryColumns: [Int] { layout.queryOffsets }
    private var keyValueColumns: [Int] { layout.keyOffsets + layout.valueOffsets }
    private var packedColumns: [Int] { keyValueColumns.indices.map { $0 * layout.headDim } }

    /// Rows of local chunk `c` (0 or 1) of every sequence of `t` [batch·2·chunk, n] → [batch·chunk, n].
    private func rows(of t: Tensor, chunk c: Int) throws -> Tensor {
        let n = t.columns, out = try Tensor(shape: [layout.batch * chunk, n], on: device, zeroed: false)
        for b in 0 ..< layout.batch {
            (out.floats + b * chunk * n).update(from: t.floats + (b * layout.sequenceLength + c * chunk) * n, count: chunk * n)
        }
        return out
    }

    /// The log-sum-exp of local chunk `c`: [batch, heads, 2·chunk] → [batch, heads, chunk].
    private func lseRows(_ lse: Tensor, chunk c: Int) throws -> Tensor {
        let out = try Tensor(shape: [layout.batch, layout.heads, chunk], on: device, zeroed: false)
        for job in 0 ..< layout.batch * layout.heads {
            (out.floats + job * chunk).update(from: lse.floats + job * layout.sequenceLength + c * chunk, count: chunk)
        }
        return out
    }

    /// The key and value heads of every row of `qkv`, packed [T, 2·groups·d]: what goes round the ring.
    private func keyValues(of qkv: Tensor) throws -> Tensor {
        let d = layout.headDim, columns = keyValueColumns, width = layout.rowWidth
        let out = try Tensor(shape: [qkv.rows, columns.count * d], on: device, zeroed: false)
        for row in 0 ..< qkv.rows {
            for (i, offset) in columns.enumerated() {
                (out.floats + (row * columns.count + i) * d).update(from: qkv.floats + row * width + offset, count: d)
            }
        }
        return out
    }

    /// A pair's fused QKV [batch·chunk, rowWidth]: the queries of chunk `q` of `queries`, the keys and
    /// values of `keyValues` (one chunk's, packed: [batch·chunk, 2·groups·d]).
    private func combine(queries: Tensor, chunk q: Int, keyValues held: Tensor) throws -> Tensor {
        let pair = try rows(of: queries, chunk: q)
        let d = layout.headDim, width = layout.rowWidth, columns = keyValueColumns
        for row in 0 ..< pair.rows {
            for (i, offset) in columns.enumerated() {
                (pair.floats + row * width + offset).update(from: held.floats + (row * columns.count + i) * d, count: d)
            }
        }
        return pair
    }

    /// Adds the head-wide column runs at `columns` of `g` [batch·chunk, n] into those at `targetColumns`
    /// of local chunk `c` of `target` [batch·2·chunk, m].
    private func add(_ g: Tensor, columns: [Int], to targetColumns: [Int], of target: Tensor, chunk c: Int) {
        let d = layout.headDim, n = g.columns, m = target.columns
        for b in 0 ..< layout.batch {
            for t in 0 ..< chunk {
                let source = g.floats + (b * chunk + t) * n, row = target.floats + (b * layout.sequenceLength + c * chunk + t) * m
                for (from, to) in zip(columns, targetColumns) {
                    for i in 0 ..< d { row[to + i] += source[from + i] }
                }
            }
        }
    }

    /// Merges a pair's softmax (`partial` [batch·chunk, heads·d], `partialLSE` [batch, heads, chunk])
    /// into local chunk `c` of the running `context` and `lse`.
    private func merge(_ partial: Tensor, _ partialLSE: Tensor, intoChunk c: Int, context: Tensor, lse: Tensor) {
        let l = layout, d = l.headDim, width = l.heads * d
        for b in 0 ..< l.batch {
            for h in 0 ..< l.heads {
                for t in 0 ..< chunk {
                    let old = lse.floats + (b * l.heads + h) * l.sequenceLength + c * chunk + t
                    let new = partialLSE.floats[(b * l.heads + h) * chunk + t]
                    let top = max(old.pointee, new)
                    let merged = top + log(exp(old.pointee - top) + exp(new - top))
                    let keep = exp(old.pointee - merged), take = exp(new - merged)
                    let out = context.floats + (b * l.sequenceLength + c * chunk + t) * width + h * d
                    let part = partial.floats + (b * chunk + t) * width + h * d
                    for i in 0 ..< d { out[i] = keep * out[i] + take * part[i] }
                    old.pointee = merged
                }
            }
        }
    }

    /// Sends `tensors` to the next rank of the ring and receives the previous rank's, all at once.
    private func passOn(_ tensors: [Tensor], tags: [Int]) throws -> [Tensor] {
        let size = contextParallel.size, rank = contextParallel.rank
        let received = try tensors.map { try Tensor(shape: $0.shape, on: device, zeroed: false) }
        var transfers: [PeerTransfer<Float>] = []
        for (i, t) in tensors.enumerated() {
            transfers.append(.send(UnsafeBufferPointer(start: t.floats, count: t.count), to: (rank + 1) % size, tag: tags[i]))
            transfers.append(.receive(UnsafeMutableBufferPointer(start: received[i].floats, count: received[i].count),
                                      from: (rank + size - 1) % size, tag: tags[i]))
        }
        try contextParallel.group.exchange(transfers)
        return received
    }
}
