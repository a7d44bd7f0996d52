import ArgumentParser
import MegatronCommandLine
import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining

/// `megatron-bench gpt`: training-step throughput of a GPT-2-shaped model, as the PyTorch reference
/// benchmark (shared/bench/torch_gpt_bench.py) measures it: no dropout, AdamW, clipping at 1.0, the
/// same batch every step; median over the measured steps.
struct BenchGPT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpt", abstract: "Training-step throughput on a GPT-2-shaped model (tokens/s, model TFLOP/s, peak RSS).")

    @OptionGroup var device: DeviceOptions
    @Option(help: "tiny (L4 h256 s256), small (L6 h512 s512) or 124m (L12 h768 s1024); vocab 50304.")
    var config = "124m"
    @Option(name: .customLong("micro-batch-size")) var microBatchSize = 1
    @Option(help: "Untimed steps first.") var warmup = 2
    @Option(help: "Timed steps.") var steps = 6
    @Option(name: .customLong("num-query-groups"), help: "Grouped-query attention with this many key/value heads (default: one per attention head).")
    var numQueryGroups: Int?
    @Option(name: .customLong("position-embedding-type"))
    var positionEmbeddingType = TransformerConfig.PositionEmbedding.learnedAbsolute
    @Option var normalization = TransformerConfig.Normalization.layerNorm
    @Flag(help: "SwiGLU MLP, with Megatron's default ffn width ⌊(8h/3) / 64⌋·64.") var swiglu = false
    @OptionGroup(title: "Activation recomputation") var recomputation: RecomputeArguments
    @OptionGroup(title: "Mixed precision") var precision: MixedPrecisionArguments
    @Flag(help: "Also print where a step's time goes: each GEMM shape (with its in-place GFLOP/s), attention, the optimizer, the rest.")
    var profile = false

    /// The GPT-2-shaped benchmark model `name` (tiny, small, 124m), without dropout, and its sequence length.
    static func benchmarkModel(_ name: String) throws -> (config: TransformerConfig, sequenceLength: Int) {
        let shapes = ["tiny": (4, 256, 4, 256), "small": (6, 512, 8, 512), "124m": (12, 768, 12, 1024)]
        guard let (layers, hidden, heads, seq) = shapes[name] else {
            throw ValidationError("--config \(name): expected tiny, small or 124m")
        }
        var c = TransformerConfig(numLayers: layers, hiddenSize: hidden, numAttentionHeads: heads, paddedVocabSize: 50304,
                                  maxPositionEmbeddings: seq)
        c.hiddenDropout = 0
        c.attentionDropout = 0
        return (c, seq)
    }

    func validate() throws {
        guard microBatchSize >= 1 else { throw ValidationError("--micro-batch-size \(microBatchSize): expected at least 1") }
        guard steps >= 1 else { throw ValidationError("--steps \(steps): expected at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup \(warmup): expected 0 or more") }
    }

    func run() throws {
        var (c, seq) = try Self.benchmarkModel(config)
        if let numQueryGroups { c.numQueryGroups = numQueryGroups }  // checked by GPTModel (TransformerConfig.validate)
        c.positionEmbedding = positionEmbeddingType
        c.normalization = normalization
        c.swiglu = swiglu
        if swiglu { c.ffnHiddenSize = TransformerConfig.defaultFFNHiddenSize(hiddenSize: c.hiddenSize, swiglu: true) }
        let (layers, hidden) = (c.numLayers, c.hiddenSize)
        let timer = profile ? KernelTimer() : nil
        let device = try device.makeDevice(timer: timer)
        let model = try GPTModel(config: c, seed: 0, storage: precision.storage, on: device)
        model.recompute = try recomputation.recompute(layers: c.numLayers)
        var settings = Optimizer.Settings()
        settings.weightDecay = 0.1
        settings.adamBeta2 = 0.95
        try precision.apply(to: &settings, useDistributedOptimizer: false)
        model.savedActivationPrecision = settings.paramsDType
        let optimizer = try Optimizer(model: model, settings: settings)
        var state: UInt64 = 1
        let samples = (0 ..< microBatchSize).map { _ in
            (0 ... seq).map { _ -> Int32 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int32((state >> 33) % 50304)
            }
        }
        let batch = try MicroBatch(samples: samples, on: device)
        let ceiling = try GEMMCeiling(c, tokens: microBatchSize * seq, threads: device.threads)
        var times: [Double] = [], losses: [Float] = [], skippedSteps = 0, residentPeak = ResidentPeak()
        for step in 0 ..< warmup + steps {
            if step == warmup {
                device.allocator.resetStatistics()
                timer?.reset()
            }
            let start = Timing.now()
            model.zeroGradients()
            losses.append(try model.forwardBackward(batch, lossWeight: optimizer.lossScale,
                                                    dropout: .init(seed: 0, iteration: step, microBatch: 0)).mean)
            if try device.timed("optimizer step", { try optimizer.step(learningRate: 3e-4) }).skipped { skippedSteps += 1 }
            let seconds = Timing.now() - start
            FileHandle.standardError.write(Data("  step \(step) \(step < warmup ? "warm" : "meas") \(fixed(seconds * 1e3)) ms loss \(losses.last!)\n".utf8))
            if step >= warmup {
                times.append(seconds)
                try residentPeak.excluding { try ceiling.sampleLayers() }
            }
        }
        let allocator = device.allocator.statistics
        let profiled = timer?.snapshot
        let peakBytes = Double(residentPeak.bytes)  // before the output layer's ceiling operands
        let rss = peakBytes / 1_073_741_824, bytesPerParameter = peakBytes / Double(model.layout.totalCount)
        try ceiling.sampleOutputLayer(repeats: 3)
        let median = times.sorted()[times.count / 2], tokens = Double(microBatchSize * seq)
        let megatron = modelFLOPsPerIteration(c, globalBatchSize: microBatchSize, sequenceLength: seq)
        let (b, s, l, h, v) = (Double(microBatchSize), Double(seq), Double(layers), Double(hidden), Double(c.paddedVocabSize))
        let classic = 72 * b * s * l * h * h * (1 + s / (6 * h) + v / (12 * l * h))
        // Parameters, gradients and the optimizer's state (two Adam moments, the main parameters under mixed precision).
        let trainingState = Double(model.parameters.byteCount + model.gradients.byteCount + optimizer.stateBytes) / 1_073_741_824
        let activations = Double(model.savedActivationBytes(batch: microBatchSize, sequenceLength: seq)) / 1_073_741_824
        let modelGFLOPs = megatron / median / 1e9
        print("""
            megatron-bench gpt — \(config)\(variant(c))\(recomputed(model.recompute)), micro-batch \(microBatchSize), seq \(seq), \(device.threads) thread(s), \(model.storage)\(optimizerState(settings))
              step: median \(fixed(median * 1e3)) ms over \(steps) steps; \(fixed(tokens / median)) tokens/s
              model TFLOP/s: \(fixed(megatron / median / 1e12, 4)) (Megatron's formula, causal attention halved), \
            \(fixed(classic / median / 1e12, 4)) (72·B·s·L·h²(1 + s/6h + V/12Lh), as torch_gpt_bench.py)
              sgemm ceiling on the model's own GEMM shapes, timed between the steps: best shape's median \
            \(fixed(ceiling.bestShapeMedian)) GFLOP/s → model FLOP/s at \(percent(modelGFLOPs / ceiling.bestShapeMedian)) of it; \
            fastest single timing \(fixed(ceiling.bestTiming)) GFLOP/s → \(percent(modelGFLOPs / ceiling.bestTiming))
              peak RSS \(fixed(rss, 2)) GiB, \(fixed(bytesPerParameter, 1)) bytes per parameter; \
            parameters + gradients + optimizer state \(fixed(trainingState, 2)) GiB, saved activations \
            \(fixed(activations, 2)) GiB → \(fixed(rss / (trainingState + activations), 2))× their sum
              caching allocator over the timed steps: \(allocator.requests) blocks requested, \(percent(allocator.reuseRate)) served by reuse; \
            peak live \(fixed(Double(allocator.peakLiveBytes) / 1_073_741_824, 2)) GiB, cached when free \(fixed(Double(allocator.cachedBytes) / 1_073_741_824, 2)) GiB
              loss \(losses.first!) → \(losses.last!)\(skippedSteps == 0 ? "" : "; \(skippedSteps) of \(warmup + steps) updates skipped (loss scale now \(optimizer.lossScale))")
            RESULT {"config": "\(config)", "batch": \(microBatchSize), "tokens_per_s": \(fixed(tokens / median)), \
            "step_ms_median": \(fixed(median * 1e3)), "model_tflops_megatron": \(fixed(classic / median / 1e12, 4)), \
            "peak_rss_gib": \(fixed(rss, 2)), "peak_rss_bytes_per_parameter": \(fixed(bytesPerParameter, 1))}
            """)
        if let profiled { print(Self.profileTable(profiled, stepSeconds: times.reduce(0, +), steps: steps)) }
    }

    /// The optimizer's state where it is not fp32, as ", bf16 exp_avg, bf16 exp_avg_sq, main parameters as remainders", or "".
    func optimizerState(_ settings: Optimizer.Settings) -> String {
        var parts: [String] = []
        if settings.expAvgDType != .float32 { parts.append("\(settings.expAvgDType) exp_avg") }
        if settings.expAvgSqDType != .float32 { parts.append("\(settings.expAvgSqDType) exp_avg_sq") }
        if settings.storeParamRemainders { parts.append("main parameters as remainders") }
        return parts.map { ", " + $0 }.joined()
    }

    /// The options that differ from GPT-2's architecture, as ", RMSNorm, SwiGLU ffn 2048", or "".
    func variant(_ c: TransformerConfig) -> String {
        var parts: [String] = []
        if c.numQueryGroups != c.numAttentionHeads { parts.append("\(c.numQueryGroups) query groups") }
        if c.positionEmbedding != .learnedAbsolute { parts.append(c.positionEmbedding.rawValue) }
        if c.normalization != .layerNorm { parts.append(c.normalization.rawValue) }
        if c.swiglu { parts.append("SwiGLU ffn \(c.ffnHiddenSize)") }
        return parts.map { ", " + $0 }.joined()
    }

    /// The recomputation in effect, as ", full recomputation (uniform, 2 layers)", or "".
    func recomputed(_ recompute: ActivationRecompute) -> String {
        switch recompute {
        case .none: return ""
        case .full(let method, let layers): return ", full recomputation (\(method.rawValue), \(layers) layer(s))"
        case .selective(let modules): return ", selective recomputation (\(modules.map(\.rawValue).sorted().joined(separator: ", ")))"
        }
    }

    /// Mean time per timed step in each GEMM shape (largest first), attention, the optimizer, and
    /// everything else (norms, GELU, cross-entropy, embeddings, zeroing gradients).
    static func profileTable(_ entries: [String: KernelTimer.Entry], stepSeconds: Double, steps: Int) -> String {
        var table = TablePrinter("where a step's time goes (mean per step)", "calls", "ms", "share", "GFLOP/s in place")
        let gemms = entries.filter { $0.key.hasPrefix("GEMM") }
        let gemmSeconds = gemms.values.reduce(0) { $0 + $1.seconds }, gemmFLOPs = gemms.values.reduce(0) { $0 + $1.flops }
        let gemmCalls = gemms.values.reduce(0) { $0 + $1.calls }
        func add(_ name: String, _ calls: Int, _ seconds: Double, _ flops: Double) {
            table.add(name, calls > 0 ? String(calls / steps) : "", fixed(seconds / Double(steps) * 1e3), percent(seconds / stepSeconds),
                      flops > 0 ? fixed(flops / seconds / 1e9) : "")
        }
        add("GEMM, all (M×N×K, transposes)", gemmCalls, gemmSeconds, gemmFLOPs)
        for (name, entry) in gemms.sorted(by: { $0.value.seconds > $1.value.seconds }) {
            add("  " + name.dropFirst(5), entry.calls, entry.seconds, entry.flops)
        }
        for (name, entry) in entries.filter({ !$0.key.hasPrefix("GEMM") }).sorted(by: { $0.key < $1.key }) {
            add(name, entry.calls, entry.seconds, 0)
        }
        let other = stepSeconds - entries.values.reduce(0) { $0 + $1.seconds }
        add("everything else", 0, other, 0)
        return table.render()
    }
}
