import ArgumentParser
import MegatronModels

/// Model-architecture flags of Megatron-LM's pretrain_gpt.py.
struct ModelArguments: ParsableArguments {
    @Option(name: .customLong("num-layers")) var numLayers: Int
    @Option(name: .customLong("hidden-size")) var hiddenSize: Int
    @Option(name: .customLong("num-attention-heads")) var numAttentionHeads: Int
    @Option(name: .customLong("ffn-hidden-size"), help: "Default: 4 × hidden-size; with --swiglu, ⌊(8/3 × hidden-size) / 64⌋ × 64, as Megatron.") var ffnHiddenSize: Int?
    @Option(name: .customLong("kv-channels"), help: "Default: hidden-size / num-attention-heads.") var kvChannels: Int?
    @Flag(name: .customLong("group-query-attention")) var groupQueryAttention = false
    @Option(name: .customLong("num-query-groups"), help: "Key/value heads under --group-query-attention (ignored without it, as in Megatron).")
    var numQueryGroups: Int?
    @Option(name: .customLong("max-position-embeddings"), help: "Required, as in Megatron (its required_args).")
    var maxPositionEmbeddings: Int
    @Option(name: .customLong("position-embedding-type"), help: "learned_absolute or rope.")
    var positionEmbeddingType = "learned_absolute"
    @Option(name: .customLong("rotary-base")) var rotaryBase: Float = 10000
    @Option(name: .customLong("rotary-percent")) var rotaryPercent: Float = 1
    @Option(name: .customLong("normalization"), help: "LayerNorm or RMSNorm.") var normalization = "LayerNorm"
    @Option(name: .customLong("norm-epsilon")) var normEpsilon: Float = 1e-5
    @Flag(name: .customLong("swiglu")) var swiglu = false
    @Flag(name: .customLong("disable-bias-linear"), help: "No biases on linear layers (and so, as in Megatron, the exact erf GELU).")
    var disableBiasLinear = false
    @Flag(name: .customLong("no-bias-gelu-fusion"), help: "The MLP's GELU is exact (erf), not Megatron's fused tanh approximation.")
    var noBiasGELUFusion = false
    @Flag(name: .customLong("add-qkv-bias")) var addQKVBias = false
    @Flag(name: .customLong("untie-embeddings-and-output-weights")) var untieEmbeddingsAndOutputWeights = false
    @Option(name: .customLong("hidden-dropout")) var hiddenDropout: Float = 0.1
    @Option(name: .customLong("attention-dropout")) var attentionDropout: Float = 0.1
    @Option(name: .customLong("init-method-std")) var initMethodStd: Float = 0.02
    @Option(name: .customLong("make-vocab-size-divisible-by")) var makeVocabSizeDivisibleBy = 128

    /// The configuration, or a ValidationError naming the flag at fault. Megatron pads the
    /// vocabulary to a multiple of --make-vocab-size-divisible-by × --tensor-model-parallel-size.
    func config(vocabSize: Int, seqLength: Int, tensorParallelSize: Int = 1, pipelineParallelSize: Int = 1,
                pipelineEnds: (first: Int?, last: Int?) = (nil, nil)) throws -> GPTConfig {
        guard numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 || kvChannels != nil else {
            throw ValidationError("--hidden-size \(hiddenSize) is not divisible by --num-attention-heads \(numAttentionHeads)")
        }
        let position: GPTConfig.PositionEmbedding = try flagChoice(positionEmbeddingType, flag: "--position-embedding-type")
        let norm: GPTConfig.Normalization = try flagChoice(normalization, flag: "--normalization")
        guard makeVocabSizeDivisibleBy >= 1 else {
            throw ValidationError("--make-vocab-size-divisible-by \(makeVocabSizeDivisibleBy): expected a positive integer")
        }
        guard seqLength <= maxPositionEmbeddings else {
            throw ValidationError("--seq-length \(seqLength) exceeds --max-position-embeddings \(maxPositionEmbeddings)")
        }
        var c = GPTConfig(numLayers: numLayers, hiddenSize: hiddenSize, numAttentionHeads: numAttentionHeads,
                          numQueryGroups: groupQueryAttention ? (numQueryGroups ?? 1) : nil, kvChannels: kvChannels,
                          ffnHiddenSize: ffnHiddenSize ?? GPTConfig.defaultFFNHiddenSize(hiddenSize: hiddenSize, swiglu: swiglu),
                          paddedVocabSize: GPTConfig.paddedVocabSize(vocabSize, divisibleBy: makeVocabSizeDivisibleBy,
                                                                         tensorParallelSize: tensorParallelSize),
                          maxPositionEmbeddings: maxPositionEmbeddings)
        c.positionEmbedding = position
        c.rotaryBase = rotaryBase
        c.rotaryPercent = rotaryPercent
        c.normalization = norm
        c.normEpsilon = normEpsilon
        c.swiglu = swiglu
        c.biasGELUFusion = !noBiasGELUFusion
        c.addBiasLinear = !disableBiasLinear
        c.addQKVBias = addQKVBias
        c.untieEmbeddingsAndOutputWeights = untieEmbeddingsAndOutputWeights
        c.hiddenDropout = hiddenDropout
        c.attentionDropout = attentionDropout
        c.initMethodStd = initMethodStd
        (c.numLayersInFirstPipelineStage, c.numLayersInLastPipelineStage) = pipelineEnds
        if pipelineParallelSize == 1, pipelineEnds.first != nil || pipelineEnds.last != nil {
            throw ValidationError("--decoder-\(pipelineEnds.first != nil ? "first" : "last")-pipeline-num-layers needs "
                                  + "--pipeline-model-parallel-size above 1")
        }
        do {
            try c.validate()
            try c.validate(tensorParallelSize: tensorParallelSize, pipelineParallelSize: pipelineParallelSize)
        } catch { throw ValidationError("\(error)") }
        return c
    }
}
