import ArgumentParser
import MegatronCore
import MegatronModels

/// pretrain_t5.py's own flags: the decoder's depth and length, the relative positions, and how its
/// dataset corrupts spans. The encoder's are --num-layers (--encoder-num-layers) and --seq-length
/// (--encoder-seq-length).
public struct T5Arguments: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("decoder-num-layers"), help: "Decoder layers (default: the encoder's).") public var decoderNumLayers: Int?
    @Option(name: .customLong("decoder-seq-length"), help: "The decoder's sequence length: [BOS], each span's sentinel and tokens, padding.")
    public var decoderSeqLength: Int
    @Option(name: .customLong("relative-attention-num-buckets"), help: "Buckets of --position-embedding-type relative.")
    public var relativeAttentionNumBuckets = 32
    @Option(name: .customLong("relative-attention-max-distance"), help: "The distance the last bucket of relative positions starts at.")
    public var relativeAttentionMaxDistance = 128
    @Option(name: .customLong("mask-prob"), help: "The share of each sample's tokens masked (in spans).") public var maskProb = 0.15
    @Option(name: .customLong("short-seq-prob"), help: "The probability that a sample is cut to a random shorter length.")
    public var shortSeqProb = 0.1
    @Flag(name: .customLong("translation"),
          help: "Train on translation (ours): --data-path names a parallel corpus's source and target prefixes (megatron preprocess-data-nmt), the source the encoder's input and the target the decoder's.")
    public var translation = false

    /// The settings, each checked; `relative` under --position-embedding-type relative.
    public func settings(relative: Bool) throws -> PretrainPlan.T5 {
        guard maskProb > 0 && maskProb < 1 else { throw ConfigError(flag: "--mask-prob", "--mask-prob \(maskProb): expected more than 0 and less than 1") }
        guard (0 ... 1).contains(shortSeqProb) else { throw ConfigError(flag: "--short-seq-prob", "--short-seq-prob \(shortSeqProb): expected 0 ... 1") }
        guard decoderSeqLength >= 2 else {
            throw ConfigError(flag: "--decoder-seq-length", "--decoder-seq-length \(decoderSeqLength): expected 2 or more")
        }
        if let decoderNumLayers, decoderNumLayers < 1 {
            throw ConfigError(flag: "--decoder-num-layers", "--decoder-num-layers \(decoderNumLayers): expected at least 1")
        }
        return PretrainPlan.T5(decoderNumLayers: decoderNumLayers, decoderSequenceLength: decoderSeqLength, maskProbability: maskProb,
                               shortSequenceProbability: shortSeqProb, translation: translation,
                               relativeAttention: relative ? .init(numBuckets: relativeAttentionNumBuckets, maxDistance: relativeAttentionMaxDistance) : nil)
    }
}
