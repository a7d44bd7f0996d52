import ArgumentParser
import MegatronModels

/// Model-architecture flags of Megatron-LM's pretrain_gpt.py.
public struct ModelArguments: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("num-layers"), help: "Layers (T5's encoder's; --encoder-num-layers is the same flag).")
    var numLayersFlag: Int?
    @Option(name: .customLong("encoder-num-layers"), help: "T5's spelling of --num-layers.") var encoderNumLayers: Int?
    /// --num-layers or --encoder-num-layers (Megatron's one value under two names).
    public var numLayers: Int { numLayersFlag ?? encoderNumLayers ?? 0 }

    /// Megatron's rule: one of --num-layers and --encoder-num-layers.
    public func validate() throws {
        guard (numLayersFlag == nil) != (encoderNumLayers == nil) else {
            throw ValidationError("give one of --num-layers and --encoder-num-layers (the same value)")
        }
    }
    @Option(name: .customLong("hidden-size")) public var hiddenSize: Int
    @Option(name: .customLong("num-attention-heads")) public var numAttentionHeads: Int
    @Option(name: .customLong("ffn-hidden-size"), help: "Default: 4 × hidden-size; with --swiglu, ⌊(8/3 × hidden-size) / 64⌋ × 64, as Megatron.") public var ffnHiddenSize: Int?
    @Option(name: .customLong("kv-channels"), help: "Default: hidden-size / num-attention-heads.") public var kvChannels: Int?
    @Flag(name: .customLong("group-query-attention")) public var groupQueryAttention = false
    @Option(name: .customLong("num-query-groups"), help: "Key/value heads under --group-query-attention (ignored without it, as in Megatron).")
    public var numQueryGroups: Int?
    @Option(name: .customLong("max-position-embeddings"), help: "Required, as in Megatron (its required_args).")
    public var maxPositionEmbeddings: Int
    @Option(name: .customLong("position-embedding-type"))
    public var positionEmbeddingType = TransformerConfig.PositionEmbedding.learnedAbsolute
    @Flag(name: .customLong("use-rotary-position-embeddings"), help: "Megatron's older spelling of --position-embedding-type rope.")
    public var useRotaryPositionEmbeddings = false
    @Flag(name: .customLong("no-position-embedding"), help: "No learned position embedding: accepted with rotary positions (examples/llama passes both).")
    public var noPositionEmbedding = false
    @Flag(name: .customLong("use-rope-scaling"), help: "Llama 3.1's scaling of the rotary frequencies.") public var useRopeScaling = false
    @Option(name: .customLong("rope-scaling-factor"), help: "Its factor (under --use-rope-scaling).") public var ropeScalingFactor: Float = 8
    @Option(name: .customLong("rotary-base")) public var rotaryBase: Float = 10000
    @Option(name: .customLong("rotary-percent")) public var rotaryPercent: Float = 1
    @Option(name: .customLong("normalization")) public var normalization = TransformerConfig.Normalization.layerNorm
    @Option(name: .customLong("norm-epsilon")) public var normEpsilon: Float = 1e-5
    @Flag(name: .customLong("swiglu")) public var swiglu = false
    @Flag(name: .customLong("disable-bias-linear"), help: "No biases on linear layers (and so, as in Megatron, the exact erf GELU).")
    public var disableBiasLinear = false
    @Flag(name: .customLong("no-bias-gelu-fusion"), help: "The MLP's GELU is exact (erf), not Megatron's fused tanh approximation.")
    public var noBiasGELUFusion = false
    @Flag(name: .customLong("add-qkv-bias")) public var addQKVBias = false
    @Flag(name: .customLong("untie-embeddings-and-output-weights")) public var untieEmbeddingsAndOutputWeights = false
    @Flag(name: .customLong("apply-residual-connection-post-layernorm"),
          help: "Each sub-layer's residual is its norm's output (with the final norm: the original post-norm BERT).")
    public var applyResidualConnectionPostLayernorm = false
    @Option(name: .customLong("hidden-dropout")) public var hiddenDropout: Float = 0.1
    @Option(name: .customLong("attention-dropout")) public var attentionDropout: Float = 0.1
    @Option(name: .customLong("init-method-std")) public var initMethodStd: Float = 0.02
    @Option(name: .customLong("make-vocab-size-divisible-by")) public var makeVocabSizeDivisibleBy = 128

    /// The configuration, or a ValidationError naming the flag at fault. Megatron pads the
    /// vocabulary to a multiple of --make-vocab-size-divisible-by × --tensor-model-parallel-size.
    public func config(vocabSize: Int, seqLength: Int, tensorParallelSize: Int = 1, pipelineParallelSize: Int = 1,
                pipelineEnds: (first: Int?, last: Int?) = (nil, nil), virtualPipelineStages: Int? = nil) throws -> TransformerConfig {
        guard numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 || kvChannels != nil else {
            throw ValidationError("--hidden-size \(hiddenSize) is not divisible by --num-attention-heads \(numAttentionHeads)")
        }
        guard makeVocabSizeDivisibleBy >= 1 else {
            throw ValidationError("--make-vocab-size-divisible-by \(makeVocabSizeDivisibleBy): expected a positive integer")
        }
        guard seqLength <= maxPositionEmbeddings else {
            throw ValidationError("--seq-length \(seqLength) exceeds --max-position-embeddings \(maxPositionEmbeddings)")
        }
        let positionEmbedding = useRotaryPositionEmbeddings ? .rope : positionEmbeddingType
        guard !noPositionEmbedding || positionEmbedding == .rope else {
            throw ValidationError("--no-position-embedding without --position-embedding-type rope: a model without any position "
                                  + "embedding is not built")
        }
        guard !useRopeScaling || positionEmbedding == .rope else {
            throw ValidationError("--use-rope-scaling needs --position-embedding-type rope")
        }
        var c = TransformerConfig(numLayers: numLayers, hiddenSize: hiddenSize, numAttentionHeads: numAttentionHeads,
                                  numQueryGroups: groupQueryAttention ? (numQueryGroups ?? 1) : nil, kvChannels: kvChannels,
                                  ffnHiddenSize: ffnHiddenSize ?? TransformerConfig.defaultFFNHiddenSize(hiddenSize: hiddenSize, swiglu: swiglu),
                                  paddedVocabSize: TransformerConfig.paddedVocabSize(vocabSize, divisibleBy: makeVocabSizeDivisibleBy,
                                                                                 tensorParallelSize: tensorParallelSize),
                                  maxPositionEmbeddings: maxPositionEmbeddings)
        c.positionEmbedding = positionEmbedding
        c.rotaryBase = rotaryBase
        c.rotaryPercent = rotaryPercent
        c.ropeScalingFactor = useRopeScaling ? ropeScalingFactor : nil
        c.normalization = normalization
        c.normEpsilon = normEpsilon
        c.swiglu = swiglu
        c.biasGELUFusion = !noBiasGELUFusion
        c.addBiasLinear = !disableBiasLinear
        c.addQKVBias = addQKVBias
        c.untieEmbeddingsAndOutputWeights = untieEmbeddingsAndOutputWeights
        c.applyResidualConnectionPostLayernorm = applyResidualConnectionPostLayernorm
        c.hiddenDropout = hiddenDropout
        c.attentionDropout = attentionDropout
        c.initMethodStd = initMethodStd
        (c.numLayersInFirstPipelineStage, c.numLayersInLastPipelineStage) = pipelineEnds
        c.virtualPipelineModelParallelSize = virtualPipelineStages
        if pipelineParallelSize == 1, pipelineEnds.first != nil || pipelineEnds.last != nil {
            throw ValidationError("--decoder-\(pipelineEnds.first != nil ? "first" : "last")-pipeline-num-layers needs "
                                  + "--pipeline-model-parallel-size above 1")
        }
        try c.validate()
        try c.validate(tensorParallelSize: tensorParallelSize, pipelineParallelSize: pipelineParallelSize)
        return c
    }
}
