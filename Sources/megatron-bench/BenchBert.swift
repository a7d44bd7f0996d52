import ArgumentParser
import Foundation
import MegatronCommandLine
import MegatronCore
import MegatronData
import MegatronModels
import MegatronTraining

/// `megatron-bench bert`: training-step throughput of a BERT (the original post-norm one, with the
/// sentence-order head), as scripts/torch_bert_bench.py measures transformers' BertForPreTraining:
/// full-length sequences of two segments, 15 % of tokens masked, no dropout, AdamW with clipping at
/// 1.0, the same batch every step; median over the measured steps.
struct BenchBert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bert", abstract: "Training-step throughput on a BERT (tokens/s, model TFLOP/s, peak RSS).")

    @OptionGroup var device: DeviceOptions
    @Option(help: "tiny (L2 h256 s128), small (L4 h512 s128) or base (BERT-base: L12 h768 s512); vocab 30592 (BERT's 30522, padded).")
    var config = "base"
    @Option(name: .customLong("micro-batch-size")) var microBatchSize = 2
    @Option(help: "Untimed steps first.") var warmup = 1
    @Option(help: "Timed steps.") var steps = 3
    @Flag(help: "Also print where a step's time goes: each GEMM shape, attention, the optimizer, the rest.") var profile = false

    /// The benchmark model `name`: BERT's shape with post-norm layers and exact GELU, no dropout.
    static func benchmarkModel(_ name: String) throws -> (config: BertConfig, sequenceLength: Int) {
        let shapes = ["tiny": (2, 256, 4, 128), "small": (4, 512, 8, 128), "base": (12, 768, 12, 512)]
        guard let (layers, hidden, heads, seq) = shapes[name] else { throw ValidationError("--config \(name): expected tiny, small or base") }
        var c = TransformerConfig(numLayers: layers, hiddenSize: hidden, numAttentionHeads: heads, paddedVocabSize: 30592,
                                  maxPositionEmbeddings: seq)
        c.hiddenDropout = 0
        c.attentionDropout = 0
        c.normEpsilon = 1e-12
        c.biasGELUFusion = false
        c.applyResidualConnectionPostLayernorm = true
        return (BertConfig(transformer: c), seq)
    }

    func validate() throws {
        guard microBatchSize >= 1, steps >= 1, warmup >= 0 else {
            throw ValidationError("--micro-batch-size and --steps must be at least 1, --warmup at least 0")
        }
    }

    func run() throws {
        let (config, seq) = try Self.benchmarkModel(config)
        let timer = profile ? KernelTimer() : nil
        let device = try device.makeDevice(timer: timer)
        let model = try BertModel(config: config, seed: 0, on: device)
        let optimizer = try Optimizer(model: model, settings: Optimizer.Settings())
        let batch = try model.microBatch(of: Self.samples(count: microBatchSize, sequenceLength: seq, vocabulary: 30522))
        let (timing, losses) = try Timing.trainingSteps(warmup: warmup, steps: steps, afterWarmup: { timer?.reset() }) { step in
            model.zeroGradients()
            let loss = try model.forwardBackward(batch, dropout: .init(seed: 0, iteration: step, microBatch: 0)).total
            _ = try optimizer.step(learningRate: 1e-4)
            return loss
        }
        let rss = Double(peakResidentBytes()) / 1_073_741_824
        let median = timing.median, tokens = Double(microBatchSize * seq)
        let flops = model.flopsPerIteration(samples: microBatchSize, sequenceLength: seq)
        print("""
            megatron-bench bert — \(self.config) (post-norm, binary head), micro-batch \(microBatchSize), seq \(seq), \(device.threads) thread(s)
              step: median \(fixed(median * 1e3)) ms over \(steps) steps; \(fixed(tokens / median)) tokens/s
              model TFLOP/s: \(fixed(flops / median / 1e12, 4)) (every GEMM three times, attention over every key, heads included)
              peak RSS \(fixed(rss, 2)) GiB; loss \(losses.first!) → \(losses.last!)
            RESULT {"config": "\(self.config)", "batch": \(microBatchSize), "tokens_per_s": \(fixed(tokens / median)), \
            "step_ms_median": \(fixed(median * 1e3)), "model_tflops": \(fixed(flops / median / 1e12, 4)), "peak_rss_gib": \(fixed(rss, 2))}
            """)
        if let profiled = timer?.snapshot { print(BenchGPT.profileTable(profiled, stepSeconds: timing.seconds.reduce(0, +), steps: steps)) }
    }

    /// `count` full-length samples of two segments, every 7th token from the second masked (15 %),
    /// ids below `vocabulary` from a fixed linear congruential sequence (torch_bert_bench.py's).
    static func samples(count: Int, sequenceLength s: Int, vocabulary: Int) -> [BertSample] {
        var state: UInt64 = 1
        func next(_ bound: Int) -> Int32 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int32((state >> 33) % UInt64(bound))
        }
        return (0 ..< count).map { b in
            let masked = (0 ..< s).map { $0 > 0 && $0 % 7 == 1 }
            let text = (0 ..< s).map { _ in 5 + next(vocabulary - 5) }
            return BertSample(text: text, types: (0 ..< s).map { $0 < s / 2 ? 0 : 1 },
                              labels: zip(masked, text).map { $0 ? ($1 % 1000) + 1000 : -1 }, isRandom: Int32(b % 2),
                              lossMask: masked.map { $0 ? 1 : 0 }, paddingMask: [Int32](repeating: 1, count: s))
        }
    }
}
