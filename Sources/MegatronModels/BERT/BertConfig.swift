import MegatronCore

/// The architecture of Megatron's BertModel: a transformer encoder (`transformer`: bidirectional
/// attention, pre-norm unless --apply-residual-connection-post-layernorm) with learned absolute
/// positions, under the masked-LM head, and with --bert-binary-head (Megatron's default) the two
/// token types, the pooler and the sentence-order head.
public struct BertConfig: Sendable, Equatable, Codable {
    public var transformer: TransformerConfig
    /// Megatron's bert_binary_head (off under --bert-no-binary-head).
    public var bertBinaryHead = true

    enum CodingKeys: String, CodingKey {
        case transformer, bertBinaryHead = "bert_binary_head"
    }

    public init(transformer: TransformerConfig, bertBinaryHead: Bool = true) {
        self.transformer = transformer
        self.bertBinaryHead = bertBinaryHead
    }

    /// Token types (segments A and B) with the binary head, none without (pretrain_bert.py's).
    public var numTokentypes: Int { bertBinaryHead ? 2 : 0 }

    /// Throws a message naming the option at fault when BERT cannot be built from this architecture
    /// on `tensorParallelSize` ranks.
    public func validate(tensorParallelSize: Int = 1) throws {
        try transformer.validate()
        try transformer.validate(tensorParallelSize: tensorParallelSize)
        guard transformer.positionEmbedding == .learnedAbsolute else {
            throw ConfigError(flag: "--position-embedding-type", "BERT is built with learned absolute positions here; "
                              + "--position-embedding-type \(transformer.positionEmbedding.rawValue) is not supported")
        }
        guard !transformer.untieEmbeddingsAndOutputWeights else {
            throw ConfigError(flag: "--untie-embeddings-and-output-weights",
                              "BERT's output layer is tied to its word embedding here: --untie-embeddings-and-output-weights is not supported")
        }
    }
}
