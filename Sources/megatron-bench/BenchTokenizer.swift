import ArgumentParser
import Foundation
import MegatronData

/// `megatron-bench tokenizer`: single-thread GPT-2 BPE encoding speed on a text file.
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer", abstract: "Single-thread GPT-2 BPE encoding throughput (tokens/s, MB/s) on a text file.")

    @Option(help: "UTF-8 text to encode as one document.") var input: String
    @Option(name: .customLong("vocab-file")) var vocabFile = "data/gpt2/gpt2-vocab.json"
    @Option(name: .customLong("merge-file")) var mergeFile = "data/gpt2/gpt2-merges.txt"
    @Option(help: "Timed repetitions (the best is reported).") var repeats = 3

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats \(repeats): expected at least 1") }
    }

    func run() throws {
        let tokenizer = try GPT2BPETokenizer(vocabFile: URL(fileURLWithPath: vocabFile), mergesFile: URL(fileURLWithPath: mergeFile))
        guard let text = try? String(contentsOfFile: input, encoding: .utf8) else {
            throw ValidationError("--input \(input): cannot read it as UTF-8 text")
        }
        var tokens = 0
        let timing = Timing.measure(repeats: repeats, warmup: 0) { tokens = tokenizer.encode(text).count }
        let bytes = Double(text.utf8.count)
        print("""
            \(input): \(text.utf8.count) bytes → \(tokens) tokens; best of \(repeats): \(fixed(timing.best, 3)) s, \
            \(fixed(Double(tokens) / timing.best / 1e6, 2)) M tokens/s, \(fixed(bytes / timing.best / 1e6, 1)) MB/s (1 thread)
            """)
    }
}
