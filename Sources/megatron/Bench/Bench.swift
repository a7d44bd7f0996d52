import ArgumentParser

/// `megatron bench`: speed measurements that print figures, never pass/fail thresholds.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (release builds only give meaningful figures).",
        subcommands: [BenchKernels.self, BenchGPT.self, BenchTokenizer.self, BenchAllReduce.self, BenchDataParallel.self]
    )
}
