import ArgumentParser
import MegatronCommandLine
import Foundation
import MegatronModels
import MegatronTraining

/// `megatron generate`: continues a prompt with the model of the latest checkpoint in --load (a
/// training run's, or one `import-hf` made), its architecture read from the checkpoint.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt with the model of a checkpoint (greedy, or top-k sampling).")

    @Option(name: .customLong("load"), help: "The checkpoint directory (its latest checkpoint is used).") var load: String
    @Option(name: .customLong("prompt"),
            help: "The text to continue (GPT-2 tokenizer), or with NullTokenizer its token ids separated by spaces.")
    var prompt: String
    @Option(name: .customLong("tokens-to-generate"), help: "How many tokens to add.") var tokensToGenerate = 32
    @Option(name: .customLong("top-k"), help: "Draw from the k likeliest tokens (1: greedy, 0: all).") var topK = 1
    @Option(name: .customLong("temperature"), help: "Logits are divided by this before sampling.") var temperature: Float = 1
    @Option(name: .customLong("seed"), help: "Seeds the sampling.") var seed = 1234
    @OptionGroup var tokenizerOptions: TokenizerOptions
    @OptionGroup(title: "Device") var device: DeviceOptions

    func validate() throws {
        guard tokensToGenerate >= 1 else { throw ValidationError("--tokens-to-generate \(tokensToGenerate): expected at least 1") }
        guard topK >= 0 else { throw ValidationError("--top-k \(topK): expected 0 or more") }
        guard temperature > 0 else { throw ValidationError("--temperature \(temperature): expected more than 0") }
        guard seed >= 0 else { throw ValidationError("--seed \(seed): expected 0 or more") }
    }

    func run() throws {
        let directory = URL(fileURLWithPath: load)
        guard let iteration = try Checkpoint.latestIteration(in: directory) else {
            throw ValidationError("--load \(load): no checkpoint there (no latest_checkpointed_iteration.txt)")
        }
        let config = try Checkpoint.progress(in: directory, iteration: iteration).model
        let tokenizer = try tokenizerOptions.makeTokenizer()
        guard tokenizer.vocabSize <= config.paddedVocabSize else {
            throw ValidationError("the tokenizer's \(tokenizer.vocabSize) tokens exceed the checkpoint's vocabulary of \(config.paddedVocabSize)")
        }
        let model = try GPTModel(config: config, seed: nil, on: device.makeDevice())
        try Checkpoint.readParameters(from: directory, iteration: iteration, layout: model.layout, into: model.parameters.floats)
        let promptTokens: [Int32]
        if tokenizerOptions.isGPT2BPE {
            promptTokens = try tokenizer.encode(prompt)
        } else {
            let words = prompt.split(separator: " "), ids = words.compactMap { Int32($0) }
            guard !ids.isEmpty, ids.count == words.count, ids.allSatisfy({ (0 ..< Int32(tokenizer.vocabSize)).contains($0) }) else {
                throw ValidationError("--prompt \"\(prompt)\": expected token ids 0 ..< \(tokenizer.vocabSize) separated by spaces")
            }
            promptTokens = ids
        }
        let generation = TextGeneration(topK: topK, temperature: temperature, seed: UInt64(seed))
        let tokens = try generation.continuation(of: promptTokens, count: tokensToGenerate, model: model,
                                                 vocabularySize: tokenizer.vocabSize, maxLength: config.maxPositionEmbeddings)
        if tokenizerOptions.isGPT2BPE {
            print(tokenizer.decode(promptTokens) + tokenizer.decode(tokens))
        } else {
            print((promptTokens + tokens).map(String.init).joined(separator: " "))
        }
    }
}
