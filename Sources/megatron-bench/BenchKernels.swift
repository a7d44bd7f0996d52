import ArgumentParser
import MegatronCommandLine
import Foundation
import MegatronCore

/// `megatron-bench kernels`: the engine's speed on a GPT model's shapes (GPT-2 124M by default).
///
/// Prints, with the machine it ran on:
/// - the sgemm ceiling: the best GFLOP/s of large square sgemm;
/// - each GEMM a transformer layer and the output layer run (forward, data gradient, weight
///   gradient), in GFLOP/s and as a share of the ceiling;
/// - the attention core, forward + backward, in GFLOP/s of the work a causal kernel must do and by
///   Megatron's FLOP formula (which counts the full s × s square);
/// - the memory-bound kernels in GB/s (bytes read + written) against the measured copy bandwidth,
///   on tensors larger than the last-level cache.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "GEMM, attention and memory-bound kernel throughput on a GPT model's shapes.")

    @OptionGroup var device: DeviceOptions

    @Option(name: .customLong("micro-batch-size"), help: "Sequences per micro-batch.")
    var microBatchSize = 1
    @Option(name: .customLong("seq-length"), help: "Tokens per sequence.")
    var seqLength = 1024
    @Option(name: .customLong("hidden-size"))
    var hiddenSize = 768
    @Option(name: .customLong("num-attention-heads"))
    var numAttentionHeads = 12
    @Option(name: .customLong("ffn-hidden-size"))
    var ffnHiddenSize = 3072
    @Option(name: .customLong("vocab-size"), help: "Padded vocabulary size.")
    var vocabSize = 50304
    @Option(help: "Timed repetitions per measurement (the median is reported).")
    var repeats = 5
    @Option(help: "Tokens for the memory-bound kernels, enough that tensors exceed the caches.")
    var memoryTokens = 32768

    func validate() throws {
        guard hiddenSize % numAttentionHeads == 0 else {
            throw ValidationError("--hidden-size \(hiddenSize) is not divisible by --num-attention-heads \(numAttentionHeads)")
        }
        guard repeats >= 1, microBatchSize >= 1, seqLength >= 1, memoryTokens >= 1 else {
            throw ValidationError("--repeats, --micro-batch-size, --seq-length and --memory-tokens must be positive")
        }
    }

    func run() throws {
        let device = try device.makeDevice()
        var suite = KernelBenchmarks(device: device, repeats: repeats, tokens: microBatchSize * seqLength,
                                     batch: microBatchSize, seq: seqLength, hidden: hiddenSize, heads: numAttentionHeads,
                                     ffn: ffnHiddenSize, vocab: vocabSize, memoryTokens: memoryTokens)
        print("""
            megatron-bench kernels — \(device.threads) thread(s), AVX2 kernels: \(CPUDevice.usesAVX2 ? "yes" : "no")
            CPU: \(KernelBenchmarks.cpuModel()), \(CPUDevice.coreCount) cores visible
            BLAS: \(CPUDevice.blasDescription)
            Shapes: micro-batch \(microBatchSize) × seq \(seqLength), hidden \(hiddenSize), \(numAttentionHeads) heads, ffn \(ffnHiddenSize), vocab \(vocabSize)

            """)
        try suite.run()
    }
}
