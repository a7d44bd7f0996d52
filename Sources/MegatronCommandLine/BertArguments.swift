import ArgumentParser
import MegatronCore

/// pretrain_bert.py's own flags: the sentence-order head and how its dataset masks and cuts samples.
public struct BertArguments: ParsableArguments, Sendable {
    public init() {}

    @Flag(name: .customLong("bert-no-binary-head"),
          help: "No sentence-order (binary) head and no token types: masked LM alone, samples of one or more sentences.")
    public var bertNoBinaryHead = false
    @Option(name: .customLong("mask-prob"), help: "The share of each sample's tokens masked for the masked-LM loss.")
    public var maskProb = 0.15
    @Option(name: .customLong("short-seq-prob"), help: "The probability that a sample is cut to a random shorter length.")
    public var shortSeqProb = 0.1

    /// The settings, each checked.
    public func settings() throws -> PretrainPlan.Bert {
        guard maskProb > 0 && maskProb < 1 else { throw ConfigError(flag: "--mask-prob", "--mask-prob \(maskProb): expected more than 0 and less than 1") }
        guard (0 ... 1).contains(shortSeqProb) else { throw ConfigError(flag: "--short-seq-prob", "--short-seq-prob \(shortSeqProb): expected 0 ... 1") }
        return PretrainPlan.Bert(binaryHead: !bertNoBinaryHead, maskProbability: maskProb, shortSequenceProbability: shortSeqProb)
    }
}
