import Foundation
import MegatronCore
import Testing

/// The attention kernel's T5 extensions against double-precision references: an additive bias
/// from a per-head table indexed by a bucket per (query, key) — self-attention, causal and not,
/// with padding and dropout — and encoder–decoder attention, queries and keys of different
/// lengths, with the encoder's padding, a bias and dropout. Gradients (inputs and bias table) by
/// central finite differences.
@Suite struct AttentionBiasTests {
    /// Buckets for `queries` × `keys` cycling through `count` values.
    static func buckets(_ queries: Int, _ keys: Int, count: Int) -> [Int32] {
        (0 ..< queries * keys).map { Int32(($0 * 7 + $0 / keys) % count) }
    }

    @Test(arguments: [true, false])
    func selfAttentionWithABias(causal: Bool) throws {
        var rng = TestRandom(seed: 60)
        let layout = try AttentionLayout.megatronFusedQKV(batch: 2, sequenceLength: 7, heads: 2, groups: 2, headDim: 3)
        let s = 7, n = 5, p = Float(0.1), stream = PhiloxStream(seed: 3, stream: 1), keyCounts = causal ? nil : [7, 4]
        let qkv = rng.floats(layout.tokens * layout.rowWidth, scale: 2), w = rng.floats(layout.tokens * 6)
        let table = rng.floats(2 * n, scale: 2), buckets = Self.buckets(s, s, count: n)
        let ones = tensor([Float](repeating: 1, count: 4 * s * s), [4 * s * s])
        let mask = try Dropout.apply(ones, probability: p, rng: stream, on: serial).toFloatArray()
        let multipliers: (Int, Int, Int) -> Double = { head, i, j in Double(mask[(head * s + i) * s + j]) }
        func reference(_ x: [Double], _ t: [Double]) -> [Double] {
            referenceAttention(x, layout, scale: 0.5, causal: causal, keyCounts: keyCounts,
                               bias: { h, i, j in t[h * n + Int(buckets[i * s + j])] }, multipliers: multipliers)
        }
        let bias = Attention.Bias(table: tensor(table, [2, n]), buckets: try Tensor(int32s: buckets, shape: [s, s], on: serial))
        let x = tensor(qkv, [layout.tokens, layout.rowWidth])
        let (context, lse) = try Attention.forward(qkv: x, layout: layout, scale: 0.5, causal: causal, keyCounts: keyCounts, bias: bias,
                                                   dropout: p, rng: stream, blockRows: 3, on: serial)
        expectClose(context.toFloatArray(), reference(qkv.doubles, table.doubles), tolerance: 1e-6, "context with a bias")
        let gradTable = tensor([Float](repeating: 0, count: 2 * n), [2, n])
        let grad = try Attention.backward(tensor(w, context.shape), qkv: x, context: context, lse: lse, layout: layout, scale: 0.5,
                                          causal: causal, keyCounts: keyCounts, bias: bias, biasGradient: gradTable, dropout: p,
                                          rng: stream, blockRows: 3, on: serial)
        expectClose(grad.toFloatArray(), finiteDifferences(qkv.doubles) { weightedSum(reference($0, table.doubles), w) },
                    tolerance: 1e-5, "dqkv with a bias")
        expectClose(gradTable.toFloatArray(), finiteDifferences(table.doubles) { weightedSum(reference(qkv.doubles, $0), w) },
                    tolerance: 1e-5, "bias table gradient")
    }

    @Test func crossAttentionWithPaddingBiasAndDropout() throws {
        var rng = TestRandom(seed: 61)
        let l = CrossAttentionLayout(batch: 2, queries: 5, keys: 9, heads: 2, headDim: 3)
        let n = 4, p = Float(0.15), stream = PhiloxStream(seed: 9, stream: 4), keyCounts = [9, 6], d = 3, width = 6
        let q = rng.floats(l.batch * l.queries * width, scale: 2), kv = rng.floats(l.batch * l.keys * 2 * width, scale: 2)
        let w = rng.floats(l.batch * l.queries * width), table = rng.floats(2 * n), buckets = Self.buckets(5, 9, count: n)
        let ones = tensor([Float](repeating: 1, count: 4 * 5 * 9), [4 * 5 * 9])
        let mask = try Dropout.apply(ones, probability: p, rng: stream, on: serial).toFloatArray()
        /// softmax(0.5·q·kᵀ + bias, over each sequence's keys) · v, with the dropout multipliers.
        func reference(_ q: [Double], _ kv: [Double], _ t: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: q.count)
            for b in 0 ..< 2 {
                for h in 0 ..< 2 {
                    for i in 0 ..< 5 {
                        let query = (b * 5 + i) * width + h * d
                        var z = (0 ..< keyCounts[b]).map { j -> Double in
                            let key = (b * 9 + j) * 2 * width + 2 * h * d
                            return 0.5 * (0 ..< d).map { q[query + $0] * kv[key + $0] }.reduce(0, +) + t[h * n + Int(buckets[i * 9 + j])]
                        }
                        let m = z.max()!
                        z = z.map { exp($0 - m) }
                        let sum = z.reduce(0, +)
                        for j in 0 ..< keyCounts[b] {
                            let weight = z[j] / sum * Double(mask[((b * 2 + h) * 5 + i) * 9 + j])
                            for c in 0 ..< d { out[query + c] += weight * kv[(b * 9 + j) * 2 * width + 2 * h * d + d + c] }
                        }
                    }
                }
            }
            return out
        }
        let bias = Attention.Bias(table: tensor(table, [2, n]), buckets: try Tensor(int32s: buckets, shape: [5, 9], on: serial))
        let (qt, kvt) = (tensor(q, [10, width]), tensor(kv, [18, 2 * width]))
        let (context, lse) = try Attention.forward(query: qt, keyValue: kvt, layout: l, scale: 0.5, keyCounts: keyCounts, bias: bias,
                                                   dropout: p, rng: stream, blockRows: 2, on: serial)
        expectClose(context.toFloatArray(), reference(q.doubles, kv.doubles, table.doubles), tolerance: 1e-6, "cross-attention context")
        let gradTable = tensor([Float](repeating: 0, count: 2 * n), [2, n])
        let (dq, dkv) = try Attention.backward(tensor(w, context.shape), query: qt, keyValue: kvt, context: context, lse: lse, layout: l,
                                               scale: 0.5, keyCounts: keyCounts, bias: bias, biasGradient: gradTable, dropout: p,
                                               rng: stream, blockRows: 2, on: serial)
        expectClose(dq.toFloatArray(), finiteDifferences(q.doubles) { weightedSum(reference($0, kv.doubles, table.doubles), w) },
                    tolerance: 1e-5, "dquery")
        expectClose(dkv.toFloatArray(), finiteDifferences(kv.doubles) { weightedSum(reference(q.doubles, $0, table.doubles), w) },
                    tolerance: 1e-5, "dkeyValue (the padding's keys and values get none)")
        expectClose(gradTable.toFloatArray(), finiteDifferences(table.doubles) { weightedSum(reference(q.doubles, kv.doubles, $0), w) },
                    tolerance: 1e-5, "bias table gradient")
        #expect(throws: TensorError.self) {
            try Attention.forward(query: qt, keyValue: kvt, layout: l, scale: 0.5, keyCounts: [9, 10], on: serial)
        }
    }
}
