/// Where every parameter of a GPT model lives in the flat parameter buffer (and, at the same
/// offsets, in the gradient buffer). Names are Megatron-core's, so checkpoints can use them.
public struct ParameterLayout: Sendable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        /// Megatron skips weight decay on biases and other one-dimensional parameters (norm weights).
        public var decays: Bool { shape.count > 1 }
        public var count: Int { shape.reduce(1, *) }
    }

    public private(set) var entries: [Entry] = []
    public private(set) var totalCount = 0
    private var index: [String: Int] = [:]

    public init(_ config: GPTConfig) {
        let h = config.hiddenSize
        add("embedding.word_embeddings.weight", [config.paddedVocabSize, h])
        if config.positionEmbedding == .learnedAbsolute {
            add("embedding.position_embeddings.weight", [config.maxPositionEmbeddings, h])
        }
        for layer in 0 ..< config.numLayers {
            let p = "decoder.layers.\(layer)."
            add(p + "input_layernorm.weight", [h])
            if config.normHasBias { add(p + "input_layernorm.bias", [h]) }
            add(p + "self_attention.linear_qkv.weight", [config.qkvWidth, h])
            if config.qkvHasBias { add(p + "self_attention.linear_qkv.bias", [config.qkvWidth]) }
            add(p + "self_attention.linear_proj.weight", [h, config.attentionWidth])
            if config.addBiasLinear { add(p + "self_attention.linear_proj.bias", [h]) }
            add(p + "pre_mlp_layernorm.weight", [h])
            if config.normHasBias { add(p + "pre_mlp_layernorm.bias", [h]) }
            add(p + "mlp.linear_fc1.weight", [config.fc1Width, h])
            if config.addBiasLinear { add(p + "mlp.linear_fc1.bias", [config.fc1Width]) }
            add(p + "mlp.linear_fc2.weight", [h, config.ffnHiddenSize])
            if config.addBiasLinear { add(p + "mlp.linear_fc2.bias", [h]) }
        }
        add("decoder.final_layernorm.weight", [h])
        if config.normHasBias { add("decoder.final_layernorm.bias", [h]) }
        if config.untieEmbeddingsAndOutputWeights { add("output_layer.weight", [config.paddedVocabSize, h]) }
    }

    private mutating func add(_ name: String, _ shape: [Int]) {
        index[name] = entries.count
        entries.append(Entry(name: name, shape: shape, offset: totalCount))
        totalCount += shape.reduce(1, *)
    }

    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The span of the flat buffer holding every parameter whose name starts with `prefix`
    /// ("decoder.layers.3.", "embedding."); empty when there is none. Such parameters are adjacent.
    public func range(ofPrefix prefix: String) -> Range<Int> {
        let matching = entries.filter { $0.name.hasPrefix(prefix) }
        guard let first = matching.first, let last = matching.last else { return 0 ..< 0 }
        return first.offset ..< last.offset + last.count
    }
}
