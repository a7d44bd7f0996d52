import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import Testing

/// Context parallelism's ring attention computes, on each rank's two chunks of every sequence, the
/// rows of causal attention over the whole sequences: the context, the log-sum-exp and the gradient
/// of the fused QKV (queries, and keys and values summed over every rank that reads them), with
/// grouped-query heads.
@Suite struct RingAttentionTests {
    @Test(arguments: [(2, 1), (2, 2), (4, 2)])
    func ringAttentionGivesEachRankItsRowsOfTheWholeAttention(contextParallelSize cp: Int, groups: Int) throws {
        let batch = 2, s = 8 * cp, heads = 4, d = 8
        let whole = try AttentionLayout.megatronFusedQKV(batch: batch, sequenceLength: s, heads: heads, groups: groups, headDim: d)
        let qkv = try Tensor(Self.inputs(whole.tokens * whole.rowWidth, phase: 0), shape: [whole.tokens, whole.rowWidth], on: CPUDevice(threads: 1))
        let gradContext = try Tensor(Self.inputs(whole.tokens * heads * d, phase: 1), shape: [whole.tokens, heads * d], on: CPUDevice(threads: 1))
        let scale = 1 / Float(d).squareRoot()
        let (context, lse) = try Attention.forward(qkv: qkv, layout: whole, scale: scale, on: CPUDevice(threads: 1))
        let gradQKV = try Attention.backward(gradContext, qkv: qkv, context: context, lse: lse, layout: whole, scale: scale,
                                             on: CPUDevice(threads: 1))
        let worst = WorstDifference()
        try InProcessWorld(size: cp).run { world in
            let device = CPUDevice(threads: 1), chunk = s / (2 * cp), r = world.rank
            // Rank r's rows: chunks r and 2·cp − 1 − r of each sequence.
            var rows: [Int] = []
            for b in 0 ..< batch {
                for c in [r, 2 * cp - 1 - r] { rows += (b * s + c * chunk) ..< (b * s + (c + 1) * chunk) }
            }
            func local(_ t: Tensor) throws -> Tensor {
                try Tensor(rows.flatMap { row in (0 ..< t.columns).map { t.floats[row * t.columns + $0] } }, shape: [rows.count, t.columns],
                           on: device)
            }
            let ring = RingAttention(contextParallel: ContextParallel(group: world), layout: whole.resized(sequenceLength: s / cp),
                                     scale: scale, device: device)
            let (localContext, localLSE) = try ring.forward(qkv: local(qkv))
            let localGrad = try ring.backward(local(gradContext), qkv: local(qkv), context: localContext, lse: localLSE)
            worst.note("context", localContext, try local(context))
            worst.note("qkv gradient", localGrad, try local(gradQKV))
            // lse [batch, heads, s]: this rank's positions of each (sequence, head).
            var expected: [Float] = []
            for b in 0 ..< batch {
                for h in 0 ..< heads {
                    for row in rows where row / s == b { expected.append(lse.floats[(b * heads + h) * s + row % s]) }
                }
            }
            worst.note("lse", localLSE, try Tensor(expected, shape: localLSE.shape, on: device))
        }
        for (name, difference) in worst.differences { #expect(difference <= 1e-5, "CP=\(cp), \(groups) group(s): \(name) differs by \(difference)") }
    }

    /// The largest absolute difference seen per quantity, over the ranks.
    final class WorstDifference: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var differences: [String: Float] = [:]

        func note(_ name: String, _ a: Tensor, _ b: Tensor) {
            let difference = a.shape == b.shape ? (0 ..< a.count).map { abs(a.floats[$0] - b.floats[$0]) }.max() ?? 0 : .infinity
            lock.lock()
            differences[name] = max(differences[name] ?? 0, difference)
            lock.unlock()
        }
    }

    /// Deterministic inputs in [-1, 1] that vary from element to element.
    static func inputs(_ n: Int, phase: Float) -> [Float] { (0 ..< n).map { sin(Float($0) * 0.61 + phase) } }
}
