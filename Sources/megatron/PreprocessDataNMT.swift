import ArgumentParser
import Dispatch
import Foundation
import MegatronCommandLine
import MegatronData

/// `megatron preprocess-data-nmt`: one side of a parallel corpus (one sentence a line) in,
/// Megatron's `PREFIX.bin/.idx` out, as Megatron-LM's tools/preprocess_data_nmt.py writes it: each
/// line one sequence and one document, so the source and target files of a corpus, preprocessed
/// alike, pair up by index. A line that tokenizes to nothing is an error naming it (Megatron asserts).
struct PreprocessDataNMT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess-data-nmt",
        abstract: "Tokenize one side of a parallel corpus into a Megatron .bin/.idx dataset (tools/preprocess_data_nmt.py flags).")

    @Option(help: "Plain text, one sentence a line.") var input: String
    @Option(name: .customLong("output-prefix")) var outputPrefix: String
    @OptionGroup var tokenizer: TokenizerOptions
    @Option(help: "Tokenizing threads (default: every core).") var workers = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers \(workers): expected at least 1") }
    }

    func run() throws {
        let tokenizer = try tokenizer.makeTokenizer()
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: input), options: .alwaysMapped) else {
            throw ValidationError("--input \(input): cannot be read")
        }
        let lines = InputDocuments.lines(of: data)
        let builder = try IndexedDatasetBuilder(prefix: outputPrefix, tokenType: .optimal(vocabularySize: tokenizer.vocabSize))
        let results = Results(count: lines.count)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for i in stride(from: worker, to: lines.count, by: workers) {
                let result: Result<[PreprocessData.EncodedDocument], TokenizerError>
                if let text = String(data: data[lines[i]], encoding: .utf8) {
                    result = Result { try tokenizer.encode(text) }
                        .mapError { TokenizerError("\(input):\(i + 1): \($0)") }
                        .flatMap { ids in
                            ids.isEmpty ? .failure(TokenizerError("\(input):\(i + 1): the line has no tokens (every line must be a sentence)"))
                                : .success([PreprocessData.EncodedDocument(tokens: ids, sentenceLengths: [ids.count])])
                        }
                } else {
                    result = .failure(TokenizerError("\(input):\(i + 1): not valid UTF-8"))
                }
                results.set(i, result)
            }
        }
        for result in results.all {
            let document = try result.get()[0]
            try builder.addDocument(document.tokens, lengths: document.sentenceLengths)
        }
        try builder.finish()
        print("wrote \(outputPrefix).{bin,idx}: \(lines.count) sentences")
    }
}
