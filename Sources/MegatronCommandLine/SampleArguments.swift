import ArgumentParser

/// Our flags for a sample generated after training (Megatron has none: it serves text separately).
public struct SampleArguments: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("sample-tokens"),
            help: "After training, extend a prompt by this many generated tokens and print the result (ours).")
    public var sampleTokens = 0
    @Option(name: .customLong("sample-prompt"),
            help: "The prompt for --sample-tokens (text; not with NullTokenizer); default: the first 16 tokens of the data.")
    public var samplePrompt: String?
    @Option(name: .customLong("top-k"), help: "Sampling for --sample-tokens: draw from the k likeliest tokens (1: greedy, 0: all).")
    public var topK = 1
    @Option(name: .customLong("temperature"), help: "Sampling for --sample-tokens: logits are divided by this.")
    public var temperature: Float = 1
}
