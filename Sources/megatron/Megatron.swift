import ArgumentParser
import Foundation
import MegatronCore
import MegatronParallel
import MegatronTraining

/// `megatron`: train, evaluate and benchmark GPT models the way Megatron-LM does, on the CPU.
@main
struct Megatron: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "megatron",
        abstract: "Megatron-style GPT, BERT and T5 training in Swift.",
        subcommands: [Pretrain.self, PretrainBert.self, PretrainT5.self, PreprocessData.self, PreprocessDataNMT.self, Generate.self, Translate.self, Serve.self, ImportHF.self, ExportHF.self]
    )

    /// Runs the command and reports a failure by its domain, with its message: a configuration
    /// error as a usage error (exit status 64, as a bad flag), a checkpoint error with status 65
    /// (the data is at fault), anything else with status 1. A rank's error keeps its domain (an
    /// in-process rank's failure carries it as its cause).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asynchronous = command as? AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            let cause = (error as? CommunicatorError)?.cause ?? error
            switch cause {
            case is ConfigError:
                exit(withError: ValidationError("\(error)"))
            case is CheckpointError:
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                exit(withError: ExitCode(65))
            default:
                exit(withError: error)
            }
        }
    }
}
