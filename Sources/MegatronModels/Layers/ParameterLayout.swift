import MegatronCore
import MegatronParallel

/// Where every parameter of a model (GPT's, BERT's) lives in the flat parameter buffer (and, at the same
/// offsets, in the gradient buffer). Names are Megatron-core's, so checkpoints can use them.
///
/// Under tensor parallelism each rank's buffer holds its shard of the split parameters (Megatron's
/// partitioning: column-parallel weights by output rows, row-parallel weights by input columns, the
/// word embedding and output layer by vocabulary rows) and the whole of the others. Every entry
/// records where its shard lies in the whole tensor, so checkpoints and initialisation see whole
/// tensors whatever the layout. Under pipeline parallelism a stage's layout holds only its part of
/// the model (see `PipelineStage`; under interleaving its model chunks' layers, in order), under the
/// same names.
public struct ParameterLayout: Sendable {
    /// How a parameter is split over the tensor-parallel ranks.
    public enum Split: String, Codable, Sendable, Equatable {
        /// Every rank holds all of it (norms, the position embedding, biases added after a reduction).
        case replicated
        /// Rows (dimension 0) in contiguous chunks, rank order: column-parallel weights and biases,
        /// the vocabulary-parallel embedding and output layer.
        case rows
        /// Columns (dimension 1) in contiguous chunks: row-parallel weights.
        case columns
        /// Each half of the rows in chunks: SwiGLU's fc1 [gate; value], of which a rank holds its
        /// chunk of the gate and its chunk of the value.
        case rowHalves
    }

    /// A run of a rank's shard: `count` elements at `local` in the shard, at `whole` in the whole
    /// tensor (offsets within the parameter).
    public struct Piece: Sendable, Equatable {
        public let whole: Int, local: Int, count: Int
    }

    public struct Entry: Sendable, Equatable {
        public let name: String
        /// This rank's shape.
        public let shape: [Int]
        /// The whole parameter's shape.
        public let wholeShape: [Int]
        public let offset: Int
        public let split: Split
        /// Where this rank's elements lie in the whole tensor.
        public let pieces: [Piece]
        /// Megatron skips weight decay on biases and other one-dimensional parameters (norm weights).
        public var decays: Bool { shape.count > 1 }
        public var count: Int { shape.reduce(1, *) }
        /// Whether the ranks hold different parts of it (not the whole, replicated).
        public var isSharded: Bool { shape != wholeShape }
    }

    public private(set) var entries: [Entry] = []
    public private(set) var totalCount = 0
    public let tensorParallelRank: Int
    public let tensorParallelSize: Int
    public let pipelineStage: Int
    public let pipelineStages: Int
    private var index: [String: Int] = [:]

    /// An empty layout of tensor-parallel rank `tensorParallelRank` of `tensorParallelSize` in
    /// pipeline stage `pipelineStage` of `pipelineStages`, which a model fills with `add`.
    init(tensorParallelRank: Int, tensorParallelSize: Int, pipelineStage: Int, pipelineStages: Int) {
        self.tensorParallelRank = tensorParallelRank
        self.tensorParallelSize = tensorParallelSize
        self.pipelineStage = pipelineStage
        self.pipelineStages = pipelineStages
    }

    /// The layout of a GPT model's tensor-parallel rank `tensorParallelRank` of `tensorParallelSize`
    /// in pipeline stage `pipelineStage` of `pipelineStages` (whose divisibility
    /// `TransformerConfig.validate` checks).
    public init(_ config: TransformerConfig, tensorParallelRank: Int = 0, tensorParallelSize: Int = 1, pipelineStage: Int = 0,
                pipelineStages: Int = 1) {
        self.init(tensorParallelRank: tensorParallelRank, tensorParallelSize: tensorParallelSize, pipelineStage: pipelineStage,
                  pipelineStages: pipelineStages)
        let h = config.hiddenSize
        let first = pipelineStage == 0, last = pipelineStage == pipelineStages - 1
        if first {
            add("embedding.word_embeddings.weight", [config.paddedVocabSize, h], .rows)
            if config.positionEmbedding == .learnedAbsolute {
                add("embedding.position_embeddings.weight", [config.maxPositionEmbeddings, h], .replicated)
            }
        }
        for layer in PipelineStage.layers(config, stage: pipelineStage, of: pipelineStages).joined() {
            addTransformerLayer(config, prefix: "decoder.layers.\(layer).")
        }
        guard last else { return }
        addNorm(config, "decoder.final_layernorm")
        if config.untieEmbeddingsAndOutputWeights {
            add("output_layer.weight", [config.paddedVocabSize, h], .rows)
        } else if !first {
            add("embedding.word_embeddings.weight", [config.paddedVocabSize, h], .rows)
        }
    }

    /// A transformer layer's parameters under `prefix` ("decoder.layers.3."), in Megatron-core's order;
    /// with `crossAttention`, a T5 decoder layer's.
    mutating func addTransformerLayer(_ config: TransformerConfig, prefix p: String, crossAttention: Bool = false) {
        let h = config.hiddenSize, fc1Split: Split = config.swiglu ? .rowHalves : .rows
        addNorm(config, p + "input_layernorm")
        add(p + "self_attention.linear_qkv.weight", [config.qkvWidth, h], .rows)
        if config.qkvHasBias { add(p + "self_attention.linear_qkv.bias", [config.qkvWidth], .rows) }
        add(p + "self_attention.linear_proj.weight", [h, config.attentionWidth], .columns)
        if config.addBiasLinear { add(p + "self_attention.linear_proj.bias", [h], .replicated) }
        if crossAttention {
            addNorm(config, p + "pre_cross_attn_layernorm")
            add(p + "cross_attention.linear_q.weight", [config.attentionWidth, h], .rows)
            if config.addBiasLinear { add(p + "cross_attention.linear_q.bias", [config.attentionWidth], .rows) }
            add(p + "cross_attention.linear_kv.weight", [2 * config.attentionWidth, h], .rows)
            if config.addBiasLinear { add(p + "cross_attention.linear_kv.bias", [2 * config.attentionWidth], .rows) }
            add(p + "cross_attention.linear_proj.weight", [h, config.attentionWidth], .columns)
            if config.addBiasLinear { add(p + "cross_attention.linear_proj.bias", [h], .replicated) }
        }
        addNorm(config, p + "pre_mlp_layernorm")
        add(p + "mlp.linear_fc1.weight", [config.fc1Width, h], fc1Split)
        if config.addBiasLinear { add(p + "mlp.linear_fc1.bias", [config.fc1Width], fc1Split) }
        add(p + "mlp.linear_fc2.weight", [h, config.ffnHiddenSize], .columns)
        if config.addBiasLinear { add(p + "mlp.linear_fc2.bias", [h], .replicated) }
    }

    /// A norm's weight (and LayerNorm's bias) named `name`.weight (.bias), replicated.
    mutating func addNorm(_ config: TransformerConfig, _ name: String) {
        add(name + ".weight", [config.hiddenSize], .replicated)
        if config.normHasBias { add(name + ".bias", [config.hiddenSize], .replicated) }
    }

    /// Whether `entry` is the last stage's copy of the word embedding (see `PipelineStage`).
    public func isSharedEmbeddingCopy(_ entry: Entry) -> Bool {
        pipelineStage > 0 && entry.name == "embedding.word_embeddings.weight"
    }

    /// Appends parameter `name` of whole shape `whole`, of which this rank holds its `split` share.
    mutating func add(_ name: String, _ whole: [Int], _ split: Split) {
        let split = tensorParallelSize == 1 ? .replicated : split
        var shape = whole
        switch split {
        case .replicated: break
        case .rows, .rowHalves: shape[0] /= tensorParallelSize
        case .columns: shape[1] /= tensorParallelSize
        }
        index[name] = entries.count
        entries.append(Entry(name: name, shape: shape, wholeShape: whole, offset: totalCount, split: split,
                             pieces: Self.pieces(of: whole, split: split, rank: tensorParallelRank, of: tensorParallelSize)))
        totalCount += shape.reduce(1, *)
    }

    /// Where tensor-parallel rank `rank` of `size` holds its `split` share of a tensor of shape
    /// `whole`: runs in ascending order of both their place in the whole tensor and in the shard.
    public static func pieces(of whole: [Int], split: Split, rank r: Int, of t: Int) -> [Piece] {
        let inner = whole.dropFirst().reduce(1, *), wholeCount = whole.reduce(1, *)
        switch split {
        case .replicated:
            return [Piece(whole: 0, local: 0, count: wholeCount)]
        case .rows:
            let rows = whole[0] / t
            return [Piece(whole: r * rows * inner, local: 0, count: rows * inner)]
        case .rowHalves:
            let chunk = whole[0] / t / 2 * inner, half = whole[0] / 2 * inner
            return [Piece(whole: r * chunk, local: 0, count: chunk), Piece(whole: half + r * chunk, local: chunk, count: chunk)]
        case .columns:
            let columns = whole[1] / t
            return (0 ..< whole[0]).map { row in Piece(whole: row * whole[1] + r * columns, local: row * columns, count: columns) }
        }
    }

    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The span of the flat buffer holding every parameter whose name starts with `prefix`
    /// ("decoder.layers.3.", "embedding."); empty when there is none. Such parameters are adjacent.
    public func range(ofPrefix prefix: String) -> Range<Int> {
        let matching = entries.filter { $0.name.hasPrefix(prefix) }
        guard let first = matching.first, let last = matching.last else { return 0 ..< 0 }
        return first.offset ..< last.offset + last.count
    }

    /// The spans of the flat buffer that count toward a norm over the whole model on this rank:
    /// the sharded parameters, and the replicated ones on tensor-parallel rank 0 only, less the last
    /// stage's copy of the word embedding (Megatron's rule against counting duplicates). Summed
    /// over the tensor- and pipeline-parallel groups, the squares of these spans give the whole model's.
    public var normSpans: [Range<Int>] {
        var spans: [Range<Int>] = []
        for entry in entries where (entry.isSharded || tensorParallelRank == 0) && !isSharedEmbeddingCopy(entry) {
            let range = entry.offset ..< entry.offset + entry.count
            if let last = spans.last, last.upperBound == range.lowerBound {
                spans[spans.count - 1] = last.lowerBound ..< range.upperBound
            } else {
                spans.append(range)
            }
        }
        return spans
    }
}

extension ParameterLayout {
    /// Copies a buffer laid out as this (a rank's) layout into its places in `whole`, a buffer laid
    /// out as `wholeLayout` (the same model on one rank); the last stage's copy of the word embedding
    /// is left out, the first stage's being the one.
    public func place(_ local: UnsafePointer<Float>, into whole: UnsafeMutablePointer<Float>, wholeLayout: ParameterLayout) {
        for entry in entries where !isSharedEmbeddingCopy(entry) {
            let base = wholeLayout.entry(entry.name)!.offset
            for piece in entry.pieces {
                (whole + base + piece.whole).update(from: local + entry.offset + piece.local, count: piece.count)
            }
        }
    }
}

extension ParameterLayout {
    /// Sums `entries` of `buffer` (laid out as this layout) over `group`, packed into one fp32
    /// message (a 16-bit buffer's values converted, and their sums rounded back).
    func allReduce(_ entries: [Entry], of buffer: Tensor, over group: any Communicator, on device: CPUDevice) throws {
        let packed = try Tensor(shape: [entries.reduce(0) { $0 + $1.count }], on: device, zeroed: false)
        var offset = 0
        for e in entries {
            try packed.view(offset: offset, shape: [e.count]).assign(converting: buffer.view(offset: e.offset, shape: [e.count]), on: device)
            offset += e.count
        }
        try group.allReduce(UnsafeMutableBufferPointer(start: packed.floats, count: packed.count), op: .sum)
        offset = 0
        for e in entries {
            try buffer.view(offset: e.offset, shape: [e.count]).assign(converting: packed.view(offset: offset, shape: [e.count]), on: device)
            offset += e.count
        }
    }
}
