import ArgumentParser

/// `megatron`: train, evaluate and benchmark GPT models the way Megatron-LM does, on the CPU.
@main
struct Megatron: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "megatron",
        abstract: "Megatron-style GPT training in Swift.",
        subcommands: [Pretrain.self, PreprocessData.self, Generate.self, ImportHF.self, ExportHF.self, Bench.self]
    )
}
