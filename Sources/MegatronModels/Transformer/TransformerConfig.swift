import MegatronCore

/// The architecture of a transformer language model, with Megatron-LM's option names and defaults:
/// a GPT decoder's, or a BERT encoder's (`BertConfig` adds its heads).
public struct TransformerConfig: Sendable, Equatable, Codable {
    public enum PositionEmbedding: String, Sendable, CaseIterable, Codable {
        case learnedAbsolute = "learned_absolute", rope
        /// T5's bucketed relative position bias (T5Config.relativeAttention); GPT and BERT refuse it.
        case relative
    }
    public enum Normalization: String, Sendable, CaseIterable, Codable { case layerNorm = "LayerNorm", rmsNorm = "RMSNorm" }

    public var numLayers: Int
    public var hiddenSize: Int
    public var numAttentionHeads: Int
    /// Key/value heads (`--num-query-groups` under `--group-query-attention`); heads when not grouped.
    public var numQueryGroups: Int
    /// Features per attention head (`--kv-channels`, default hidden / heads).
    public var kvChannels: Int
    public var ffnHiddenSize: Int
    /// The padded vocabulary: rows of the word embedding and of the logits.
    public var paddedVocabSize: Int
    public var maxPositionEmbeddings: Int
    public var positionEmbedding: PositionEmbedding = .learnedAbsolute
    public var rotaryBase: Float = 10000
    public var rotaryPercent: Float = 1
    /// Llama 3.1's rotary scaling factor (`--use-rope-scaling --rope-scaling-factor`); nil: unscaled.
    public var ropeScalingFactor: Float?
    public var normalization: Normalization = .layerNorm
    public var normEpsilon: Float = 1e-5
    public var swiglu = false
    /// Megatron's `bias_gelu_fusion` (on unless --no-bias-gelu-fusion or --disable-bias-linear): the
    /// MLP's GELU is its fused tanh approximation; off, it is F.gelu, the exact erf form.
    public var biasGELUFusion = true
    /// Biases on every linear layer (false under `--disable-bias-linear`).
    public var addBiasLinear = true
    /// A bias on the QKV projection even when `addBiasLinear` is false (`--add-qkv-bias`).
    public var addQKVBias = false
    public var untieEmbeddingsAndOutputWeights = false
    /// Megatron's --apply-residual-connection-post-layernorm: each sub-layer's residual is its norm's
    /// output instead of its input, out = norm(x) + f(norm(x)). With the final norm that is the
    /// original, post-norm BERT (each of its norms one place later: the embeddings' is layer 0's
    /// input norm).
    public var applyResidualConnectionPostLayernorm = false
    public var hiddenDropout: Float = 0.1
    public var attentionDropout: Float = 0.1
    public var initMethodStd: Float = 0.02
    /// Transformer layers on the first and on the last pipeline stage (Megatron's
    /// --decoder-first/last-pipeline-num-layers; nil: an equal share), the other stages sharing the
    /// rest equally. How the model is split, not what it is: checkpoints load across splits.
    public var numLayersInFirstPipelineStage: Int?
    public var numLayersInLastPipelineStage: Int?
    /// Model chunks per pipeline rank under the interleaved schedule (Megatron-core's
    /// virtual_pipeline_model_parallel_size; nil: one). With p stages and v chunks the layers split
    /// into p·v equal virtual stages, of which rank i holds i, p + i, 2p + i, … (see `PipelineStage`).
    /// Also how the model is split, not what it is.
    public var virtualPipelineModelParallelSize: Int?

    /// Encoded (in checkpoints) under Megatron's argument names.
    enum CodingKeys: String, CodingKey {
        case numLayers = "num_layers", hiddenSize = "hidden_size", numAttentionHeads = "num_attention_heads"
        case numQueryGroups = "num_query_groups", kvChannels = "kv_channels", ffnHiddenSize = "ffn_hidden_size"
        case paddedVocabSize = "padded_vocab_size", maxPositionEmbeddings = "max_position_embeddings"
        case positionEmbedding = "position_embedding_type", rotaryBase = "rotary_base", rotaryPercent = "rotary_percent"
        case ropeScalingFactor = "rope_scaling_factor"
        case normalization, normEpsilon = "norm_epsilon", swiglu, biasGELUFusion = "bias_gelu_fusion"
        case addBiasLinear = "add_bias_linear", addQKVBias = "add_qkv_bias"
        case untieEmbeddingsAndOutputWeights = "untie_embeddings_and_output_weights"
        case applyResidualConnectionPostLayernorm = "apply_residual_connection_post_layernorm"
        case hiddenDropout = "hidden_dropout", attentionDropout = "attention_dropout", initMethodStd = "init_method_std"
        case numLayersInFirstPipelineStage = "decoder_first_pipeline_num_layers"
        case numLayersInLastPipelineStage = "decoder_last_pipeline_num_layers"
        case virtualPipelineModelParallelSize = "virtual_pipeline_model_parallel_size"
    }

    /// The fields in which `other` describes another network (dropout and initialisation aside),
    /// each as "name: ours vs other's", by Megatron's argument names.
    public func architectureDifferences(from other: TransformerConfig) -> [String] {
        func field<T: Equatable>(_ key: CodingKeys, _ path: KeyPath<TransformerConfig, T>) -> String? {
            self[keyPath: path] == other[keyPath: path] ? nil : "\(key.rawValue) \(self[keyPath: path]) vs \(other[keyPath: path])"
        }
        return [field(.numLayers, \.numLayers), field(.hiddenSize, \.hiddenSize), field(.numAttentionHeads, \.numAttentionHeads),
                field(.numQueryGroups, \.numQueryGroups), field(.kvChannels, \.kvChannels), field(.ffnHiddenSize, \.ffnHiddenSize),
                field(.paddedVocabSize, \.paddedVocabSize), field(.maxPositionEmbeddings, \.maxPositionEmbeddings),
                field(.positionEmbedding, \.positionEmbedding), field(.rotaryBase, \.rotaryBase), field(.rotaryPercent, \.rotaryPercent),
                self.ropeScalingFactor == other.ropeScalingFactor ? nil
                    : "rope_scaling_factor \(self.ropeScalingFactor.map { "\($0)" } ?? "none") vs \(other.ropeScalingFactor.map { "\($0)" } ?? "none")",
                field(.normalization, \.normalization), field(.normEpsilon, \.normEpsilon), field(.swiglu, \.swiglu),
                field(.biasGELUFusion, \.biasGELUFusion), field(.addBiasLinear, \.addBiasLinear), field(.addQKVBias, \.addQKVBias),
                field(.untieEmbeddingsAndOutputWeights, \.untieEmbeddingsAndOutputWeights),
                field(.applyResidualConnectionPostLayernorm, \.applyResidualConnectionPostLayernorm)].compactMap { $0 }
    }

    /// Decodes a checkpoint's configuration; options added after it was written take their defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(numLayers: try c.decode(Int.self, forKey: .numLayers), hiddenSize: try c.decode(Int.self, forKey: .hiddenSize),
                  numAttentionHeads: try c.decode(Int.self, forKey: .numAttentionHeads),
                  numQueryGroups: try c.decode(Int.self, forKey: .numQueryGroups), kvChannels: try c.decode(Int.self, forKey: .kvChannels),
                  ffnHiddenSize: try c.decode(Int.self, forKey: .ffnHiddenSize),
                  paddedVocabSize: try c.decode(Int.self, forKey: .paddedVocabSize),
                  maxPositionEmbeddings: try c.decode(Int.self, forKey: .maxPositionEmbeddings))
        func read<T: Decodable>(_ path: WritableKeyPath<TransformerConfig, T>, _ key: CodingKeys) throws {
            if let value = try c.decodeIfPresent(T.self, forKey: key) { self[keyPath: path] = value }
        }
        try read(\.positionEmbedding, .positionEmbedding)
        try read(\.rotaryBase, .rotaryBase)
        try read(\.rotaryPercent, .rotaryPercent)
        ropeScalingFactor = try c.decodeIfPresent(Float.self, forKey: .ropeScalingFactor)
        try read(\.normalization, .normalization)
        try read(\.normEpsilon, .normEpsilon)
        try read(\.swiglu, .swiglu)
        try read(\.biasGELUFusion, .biasGELUFusion)
        try read(\.addBiasLinear, .addBiasLinear)
        try read(\.addQKVBias, .addQKVBias)
        try read(\.untieEmbeddingsAndOutputWeights, .untieEmbeddingsAndOutputWeights)
        try read(\.applyResidualConnectionPostLayernorm, .applyResidualConnectionPostLayernorm)
        try read(\.hiddenDropout, .hiddenDropout)
        try read(\.attentionDropout, .attentionDropout)
        try read(\.initMethodStd, .initMethodStd)
        numLayersInFirstPipelineStage = try c.decodeIfPresent(Int.self, forKey: .numLayersInFirstPipelineStage)
        numLayersInLastPipelineStage = try c.decodeIfPresent(Int.self, forKey: .numLayersInLastPipelineStage)
        virtualPipelineModelParallelSize = try c.decodeIfPresent(Int.self, forKey: .virtualPipelineModelParallelSize)
    }

    public init(numLayers: Int, hiddenSize: Int, numAttentionHeads: Int, numQueryGroups: Int? = nil, kvChannels: Int? = nil,
                ffnHiddenSize: Int? = nil, paddedVocabSize: Int, maxPositionEmbeddings: Int) {
        self.numLayers = numLayers
        self.hiddenSize = hiddenSize
        self.numAttentionHeads = numAttentionHeads
        self.numQueryGroups = numQueryGroups ?? numAttentionHeads
        self.kvChannels = kvChannels ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        self.ffnHiddenSize = ffnHiddenSize ?? Self.defaultFFNHiddenSize(hiddenSize: hiddenSize, swiglu: false)
        self.paddedVocabSize = paddedVocabSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
    }

    /// Megatron's `--ffn-hidden-size` when the flag is absent: 4h, or with SwiGLU (whose fc1 is two
    /// projections) ⌊(8h/3) / 64⌋·64, which keeps the MLP near the same parameter count.
    public static func defaultFFNHiddenSize(hiddenSize: Int, swiglu: Bool) -> Int {
        swiglu ? 4 * hiddenSize * 2 / 3 / 64 * 64 : 4 * hiddenSize
    }

    /// Megatron's vocabulary padding: the smallest multiple of `divisibleBy` (× tensor-parallel size)
    /// that holds `vocabSize`.
    public static func paddedVocabSize(_ vocabSize: Int, divisibleBy: Int = 128, tensorParallelSize: Int = 1) -> Int {
        let multiple = divisibleBy * tensorParallelSize
        return (vocabSize + multiple - 1) / multiple * multiple
    }

    /// Width of the attention context: heads × kv-channels.
    public var attentionWidth: Int { numAttentionHeads * kvChannels }
    /// Width of the fused QKV projection: (heads + 2·groups) × kv-channels.
    public var qkvWidth: Int { (numAttentionHeads + 2 * numQueryGroups) * kvChannels }
    /// Width of fc1's output: 2·ffn under SwiGLU (gate and value), ffn otherwise.
    public var fc1Width: Int { swiglu ? 2 * ffnHiddenSize : ffnHiddenSize }
    /// Features of each head that rotary embedding rotates: kv-channels × rotary-percent, even; a
    /// percent above 1 means all of them, as in Megatron.
    public var rotaryDim: Int { Int((Float(kvChannels) * min(rotaryPercent, 1)).rounded(.down)) / 2 * 2 }
    public var qkvHasBias: Bool { addBiasLinear || addQKVBias }
    /// The MLP's GELU: tanh-approximated when Megatron fuses it with the bias, else exact.
    public var geluApproximation: GELU.Approximation { biasGELUFusion && addBiasLinear ? .tanh : .none }
    public var normHasBias: Bool { normalization == .layerNorm }

    /// Throws a message naming the option at fault when the architecture is inconsistent.
    public func validate() throws {
        guard numLayers >= 1 else { throw ConfigError(flag: "--num-layers", "--num-layers \(numLayers): expected at least 1") }
        guard hiddenSize >= 1, numAttentionHeads >= 1 else { throw ConfigError(flag: "--hidden-size", "--hidden-size and --num-attention-heads must be positive") }
        guard numQueryGroups >= 1 else { throw ConfigError(flag: "--num-query-groups", "--num-query-groups \(numQueryGroups): expected at least 1") }
        guard numAttentionHeads % numQueryGroups == 0 else {
            throw ConfigError(flag: "--num-attention-heads", "--num-attention-heads \(numAttentionHeads) is not divisible by --num-query-groups \(numQueryGroups)")
        }
        guard kvChannels >= 1 else {
            throw ConfigError(flag: "--hidden-size", "--hidden-size \(hiddenSize) gives no --kv-channels for \(numAttentionHeads) heads")
        }
        guard ffnHiddenSize >= 1, paddedVocabSize >= 1, maxPositionEmbeddings >= 1 else {
            throw ConfigError(flag: "--ffn-hidden-size", "--ffn-hidden-size, the vocabulary and --max-position-embeddings must be positive")
        }
        guard positionEmbedding != .rope || rotaryDim >= 2 else {
            throw ConfigError(flag: "--rotary-percent", "--rotary-percent \(rotaryPercent) leaves no features of the \(kvChannels) kv-channels to rotate")
        }
        guard ropeScalingFactor.map({ $0 >= 1 && positionEmbedding == .rope }) ?? true else {
            throw ConfigError(flag: "--rope-scaling-factor", "--rope-scaling-factor \(ropeScalingFactor!): expected at least 1, with rotary positions")
        }
        guard positionEmbedding != .rope || rotaryBase > 0 else { throw ConfigError(flag: "--rotary-base", "--rotary-base \(rotaryBase): expected a positive base") }
        guard initMethodStd >= 0 else { throw ConfigError(flag: "--init-method-std", "--init-method-std \(initMethodStd): expected 0 or more") }
        guard (0 ..< 1).contains(hiddenDropout), (0 ..< 1).contains(attentionDropout) else {
            throw ConfigError(flag: "--hidden-dropout", "--hidden-dropout and --attention-dropout must be in [0, 1)")
        }
    }

    /// Throws a message naming the option at fault when the model cannot be split over
    /// `tensorParallelSize` ranks (each must hold whole query groups, so whole heads, an equal share
    /// of the MLP's features and of the padded vocabulary) and `pipelineParallelSize` stages (an
    /// equal number of layers each, but for the first and last stages' own numbers when given; under
    /// the interleaved schedule an equal number in each model chunk).
    public func validate(tensorParallelSize t: Int, pipelineParallelSize p: Int = 1) throws {
        let ends = [("--decoder-first-pipeline-num-layers", numLayersInFirstPipelineStage),
                    ("--decoder-last-pipeline-num-layers", numLayersInLastPipelineStage)].compactMap { flag, n in n.map { (flag, $0) } }
        // One stage holds every layer, whatever the split says (a checkpoint's may).
        if let v = virtualPipelineModelParallelSize, p > 1 {
            let flag = "--num-layers-per-virtual-pipeline-stage"
            guard v >= 1 else { throw ConfigError(flag: flag, "\(v) model chunks per pipeline rank: expected at least 1") }
            guard ends.isEmpty else {
                throw ConfigError(flag: flag, "\(flag) does not combine with \(ends[0].0) here: the interleaved schedule splits the layers evenly")
            }
            guard numLayers % (p * v) == 0 else {
                throw ConfigError(flag: flag, "--num-layers \(numLayers) does not split into \(v) model chunks on each of "
                                  + "--pipeline-model-parallel-size \(p) stages: expected a multiple of \(p * v)")
            }
        } else if ends.isEmpty || p == 1 {
            guard numLayers % p == 0 else {
                throw ConfigError(flag: "--num-layers", "--num-layers \(numLayers) is not divisible by --pipeline-model-parallel-size \(p)")
            }
        } else {
            if let (flag, n) = ends.first(where: { $0.1 <= 0 }) { throw ConfigError(flag: flag, "\(flag) \(n): expected at least 1") }
            // As Megatron's TransformerConfig: middle layers exactly when there are middle stages, evenly.
            let middleLayers = numLayers - ends.reduce(0) { $0 + $1.1 }, middleStages = p - ends.count
            let given = ends.map { "\($0.0) \($0.1)" }.joined(separator: " and ")
            if middleStages == 0, middleLayers != 0 {
                throw ConfigError(flag: ends[0].0, "\(given) on the only two pipeline stages: expected them to add up to --num-layers \(numLayers)")
            }
            guard middleStages == 0 || middleLayers >= middleStages && middleLayers % middleStages == 0 else {
                throw ConfigError(flag: ends[0].0, "\(given) \(ends.count == 1 ? "leaves" : "leave") \(middleLayers) of --num-layers \(numLayers) "
                                  + "for \(middleStages) other pipeline stage(s) of --pipeline-model-parallel-size \(p): "
                                  + "expected an equal number on each, at least 1")
            }
        }
        guard t > 1 else { return }
        let flag = "--tensor-model-parallel-size \(t)"
        guard numQueryGroups % t == 0 else {
            throw numQueryGroups == numAttentionHeads
                ? ConfigError(flag: "--num-attention-heads", "--num-attention-heads \(numAttentionHeads) is not divisible by \(flag)")
                : ConfigError(flag: "--num-query-groups", "--num-query-groups \(numQueryGroups) is not divisible by \(flag)")
        }
        guard ffnHiddenSize % t == 0 else { throw ConfigError(flag: "--ffn-hidden-size", "--ffn-hidden-size \(ffnHiddenSize) is not divisible by \(flag)") }
        guard paddedVocabSize % t == 0 else {
            throw ConfigError(flag: "--tensor-model-parallel-size", "the padded vocabulary of \(paddedVocabSize) is not divisible by \(flag)")
        }
    }

    /// Parameters of the whole model.
    public var parameterCount: Int { ParameterLayout(self).totalCount }
}
