import ArgumentParser
import Foundation
import MegatronCommandLine
import MegatronData
import MegatronModels
import MegatronTraining

/// `megatron translate`: each line of --input (a source sentence) through the T5 model of the latest
/// checkpoint in --load (`pretrain-t5 --translation`'s), greedy decoding from [BOS] to [EOS], one
/// translation a line to --output (or standard output).
struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Translate sentences with a T5 checkpoint (greedy decoding).")

    @Option(name: .customLong("load"), help: "The checkpoint directory (its latest checkpoint is used).") var load: String
    @Option(help: "Source sentences, one a line.") var input: String
    @Option(help: "Where the translations go, one a line (default: standard output).") var output: String?
    @Option(name: .customLong("max-new-tokens"), help: "The most tokens a translation may have.") var maxNewTokens = 64
    @Option(name: .customLong("micro-batch-size"), help: "Sentences decoded together.") var microBatchSize = 16
    @OptionGroup var tokenizerOptions: TokenizerOptions
    @OptionGroup(title: "Device") var device: DeviceOptions

    func validate() throws {
        guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens \(maxNewTokens): expected at least 1") }
        guard microBatchSize >= 1 else { throw ValidationError("--micro-batch-size \(microBatchSize): expected at least 1") }
    }

    func run() throws {
        guard let tokenizer = try tokenizerOptions.makeTokenizer() as? BertWordPieceTokenizer else {
            throw ValidationError("--tokenizer-type: T5 translates with BertWordPieceLowerCase or BertWordPieceCase ([BOS] and [EOS])")
        }
        guard let text = try? String(contentsOfFile: input, encoding: .utf8) else { throw ValidationError("--input \(input): cannot be read") }
        let (model, iteration) = try T5Model.latestCheckpoint(in: URL(fileURLWithPath: load), on: device.makeDevice())
        let sentences = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).dropLast(text.hasSuffix("\n") ? 1 : 0)
        let sources = try sentences.enumerated().map { i, sentence in
            let ids = try tokenizer.encode(sentence)
            guard !ids.isEmpty else { throw ValidationError("--input \(input):\(i + 1): the line has no tokens") }
            return ids
        }
        var lines: [String] = []
        for start in stride(from: 0, to: sources.count, by: microBatchSize) {
            let batch = Array(sources[start ..< min(start + microBatchSize, sources.count)])
            let translations = try model.greedyDecode(batch, maxNewTokens: min(maxNewTokens, model.config.transformer.maxPositionEmbeddings - 1),
                                                      vocabularySize: tokenizer.vocabSize, start: tokenizer.bos, end: tokenizer.eos)
            lines += translations.map { tokenizer.decode($0.last == tokenizer.eos ? Array($0.dropLast()) : $0) }
        }
        let result = lines.joined(separator: "\n") + "\n"
        if let output {
            try result.write(toFile: output, atomically: true, encoding: .utf8)
            FileHandle.standardError.write(Data("translated \(lines.count) sentences with the checkpoint of iteration \(iteration) into \(output)\n".utf8))
        } else {
            print(result, terminator: "")
        }
    }
}
