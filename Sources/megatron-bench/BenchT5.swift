import ArgumentParser
import Foundation
import MegatronCommandLine
import MegatronCore
import MegatronData
import MegatronModels
import MegatronTraining

/// `megatron-bench t5`: training-step throughput of a T5 (relative positions, RMSNorm, gated SiLU
/// MLP, no biases: T5 v1.1's shape), as scripts/torch_t5_bench.py measures transformers'
/// T5ForConditionalGeneration: full-length encoder and decoder sequences, no dropout, AdamW with
/// clipping at 1.0, the same batch every step; median over the measured steps.
struct BenchT5: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "t5", abstract: "Training-step throughput on a T5 (tokens/s, model TFLOP/s, peak RSS).")

    @OptionGroup var device: DeviceOptions
    @Option(help: "tiny (2+2 layers, d 256) or small (T5-small: 6+6 layers, d 512, 8 heads, ffn 2048); encoder 512, decoder 128 tokens; vocab 32128.")
    var config = "small"
    @Option(name: .customLong("micro-batch-size")) var microBatchSize = 2
    @Option(help: "Untimed steps first.") var warmup = 1
    @Option(help: "Timed steps.") var steps = 3

    static let encoderLength = 512, decoderLength = 128, vocabulary = 32128

    /// The benchmark model `name`, without dropout.
    static func benchmarkModel(_ name: String) throws -> T5Config {
        let shapes = ["tiny": (2, 256, 4, 1024), "small": (6, 512, 8, 2048)]
        guard let (layers, hidden, heads, ffn) = shapes[name] else { throw ValidationError("--config \(name): expected tiny or small") }
        var c = TransformerConfig(numLayers: layers, hiddenSize: hidden, numAttentionHeads: heads, kvChannels: 64, ffnHiddenSize: ffn,
                                  paddedVocabSize: vocabulary, maxPositionEmbeddings: encoderLength)
        c.hiddenDropout = 0
        c.attentionDropout = 0
        c.normalization = .rmsNorm
        c.normEpsilon = 1e-6
        c.swiglu = true
        c.addBiasLinear = false
        return T5Config(transformer: c, encoderNumLayers: layers, decoderNumLayers: layers, relativeAttention: .init())
    }

    func validate() throws {
        guard microBatchSize >= 1, steps >= 1, warmup >= 0 else {
            throw ValidationError("--micro-batch-size and --steps must be at least 1, --warmup at least 0")
        }
    }

    func run() throws {
        let config = try Self.benchmarkModel(config)
        let device = try device.makeDevice()
        let model = try T5Model(config: config, seed: 0, on: device)
        model.decoderSequenceLength = Self.decoderLength
        let optimizer = try Optimizer(model: model, settings: Optimizer.Settings())
        let batch = try model.microBatch(of: Self.samples(count: microBatchSize))
        let (timing, losses) = try Timing.trainingSteps(warmup: warmup, steps: steps) { step in
            model.zeroGradients()
            let loss = try model.forwardBackward(batch, dropout: .init(seed: 0, iteration: step, microBatch: 0)).mean
            _ = try optimizer.step(learningRate: 1e-4)
            return loss
        }
        let rss = Double(peakResidentBytes()) / 1_073_741_824
        let median = timing.median, tokens = Double(microBatchSize * (Self.encoderLength + Self.decoderLength))
        let flops = model.flopsPerIteration(samples: microBatchSize, sequenceLength: Self.encoderLength)
        print("""
            megatron-bench t5 — \(self.config) (relative positions, RMSNorm, gated SiLU), micro-batch \(microBatchSize), \
            encoder \(Self.encoderLength) + decoder \(Self.decoderLength) tokens, \(device.threads) thread(s)
              step: median \(fixed(median * 1e3)) ms over \(steps) steps; \(fixed(tokens / median)) tokens/s (encoder + decoder)
              model TFLOP/s: \(fixed(flops / median / 1e12, 4)) (every GEMM three times, attention and cross-attention included)
              peak RSS \(fixed(rss, 2)) GiB; loss \(losses.first!) → \(losses.last!)
            RESULT {"config": "\(self.config)", "batch": \(microBatchSize), "tokens_per_s": \(fixed(tokens / median)), \
            "step_ms_median": \(fixed(median * 1e3)), "model_tflops": \(fixed(flops / median / 1e12, 4)), "peak_rss_gib": \(fixed(rss, 2))}
            """)
    }

    /// `count` full-length samples from a fixed linear congruential sequence (torch_t5_bench.py's):
    /// encoder ids, decoder ids and labels, every decoder token in the loss.
    static func samples(count: Int) -> [T5Sample] {
        var state: UInt64 = 1
        func next() -> Int32 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int32(5 + (state >> 33) % UInt64(vocabulary - 5))
        }
        return (0 ..< count).map { _ in
            let encoder = (0 ..< encoderLength).map { _ in next() }, decoder = (0 ..< decoderLength).map { _ in next() }
            let labels = (0 ..< decoderLength).map { _ in next() }
            let ones = [Int32](repeating: 1, count: decoderLength)
            return T5Sample(encoderTokens: encoder, decoderTokens: decoder, labels: labels, lossMask: ones,
                            encoderMask: [Int32](repeating: 1, count: encoderLength), decoderMask: ones)
        }
    }
}
