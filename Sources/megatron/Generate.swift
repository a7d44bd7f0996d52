import ArgumentParser
import Foundation
import MegatronCommandLine
import MegatronModels
import MegatronTraining

/// `megatron generate`: continues prompts with the model of the latest checkpoint in --load (a
/// training run's, or one `import-hf` made), through the same engine as `megatron serve`: all the
/// prompts run as one continuously batched set.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue prompts with the model of a checkpoint (greedy, top-k or top-p sampling).")

    @Option(name: .customLong("load"), help: "The checkpoint directory (its latest checkpoint is used).") var load: String
    @Option(name: .customLong("prompt"),
            help: "A text to continue, or with NullTokenizer its token ids separated by spaces; repeat for several.")
    var prompts: [String]
    @Option(name: .customLong("tokens-to-generate"), help: "How many tokens to add.") var tokensToGenerate = 32
    @Option(name: .customLong("top-k"), help: "Draw from the k likeliest tokens (1: greedy, 0: all).") var topK = 1
    @Option(name: .customLong("top-p"), help: "Draw from the likeliest tokens whose probabilities reach p (0: off).") var topP: Float = 0
    @Option(name: .customLong("temperature"), help: "Logits are divided by this before sampling.") var temperature: Float = 1
    @Option(name: .customLong("seed"), help: "Seeds the sampling (prompt i draws from seed + i).") var seed = 1234
    @OptionGroup var tokenizerOptions: TokenizerOptions
    @OptionGroup(title: "Device") var device: DeviceOptions

    func validate() throws {
        guard !prompts.isEmpty else { throw ValidationError("--prompt: expected at least one") }
        guard tokensToGenerate >= 1 else { throw ValidationError("--tokens-to-generate \(tokensToGenerate): expected at least 1") }
        guard topK >= 0 else { throw ValidationError("--top-k \(topK): expected 0 or more") }
        guard (0 ... 1).contains(topP) else { throw ValidationError("--top-p \(topP): expected 0 ... 1") }
        guard temperature > 0 else { throw ValidationError("--temperature \(temperature): expected more than 0") }
        guard seed >= 0 else { throw ValidationError("--seed \(seed): expected 0 or more") }
    }

    func run() throws {
        let (model, _) = try GPTModel.latestCheckpoint(in: URL(fileURLWithPath: load), on: device.makeDevice())
        let tokenizer = try tokenizerOptions.makeTokenizer()
        let requests = try prompts.enumerated().map { i, prompt in
            let tokens: [Int32]
            do { tokens = try tokenizer.encode(prompt) } catch { throw ValidationError("--prompt \"\(prompt)\": \(error)") }
            guard !tokens.isEmpty else { throw ValidationError("--prompt \"\(prompt)\": the prompt has no tokens") }
            return InferenceRequest(prompt: tokens, sampling: SamplingParams(temperature: temperature, topK: topK, topP: topP,
                                                                             numTokensToGenerate: tokensToGenerate,
                                                                             seed: UInt64(seed + i)))
        }
        let engine = try DynamicInferenceEngine.single(model: model, vocabularySize: tokenizer.vocabSize,
                                                       positions: requests.map { $0.prompt.count + tokensToGenerate }.reduce(0, +))
        do {
            for result in try engine.generate(requests) {
                print(tokenizer.decode(result.prompt + result.tokens))
            }
        } catch let error as InferenceRequestError {
            throw ValidationError("\(error)")
        }
    }
}
