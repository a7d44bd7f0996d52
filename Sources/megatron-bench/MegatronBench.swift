import ArgumentParser

/// `megatron-bench`: speed measurements that print figures (tokens/s, TFLOP/s, shares of a measured
/// ceiling, peak memory), never pass/fail thresholds. Apart from `megatron`, so the training tool
/// carries none of it.
@main
struct MegatronBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "megatron-bench",
        abstract: "Benchmarks of swift-megatron (release builds only give meaningful figures).",
        subcommands: [BenchKernels.self, BenchGPT.self, BenchBert.self, BenchT5.self, BenchTokenizer.self, BenchAllReduce.self, BenchParallel.self, BenchServe.self]
    )
}
