import Foundation
import MegatronCore

#if canImport(Glibc)
import Glibc
#endif

/// The measurements behind `megatron-bench kernels`.
struct KernelBenchmarks {
    let device: CPUDevice
    let repeats: Int
    let tokens, batch, seq, hidden, heads, ffn, vocab, memoryTokens: Int

    init(device: CPUDevice, repeats: Int, tokens: Int, batch: Int, seq: Int, hidden: Int, heads: Int, ffn: Int,
         vocab: Int, memoryTokens: Int) {
        (self.device, self.repeats, self.tokens, self.batch, self.seq) = (device, repeats, tokens, batch, seq)
        (self.hidden, self.heads, self.ffn, self.vocab, self.memoryTokens) = (hidden, heads, ffn, vocab, memoryTokens)
    }

    mutating func run() throws {
        let ceiling = try gemms()
        try attention(ceiling: ceiling)
        try memoryBound(copy: try copyReference())
        let stats = device.allocator.statistics
        print("""

            Caching allocator: \(stats.requests) requests, \(percent(stats.reuseRate)) served by reuse, \
            peak live \(fixed(Double(stats.peakLiveBytes) / 1_073_741_824, 2)) GiB; \
            peak RSS \(fixed(Double(peakResidentBytes()) / 1_073_741_824, 2)) GiB
            """)
    }

    // MARK: GEMM

    /// One GEMM to time: its row in a table, its FLOPs and its body.
    private struct GEMMCase {
        let label, shape: String
        let flops: Double
        let run: () throws -> Void
    }

    /// Times square sgemm at a few large sizes and the forward, data-gradient and weight-gradient
    /// GEMMs of every linear layer of the model, and returns the ceiling: the best GFLOP/s of a
    /// square sgemm. The GEMMs are timed round-robin, one run of each per round, so that a slow
    /// minute of this shared machine falls on all of them alike rather than on whichever was being
    /// timed then.
    func gemms() throws -> Double {
        var squares: [GEMMCase] = []
        for n in [1024, 2048, 3072] {
            let a = try random([n, n]), b = try random([n, n]), c = try Tensor(shape: [n, n], on: device)
            squares.append(GEMMCase(label: "\(n)×\(n)×\(n)", shape: "", flops: 2 * Double(n * n * n)) {
                try GEMM.matmul(a, b, into: c, on: device)
            })
        }
        var model: [GEMMCase] = []
        for (name, input, output) in [("linear_qkv", hidden, 3 * hidden), ("linear_proj", hidden, hidden),
                                      ("linear_fc1", hidden, ffn), ("linear_fc2", ffn, hidden), ("output_layer", hidden, vocab)] {
            let x = try random([tokens, input]), w = try random([output, input])
            let y = try Tensor(shape: [tokens, output], on: device), dy = try random([tokens, output])
            let dx = try Tensor(shape: [tokens, input], on: device), dw = try Tensor(shape: [output, input], on: device)
            let flops = 2 * Double(tokens) * Double(input) * Double(output)
            model += [
                GEMMCase(label: "\(name) fwd  Y = X·Wᵀ", shape: "\(tokens)×\(output)×\(input)", flops: flops) {
                    try GEMM.matmul(x, w, transposeB: true, into: y, on: device)
                },
                GEMMCase(label: "\(name) dgrad dX = dY·W", shape: "\(tokens)×\(input)×\(output)", flops: flops) {
                    try GEMM.matmul(dy, w, into: dx, on: device)
                },
                GEMMCase(label: "\(name) wgrad dW += dYᵀ·X", shape: "\(output)×\(input)×\(tokens)", flops: flops) {
                    try GEMM.matmul(dy, transposeA: true, x, into: dw, beta: 1, on: device)
                },
            ]
        }
        let all = squares + model
        for gemm in all { try gemm.run() }  // warm-up
        var seconds = [[Double]](repeating: [], count: all.count)
        for _ in 0 ..< repeats {
            for (i, gemm) in all.enumerated() {
                let start = Timing.now()
                try gemm.run()
                seconds[i].append(Timing.now() - start)
            }
        }
        let timings = seconds.map { Timing(seconds: $0.sorted()) }

        var squareTable = TablePrinter("square sgemm", "median ms", "GFLOP/s median", "GFLOP/s best")
        for (gemm, t) in zip(squares, timings) {
            squareTable.add(gemm.label, fixed(t.median * 1e3, 2), fixed(gemm.flops / t.median / 1e9), fixed(gemm.flops / t.best / 1e9))
        }
        let ceiling = zip(squares, timings).map { $0.flops / $1.best / 1e9 }.max()!
        let medianCeiling = zip(squares, timings).map { $0.flops / $1.median / 1e9 }.max()!
        print(squareTable.render())
        print("sgemm ceiling (best of the above): \(fixed(ceiling)) GFLOP/s; best median \(fixed(medianCeiling)) GFLOP/s\n")

        var table = TablePrinter("GEMM (tokens \(tokens))", "M×N×K", "median ms", "GFLOP/s median", "GFLOP/s best", "best / ceiling",
                                 "median / best median")
        var totalFlops = 0.0, totalSeconds = 0.0
        for (gemm, t) in zip(model, timings.dropFirst(squares.count)) {
            totalFlops += gemm.flops
            totalSeconds += t.median
            table.add(gemm.label, gemm.shape, fixed(t.median * 1e3, 2), fixed(gemm.flops / t.median / 1e9),
                      fixed(gemm.flops / t.best / 1e9), percent(gemm.flops / t.best / 1e9 / ceiling),
                      percent(gemm.flops / t.median / 1e9 / medianCeiling))
        }
        print(table.render())
        let together = totalFlops / totalSeconds / 1e9
        print("All model GEMMs together: \(fixed(together)) GFLOP/s (medians), \(percent(together / ceiling)) of the ceiling, "
              + "\(percent(together / medianCeiling)) of the best median\n")
        return ceiling
    }

    // MARK: attention

    func attention(ceiling: Double) throws {
        let d = hidden / heads
        let layout = try AttentionLayout.megatronFusedQKV(batch: batch, sequenceLength: seq, heads: heads, groups: heads, headDim: d)
        let qkv = try random([layout.tokens, layout.rowWidth])
        let scale = 1 / Float(d).squareRoot()
        var saved = try Attention.forward(qkv: qkv, layout: layout, scale: scale, on: device)
        let dContext = try random(saved.context.shape)
        var table = TablePrinter("attention core (causal, \(batch)×\(heads) heads, s \(seq), d \(d))", "median ms",
                                 "GFLOP/s causal work", "best / ceiling", "GFLOP/s Megatron count")
        // Causal work: the s(s+1)/2 visible pairs; forward 2 GEMMs, backward 4 (the recomputed
        // scores, a 5th, are overhead and not counted). Megatron's formula counts all s² pairs.
        let pairs = Double(seq) * Double(seq + 1) / 2 * Double(batch * heads)
        let square = Double(seq) * Double(seq) * Double(batch * heads)
        let forward = try Timing.measure(repeats: repeats) {
            saved = try Attention.forward(qkv: qkv, layout: layout, scale: scale, on: device)
        }
        let backward = try Timing.measure(repeats: repeats) {
            _ = try Attention.backward(dContext, qkv: qkv, context: saved.context, lse: saved.lse, layout: layout,
                                       scale: scale, on: device)
        }
        for (label, t, matmuls) in [("forward", forward, 2.0), ("backward", backward, 4.0)] {
            let flops = 2 * matmuls * Double(d)
            table.add(label, fixed(t.median * 1e3, 2), fixed(flops * pairs / t.median / 1e9),
                      percent(flops * pairs / t.best / 1e9 / ceiling), fixed(flops * square / t.median / 1e9))
        }
        let total = forward.median + backward.median, best = forward.best + backward.best
        table.add("forward + backward", fixed(total * 1e3, 2), fixed(12 * Double(d) * pairs / total / 1e9),
                  percent(12 * Double(d) * pairs / best / 1e9 / ceiling), fixed(12 * Double(d) * square / total / 1e9))
        print(table.render())
        print("")
    }

    // MARK: memory-bound kernels

    /// A reference copy of 256 MiB (glibc's memcpy or a plain vectorised loop, split over the
    /// threads), timed alongside each memory-bound kernel: this machine's bandwidth drifts with the
    /// load of its neighbours, so ratios are only meaningful between measurements taken together.
    struct CopyReference {
        static let bytes = 256 << 20
        let run: () -> Void
        let name: String

        /// GB/s (read + written) of one run.
        func rate() -> Double {
            let start = Timing.now()
            run()
            return 2 * Double(Self.bytes) / (Timing.now() - start) / 1e9
        }
    }

    /// Measures both copies, prints them, and returns the faster as the reference.
    func copyReference() throws -> CopyReference {
        let n = CopyReference.bytes / 4
        let source = try random([n]), destination = try Tensor(shape: [n], on: device)
        let device = device
        let memcpySplit = CopyReference(run: {
            device.parallelFor(n, minimumPerTask: 1 << 16) { r, _ in
                _ = memcpy(destination.floats + r.lowerBound, source.floats + r.lowerBound, r.count * 4)
            }
        }, name: "memcpy")
        let loop = CopyReference(run: { try? Elementwise.copy(source, into: destination, on: device) }, name: "copy loop")
        let rates = [memcpySplit, loop].map { reference in (0 ..< repeats).map { _ in reference.rate() }.max()! }
        print("Copy bandwidth, 256 MiB, read + write, \(device.threads) thread(s): memcpy \(fixed(rates[0])) GB/s, copy loop \(fixed(rates[1])) GB/s (best of \(repeats))\n")
        return rates[0] >= rates[1] ? memcpySplit : loop
    }

    /// One memory-bound measurement: what runs, on what shape, moving how many bytes.
    struct MemoryCase {
        let name: String
        let shape: String
        let bytes: Double
        let body: () throws -> Void
    }

    /// Each kernel's GB/s (bytes read + written) against the reference copy's, run by run: each run of
    /// the kernel follows a run of the copy, and "of copy" is the median over the runs of the ratio
    /// of the two. On this shared machine the bandwidth moves by ±40 % from one second to the next;
    /// a copy and a kernel timed milliseconds apart see the same machine, while the best of each,
    /// taken at different moments, need not.
    func memoryBound(copy: CopyReference) throws {
        var table = TablePrinter("memory-bound kernel", "shape", "median ms", "GB/s median", "copy GB/s alongside", "of copy")
        var ratios: [Double] = []
        for group in [residualCases, normalisationCases, activationCases, embeddingCases, lossCases, optimizerCases] {
            for c in try group() {
                try c.body()
                var rates: [Double] = [], copyRates: [Double] = [], ratioOfRun: [Double] = []
                for _ in 0 ..< repeats {
                    copyRates.append(copy.rate())
                    let start = Timing.now()
                    try c.body()
                    rates.append(c.bytes / (Timing.now() - start) / 1e9)
                    ratioOfRun.append(rates.last! / copyRates.last!)
                }
                let ratio = median(ratioOfRun)
                ratios.append(ratio)
                table.add(c.name, c.shape, fixed(c.bytes / median(rates) / 1e6, 2), fixed(median(rates)),
                          fixed(median(copyRates)), percent(ratio))
            }
        }
        print(table.render())
        print("Below 60% of copy: \(ratios.filter { $0 < 0.6 }.count) of \(ratios.count) kernels (reference: \(copy.name); median of per-run ratios)")
    }

    private func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    private var rng: PhiloxStream { PhiloxStream(seed: 1234, stream: 1) }

    func residualCases() throws -> [MemoryCase] {
        let (t, h) = (memoryTokens, hidden), shape = "[\(t), \(h)]", th = Double(t * h)
        let x = try random([t, h]), residual = try random([t, h]), bias = try random([h])
        let (device, rng) = (device, rng)
        return [
            MemoryCase(name: "residual add", shape: shape, bytes: 12 * th) { _ = try Elementwise.add(x, residual, on: device) },
            MemoryCase(name: "bias-dropout-add (p 0.1)", shape: shape, bytes: 12 * th) {
                _ = try BiasDropoutAdd.forward(x, bias: bias, residual: residual, probability: 0.1, rng: rng, on: device)
            },
            MemoryCase(name: "dropout (p 0.1)", shape: shape, bytes: 8 * th) {
                _ = try Dropout.apply(x, probability: 0.1, rng: rng, on: device)
            },
        ]
    }

    func normalisationCases() throws -> [MemoryCase] {
        let (t, h) = (memoryTokens, hidden), shape = "[\(t), \(h)]", th = Double(t * h)
        let x = try random([t, h]), dy = try random([t, h]), gamma = try random([h]), beta = try random([h])
        let dGamma = try Tensor(shape: [h], on: device), dBeta = try Tensor(shape: [h], on: device)
        let device = device
        let (_, saved) = try LayerNorm.forward(x, weight: gamma, bias: beta, epsilon: 1e-5, on: device)
        let (_, rstd) = try RMSNorm.forward(x, weight: gamma, epsilon: 1e-5, on: device)
        return [
            MemoryCase(name: "LayerNorm forward", shape: shape, bytes: 8 * th) {
                _ = try LayerNorm.forward(x, weight: gamma, bias: beta, epsilon: 1e-5, on: device)
            },
            MemoryCase(name: "LayerNorm backward", shape: shape, bytes: 12 * th) {
                _ = try LayerNorm.backward(dy, input: x, weight: gamma, saved: saved, gradWeight: dGamma, gradBias: dBeta, on: device)
            },
            MemoryCase(name: "RMSNorm forward", shape: shape, bytes: 8 * th) {
                _ = try RMSNorm.forward(x, weight: gamma, epsilon: 1e-5, on: device)
            },
            MemoryCase(name: "RMSNorm backward", shape: shape, bytes: 12 * th) {
                _ = try RMSNorm.backward(dy, input: x, weight: gamma, rstd: rstd, gradWeight: dGamma, on: device)
            },
        ]
    }

    func activationCases() throws -> [MemoryCase] {
        let (t, f) = (memoryTokens, ffn), half = ffn / 2, tf = Double(t * f)
        let wide = try random([t, f]), bias = try random([f]), dBias = try Tensor(shape: [f], on: device), dHalf = try random([t, half])
        let d = hidden / heads, device = device
        let layout = try AttentionLayout.megatronFusedQKV(batch: t / seq, sequenceLength: seq, heads: heads, groups: heads, headDim: d)
        let qkv = try random([layout.tokens, layout.rowWidth])
        let positions = try Tensor(int32s: (0 ..< layout.tokens).map { Int32($0 % seq) }, shape: [layout.tokens], on: device)
        let rope = try RotaryEmbedding(rotaryDim: d, maxPositions: seq, on: device)
        return [
            MemoryCase(name: "bias-GELU forward", shape: "[\(t), \(f)]", bytes: 8 * tf) {
                _ = try GELU.forward(wide, bias: bias, on: device)
            },
            MemoryCase(name: "bias-GELU backward", shape: "[\(t), \(f)]", bytes: 12 * tf) {
                _ = try GELU.backward(wide, input: wide, bias: bias, gradBias: dBias, on: device)
            },
            MemoryCase(name: "SwiGLU forward", shape: "[\(t), \(f)]→[\(t), \(half)]", bytes: 12 * Double(t * half)) {
                _ = try SwiGLU.forward(wide, on: device)
            },
            MemoryCase(name: "SwiGLU backward", shape: "[\(t), \(half)]→[\(t), \(f)]", bytes: 20 * Double(t * half)) {
                _ = try SwiGLU.backward(dHalf, input: wide, on: device)
            },
            MemoryCase(name: "rotary embedding (q and k)", shape: "[\(layout.tokens), \(layout.rowWidth)]",
                       bytes: 16 * Double(layout.tokens * hidden)) {
                try rope.apply(to: qkv, headOffsets: layout.queryOffsets + layout.keyOffsets, positions: positions, on: device)
            },
        ]
    }

    func embeddingCases() throws -> [MemoryCase] {
        let (t, h, vocab, seq) = (memoryTokens, hidden, vocab, seq), th = Double(t * h), device = device
        let word = try random([vocab, h]), position = try random([seq, h]), dOut = try random([t, h])
        let tokenIds = try Tensor(int32s: (0 ..< t).map { Int32(($0 * 7919) % vocab) }, shape: [t], on: device)
        let positions = try Tensor(int32s: (0 ..< t).map { Int32($0 % seq) }, shape: [t], on: device)
        let dWord = try Tensor(shape: [vocab, h], on: device), dPosition = try Tensor(shape: [seq, h], on: device)
        return [
            MemoryCase(name: "embedding forward (word + position)", shape: "[\(t), \(h)]", bytes: 12 * th) {
                _ = try Embedding.forward(ids: tokenIds, word: word, position: position, positions: positions, on: device)
            },
            MemoryCase(name: "embedding backward (scatter-add)", shape: "[\(t), \(h)]", bytes: 20 * th) {
                try Embedding.backward(dOut, ids: tokenIds, positions: positions, gradWord: dWord, gradPosition: dPosition, on: device)
            },
        ]
    }

    func lossCases() throws -> [MemoryCase] {
        let (rows, vocab, device) = (tokens, vocab, device)
        let logits = try random([rows, vocab])
        let targets = try Tensor(int32s: (0 ..< rows).map { Int32(($0 * 31) % vocab) }, shape: [rows], on: device)
        let weights = try Tensor([Float](repeating: 1 / Float(rows), count: rows), shape: [rows], on: device)
        return [
            MemoryCase(name: "cross-entropy + backward, fused", shape: "[\(rows), \(vocab)]", bytes: 8 * Double(rows * vocab)) {
                _ = try CrossEntropy.forwardBackward(logits: logits, targets: targets, gradWeights: weights, on: device)
            },
        ]
    }

    /// Optimizer and precision kernels over the 124M parameters of GPT-2 small.
    func optimizerCases() throws -> [MemoryCase] {
        let n = 124_475_904, device = device
        let p = try random([n]), g = try random([n]), m = try Tensor(shape: [n], on: device), v = try Tensor(shape: [n], on: device)
        let narrow = try p.converted(to: .bfloat16, on: device)
        let step = StepCounter()
        return [
            MemoryCase(name: "AdamW step", shape: "[\(n)]", bytes: 28 * Double(n)) {
                try AdamW.update(param: p, grad: g, expAvg: m, expAvgSq: v, step: step.next(), .init(learningRate: 1e-4), on: device)
            },
            MemoryCase(name: "global L2 norm", shape: "[\(n)]", bytes: 4 * Double(n)) {
                _ = try Elementwise.globalL2Norm([g], on: device)
            },
            MemoryCase(name: "fp32 → bfloat16", shape: "[\(n)]", bytes: 6 * Double(n)) { _ = try p.converted(to: .bfloat16, on: device) },
            MemoryCase(name: "fp32 → float16", shape: "[\(n)]", bytes: 6 * Double(n)) { _ = try p.converted(to: .float16, on: device) },
            MemoryCase(name: "bfloat16 → fp32", shape: "[\(n)]", bytes: 6 * Double(n)) { _ = try narrow.converted(to: .float32, on: device) },
        ]
    }

    // MARK: helpers

    /// A tensor of uniform values in [-1, 1) from a fixed generator.
    func random(_ shape: [Int]) throws -> Tensor {
        let t = try Tensor(shape: shape, on: device, zeroed: false)
        var state: UInt32 = 2_463_534_242
        for i in 0 ..< t.count {
            state ^= state << 13; state ^= state >> 17; state ^= state << 5
            t.floats[i] = Float(state) / Float(UInt32.max) * 2 - 1
        }
        return t
    }

    static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        let line = text.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line.map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }
}

/// Counts calls, for step numbers inside a timed closure.
final class StepCounter {
    private var count = 0

    func next() -> Int {
        count += 1
        return count
    }
}
