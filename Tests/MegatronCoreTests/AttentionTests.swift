import Foundation
import MegatronCore
import Testing

/// Naive attention in double: materialises the whole score matrix, applies the causal mask (and
/// the document and padding masks) with −inf, an optional additive bias (head, i, j), softmax,
/// optional multipliers (dropout) and ·V. qkv rows use the layout's column offsets.
func referenceAttention(_ qkv: [Double], _ l: AttentionLayout, scale: Double, causal: Bool,
                        firstKeys: [Int32]? = nil, keyCounts: [Int]? = nil, bias: ((Int, Int, Int) -> Double)? = nil,
                        multipliers: ((Int, Int, Int) -> Double)? = nil) -> [Double] {
    let s = l.sequenceLength, d = l.headDim, width = l.heads * d
    var out = [Double](repeating: 0, count: l.tokens * width)
    for b in 0 ..< l.batch {
        for h in 0 ..< l.heads {
            let g = h / (l.heads / l.groups)
            for i in 0 ..< s {
                let row = (b * s + i) * l.rowWidth
                var scores = (0 ..< s).map { j -> Double in
                    if causal && j > i { return -.infinity }
                    if let firstKeys, j < firstKeys[b * s + i] { return -.infinity }
                    if let keyCounts, j >= keyCounts[b] { return -.infinity }
                    let col = (b * s + j) * l.rowWidth
                    return scale * (0 ..< d).map { qkv[row + l.queryOffsets[h] + $0] * qkv[col + l.keyOffsets[g] + $0] }.reduce(0, +)
                        + (bias?(h, i, j) ?? 0)
                }
                let m = scores.max()!
                scores = scores.map { exp($0 - m) }
                let z = scores.reduce(0, +)
                for j in 0 ..< s {
                    let p = scores[j] / z * (multipliers?(b * l.heads + h, i, j) ?? 1)
                    let col = (b * s + j) * l.rowWidth
                    for c in 0 ..< d { out[(b * s + i) * width + h * d + c] += p * qkv[col + l.valueOffsets[g] + c] }
                }
            }
        }
    }
    return out
}

@Suite struct AttentionTests {
    @Test(arguments: [(heads: 4, groups: 4, causal: true), (heads: 4, groups: 2, causal: true),
                      (heads: 2, groups: 1, causal: false)])
    func forwardAndBackwardMatchReference(heads: Int, groups: Int, causal: Bool) throws {
        var rng = TestRandom(seed: 40)
        let layout = try AttentionLayout.megatronFusedQKV(batch: 2, sequenceLength: 7, heads: heads, groups: groups, headDim: 3)
        let qkv = rng.floats(layout.tokens * layout.rowWidth, scale: 2)
        let w = rng.floats(layout.tokens * heads * 3)
        let scale = 1 / Float(3).squareRoot()
        // Block rows 3 with 7 tokens: full panels, a partial one, and the diagonal in every panel.
        let (context, lse) = try Attention.forward(qkv: tensor(qkv, [layout.tokens, layout.rowWidth]), layout: layout,
                                                   scale: scale, causal: causal, blockRows: 3, on: serial)
        let expected = referenceAttention(qkv.doubles, layout, scale: Double(scale), causal: causal)
        expectClose(context.toFloatArray(), expected, tolerance: 1e-6, "context")
        let grad = try Attention.backward(tensor(w, context.shape), qkv: tensor(qkv, [layout.tokens, layout.rowWidth]),
                                          context: context, lse: lse, layout: layout, scale: scale, causal: causal,
                                          blockRows: 3, on: serial)
        let fd = finiteDifferences(qkv.doubles) {
            weightedSum(referenceAttention($0, layout, scale: Double(scale), causal: causal), w)
        }
        expectClose(grad.toFloatArray(), fd, tolerance: 1e-5, "dqkv")
    }

    /// Shapes that exercise the kernel's 6 × 16 tiles: 50 keys (three full 16-key blocks and a
    /// partial one), head dimension 24 (one full 16-column block and a partial one), panels of 20
    /// query rows (not a multiple of 6, so every panel ends in a partial row tile, and diagonal
    /// tiles straddle the causal boundary). The backward is checked by directional derivatives of
    /// the double reference along random directions, as a full finite-difference Jacobian would be slow.
    @Test(arguments: [true, false])
    func tiledShapesMatchReference(causal: Bool) throws {
        var rng = TestRandom(seed: 43)
        let layout = try AttentionLayout.megatronFusedQKV(batch: 1, sequenceLength: 50, heads: 2, groups: 1, headDim: 24)
        let qkv = rng.floats(layout.tokens * layout.rowWidth, scale: 1.5), w = rng.floats(layout.tokens * 48)
        let x = tensor(qkv, [layout.tokens, layout.rowWidth])
        let (context, lse) = try Attention.forward(qkv: x, layout: layout, scale: 0.3, causal: causal, blockRows: 20, on: serial)
        let reference = { (q: [Double]) in referenceAttention(q, layout, scale: 0.3, causal: causal) }
        expectClose(context.toFloatArray(), reference(qkv.doubles), tolerance: 1e-6, "context")
        let grad = try Attention.backward(tensor(w, context.shape), qkv: x, context: context, lse: lse, layout: layout,
                                          scale: 0.3, causal: causal, blockRows: 20, on: serial).toFloatArray().doubles
        let gradNorm = grad.map { $0 * $0 }.reduce(0, +).squareRoot()
        for _ in 0 ..< 3 {
            let v = rng.floats(qkv.count).doubles, h = 1e-6
            let plus = zip(qkv.doubles, v).map { $0 + h * $1 }, minus = zip(qkv.doubles, v).map { $0 - h * $1 }
            let directional = (weightedSum(reference(plus), w) - weightedSum(reference(minus), w)) / (2 * h)
            let predicted = zip(grad, v).map { $0 * $1 }.reduce(0, +)
            let vNorm = v.map { $0 * $0 }.reduce(0, +).squareRoot()
            #expect(abs(predicted - directional) <= 1e-5 * gradNorm * vNorm, "⟨dqkv, v⟩ \(predicted) vs \(directional)")
        }
    }

    @Test func dropoutForwardAndBackwardMatchReference() throws {
        var rng = TestRandom(seed: 41)
        let layout = try AttentionLayout.megatronFusedQKV(batch: 1, sequenceLength: 9, heads: 2, groups: 2, headDim: 4)
        let (s, p) = (9, Float(0.2)), stream = PhiloxStream(seed: 77, stream: 5)
        let qkv = rng.floats(layout.tokens * layout.rowWidth), w = rng.floats(layout.tokens * 8)
        // The dropout multipliers are those of Dropout over the flat index (head·s + i)·s + j.
        let ones = tensor([Float](repeating: 1, count: 2 * s * s), [2 * s * s])
        let mask = try Dropout.apply(ones, probability: p, rng: stream, on: serial).toFloatArray()
        let multipliers: (Int, Int, Int) -> Double = { head, i, j in Double(mask[(head * s + i) * s + j]) }
        #expect(mask.contains(0) && mask.contains { $0 > 1 })
        let (context, lse) = try Attention.forward(qkv: tensor(qkv, [9, layout.rowWidth]), layout: layout, scale: 0.5,
                                                   dropout: p, rng: stream, blockRows: 4, on: serial)
        expectClose(context.toFloatArray(), referenceAttention(qkv.doubles, layout, scale: 0.5, causal: true, multipliers: multipliers),
                    tolerance: 1e-6, "context with dropout")
        let grad = try Attention.backward(tensor(w, context.shape), qkv: tensor(qkv, [9, layout.rowWidth]), context: context,
                                          lse: lse, layout: layout, scale: 0.5, dropout: p, rng: stream, blockRows: 4, on: serial)
        let fd = finiteDifferences(qkv.doubles) {
            weightedSum(referenceAttention($0, layout, scale: 0.5, causal: true, multipliers: multipliers), w)
        }
        expectClose(grad.toFloatArray(), fd, tolerance: 1e-5, "dqkv with dropout")
    }

    /// Attention within documents (--reset-attention-mask), with dropout: row i of a sequence sees
    /// keys firstKeys[i] ... i only.
    @Test func documentMaskingForwardAndBackwardMatchReference() throws {
        var rng = TestRandom(seed: 42)
        let layout = try AttentionLayout.megatronFusedQKV(batch: 2, sequenceLength: 9, heads: 2, groups: 1, headDim: 3)
        let s = 9, p = Float(0.1), stream = PhiloxStream(seed: 3, stream: 9)
        // Sequence 0: documents [0, 4), [4, 5), [5, 9); sequence 1: one document.
        let firstKeys: [Int32] = [0, 0, 0, 0, 4, 5, 5, 5, 5] + Array(repeating: 0, count: 9)
        let qkv = rng.floats(layout.tokens * layout.rowWidth, scale: 2), w = rng.floats(layout.tokens * 6)
        let ones = tensor([Float](repeating: 1, count: 4 * s * s), [4 * s * s])
        let mask = try Dropout.apply(ones, probability: p, rng: stream, on: serial).toFloatArray()
        let multipliers: (Int, Int, Int) -> Double = { head, i, j in Double(mask[(head * s + i) * s + j]) }
        let keys = try Tensor(int32s: firstKeys, shape: [18], on: serial)
        let x = tensor(qkv, [layout.tokens, layout.rowWidth])
        let (context, lse) = try Attention.forward(qkv: x, layout: layout, scale: 0.5, firstKeys: keys, dropout: p, rng: stream,
                                                   blockRows: 4, on: serial)
        let reference = { (q: [Double]) in
            referenceAttention(q, layout, scale: 0.5, causal: true, firstKeys: firstKeys, multipliers: multipliers)
        }
        expectClose(context.toFloatArray(), reference(qkv.doubles), tolerance: 1e-6, "context within documents")
        let grad = try Attention.backward(tensor(w, context.shape), qkv: x, context: context, lse: lse, layout: layout, scale: 0.5,
                                          firstKeys: keys, dropout: p, rng: stream, blockRows: 4, on: serial)
        expectClose(grad.toFloatArray(), finiteDifferences(qkv.doubles) { weightedSum(reference($0), w) }, tolerance: 1e-5,
                    "dqkv within documents")
        #expect(throws: TensorError.self) {
            try Attention.forward(qkv: x, layout: layout, scale: 0.5, firstKeys: Tensor(int32s: Array(repeating: 1, count: 18), shape: [18], on: serial),
                                  on: serial)
        }
    }

    /// Bidirectional attention over padded sequences (BERT's padding mask), with dropout: every row
    /// of sequence b, its padding's included, sees keys 0 ..< keyCounts[b]; the padding's keys get
    /// no gradient. Panels of 4 rows over 9 keys, so a sequence's count ends inside a panel and a tile.
    @Test(arguments: [false, true])
    func paddingMaskForwardAndBackwardMatchReference(causal: Bool) throws {
        var rng = TestRandom(seed: 44)
        let layout = try AttentionLayout.megatronFusedQKV(batch: 3, sequenceLength: 9, heads: 2, groups: 1, headDim: 3)
        let s = 9, p = Float(0.1), stream = PhiloxStream(seed: 5, stream: 2), keyCounts = [9, 5, 1]
        let qkv = rng.floats(layout.tokens * layout.rowWidth, scale: 2), w = rng.floats(layout.tokens * 6)
        let ones = tensor([Float](repeating: 1, count: 6 * s * s), [6 * s * s])
        let mask = try Dropout.apply(ones, probability: p, rng: stream, on: serial).toFloatArray()
        let multipliers: (Int, Int, Int) -> Double = { head, i, j in Double(mask[(head * s + i) * s + j]) }
        let x = tensor(qkv, [layout.tokens, layout.rowWidth])
        let (context, lse) = try Attention.forward(qkv: x, layout: layout, scale: 0.5, causal: causal, keyCounts: keyCounts,
                                                   dropout: p, rng: stream, blockRows: 4, on: serial)
        let reference = { (q: [Double]) in
            referenceAttention(q, layout, scale: 0.5, causal: causal, keyCounts: keyCounts, multipliers: multipliers)
        }
        expectClose(context.toFloatArray(), reference(qkv.doubles), tolerance: 1e-6, "context over padded sequences")
        let grad = try Attention.backward(tensor(w, context.shape), qkv: x, context: context, lse: lse, layout: layout, scale: 0.5,
                                          causal: causal, keyCounts: keyCounts, dropout: p, rng: stream, blockRows: 4, on: serial)
        expectClose(grad.toFloatArray(), finiteDifferences(qkv.doubles) { weightedSum(reference($0), w) }, tolerance: 1e-5,
                    "dqkv over padded sequences")
        #expect(throws: TensorError.self) {
            try Attention.forward(qkv: x, layout: layout, scale: 0.5, causal: false, keyCounts: [9, 0, 1], on: serial)
        }
    }

    /// Every (sequence, head) is a job of its own and grouped-query gradients are summed in head
    /// order, so one thread and two give the same bits, with as many groups as heads, fewer, or one.
    @Test(arguments: [4, 2, 1])
    func threadsAgreeBitwise(groups: Int) throws {
        var rng = TestRandom(seed: 42)
        let layout = try AttentionLayout.megatronFusedQKV(batch: 2, sequenceLength: 64, heads: 4, groups: groups, headDim: 16)
        let qkv = rng.floats(layout.tokens * layout.rowWidth), w = rng.floats(layout.tokens * 64)
        var results: [[Float]] = []
        for device in [serial, parallel] {
            let x = tensor(qkv, [layout.tokens, layout.rowWidth], on: device)
            let (context, lse) = try Attention.forward(qkv: x, layout: layout, scale: 0.25, blockRows: 16, on: device)
            let grad = try Attention.backward(tensor(w, context.shape, on: device), qkv: x, context: context, lse: lse,
                                              layout: layout, scale: 0.25, blockRows: 16, on: device)
            results.append(context.toFloatArray() + grad.toFloatArray())
        }
        #expect(results[1] == results[0], "2 threads vs 1")
    }

    @Test func megatronLayoutInterleavesGroups() throws {
        let l = try AttentionLayout.megatronFusedQKV(batch: 1, sequenceLength: 1, heads: 4, groups: 2, headDim: 8)
        #expect(l.rowWidth == 64)
        #expect(l.queryOffsets == [0, 8, 32, 40])
        #expect(l.keyOffsets == [16, 48])
        #expect(l.valueOffsets == [24, 56])
        #expect(throws: TensorError.self) {
            try AttentionLayout.megatronFusedQKV(batch: 1, sequenceLength: 1, heads: 6, groups: 4, headDim: 8)
        }
    }

    @Test func panelsOfNoRowsAreAnError() throws {
        let layout = try AttentionLayout.megatronFusedQKV(batch: 1, sequenceLength: 4, heads: 1, groups: 1, headDim: 2)
        let x = tensor([Float](repeating: 0.5, count: 4 * layout.rowWidth), [4, layout.rowWidth])
        #expect(throws: TensorError.self) { try Attention.forward(qkv: x, layout: layout, scale: 1, blockRows: 0, on: serial) }
    }
}
