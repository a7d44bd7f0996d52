import MegatronCore

/// The architecture of Megatron's T5Model: an encoder of `encoderNumLayers` and a decoder of
/// `decoderNumLayers` transformer layers (each decoder layer also attending over the encoder's
/// output) sharing one word embedding, which the LM head's output layer (with a bias) reuses. Positions
/// are learned absolute embeddings shared by both, or, with `relativeAttention`, T5's bucketed
/// relative position bias on every self-attention score (one table for the encoder, one for the
/// decoder). `transformer` holds the layers' shared settings; its maxPositionEmbeddings bounds both
/// sequence lengths.
public struct T5Config: Sendable, Equatable, Codable {
    public var transformer: TransformerConfig
    /// --encoder-num-layers, --decoder-num-layers
    public var encoderNumLayers: Int
    public var decoderNumLayers: Int
    /// --position-embedding-type relative: its --relative-attention-num-buckets and
    /// --relative-attention-max-distance.
    public var relativeAttention: RelativeAttention?

    public struct RelativeAttention: Sendable, Equatable, Codable {
        public var numBuckets: Int
        public var maxDistance: Int

        public init(numBuckets: Int = 32, maxDistance: Int = 128) {
            self.numBuckets = numBuckets
            self.maxDistance = maxDistance
        }
    }

    public init(transformer: TransformerConfig, encoderNumLayers: Int, decoderNumLayers: Int, relativeAttention: RelativeAttention? = nil) {
        self.transformer = transformer
        self.encoderNumLayers = encoderNumLayers
        self.decoderNumLayers = decoderNumLayers
        self.relativeAttention = relativeAttention
    }

    /// Throws a message naming the flag at fault when T5 cannot be built on `tensorParallelSize` ranks.
    public func validate(tensorParallelSize: Int = 1) throws {
        try transformer.validate()
        try transformer.validate(tensorParallelSize: tensorParallelSize)
        guard encoderNumLayers >= 1, decoderNumLayers >= 1 else {
            throw ConfigError(flag: "--encoder-num-layers", "--encoder-num-layers and --decoder-num-layers must be at least 1")
        }
        guard transformer.numQueryGroups == transformer.numAttentionHeads else {
            throw ConfigError(flag: "--group-query-attention", "T5's cross-attention has a key/value head per attention head: no --group-query-attention")
        }
        guard transformer.positionEmbedding == .learnedAbsolute else {
            throw ConfigError(flag: "--position-embedding-type", "T5 takes learned_absolute or relative positions, not \(transformer.positionEmbedding.rawValue)")
        }
        guard !transformer.untieEmbeddingsAndOutputWeights else {
            throw ConfigError(flag: "--untie-embeddings-and-output-weights", "T5's output layer is tied to its word embedding here")
        }
        if let relative = relativeAttention, relative.numBuckets < 2 || relative.maxDistance < relative.numBuckets / 2 {
            throw ConfigError(flag: "--relative-attention-num-buckets", "--relative-attention-num-buckets \(relative.numBuckets) and "
                              + "--relative-attention-max-distance \(relative.maxDistance): expected 2 or more buckets and a distance of at least half of them")
        }
    }

    /// Layer numbers: the encoder's 0 ..< E, the decoder's E ..< E + D (their dropout streams).
    var totalLayers: Int { encoderNumLayers + decoderNumLayers }
}
