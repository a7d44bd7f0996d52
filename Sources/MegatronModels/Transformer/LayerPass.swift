import MegatronCore

/// What every transformer layer's forward and backward need of one pass: over a micro-batch in
/// training and evaluation, or in generation over the tokens that continue a cached sequence.
struct LayerPass {
    /// Each token's position [T] (rotary embedding).
    let positions: Tensor
    /// Per token, the first key it may attend to [T] (attention kept within documents); nil: causal.
    let firstKeys: Tensor?
    /// Bidirectional attention (an encoder's): per sequence, the keys before its padding; nil: causal.
    var keyCounts: [Int]? = nil
    /// This rank's heads in the fused QKV activation of the pass's tokens.
    let attention: AttentionLayout
    /// The attention scale 1/√d.
    let scale: Float
    let dropout: DropoutKey
    /// Dropout probabilities: the configuration's in training, 0 in inference.
    let hiddenDropout: Float, attentionDropout: Float
    /// Which rows of the activations between the tensor-parallel layers this rank holds.
    let rows: RowShard
    /// In generation: where each token's sequence keeps its keys and values in the paged cache,
    /// which the attention extends and reads instead of attending within the pass.
    let cache: PagedRows?
    /// T5's relative position bias on the self-attention scores (this rank's heads), and where the
    /// gradient of its table accumulates ([heads/t, buckets]); nil without one.
    var attentionBias: (bias: Attention.Bias, gradient: Tensor?)? = nil
    /// A T5 decoder's encoder, which its cross-attention reads.
    var encoder: Encoder? = nil
    /// Under context parallelism, the ranks whose rows of the same sequences the attention reads
    /// (`RingAttention`); nil: the pass holds whole sequences.
    var contextParallel: ContextParallel? = nil
    /// Under context parallelism, where this rank's rows between the tensor-parallel layers lie in
    /// the whole micro-batch, for their dropout masks; nil: rows `rows.first` on.
    var wholeRows: DropoutRows? = nil

    /// What a decoder's cross-attention reads of the encoder.
    struct Encoder {
        /// [T_enc, h], every row.
        let output: Tensor
        /// This rank's heads over the decoder's queries and the encoder's keys.
        let layout: CrossAttentionLayout
        /// Per sequence, the encoder tokens before its padding.
        let keyCounts: [Int]
        /// [T_enc, h]: where the decoder layers' backward adds ∂output (in training).
        let gradient: Tensor?
    }
}

extension LayerPass {
    /// The pass of a training or evaluation forward of `config` on this tensor-parallel rank over
    /// `batch` sequences of `sequenceLength` tokens: causal (within documents with `firstKeys`) or,
    /// with `keyCounts`, bidirectional; dropout only in `training`; under `splitRows` (sequence
    /// parallelism) this rank's rows between the tensor-parallel layers.
    init(_ config: TransformerConfig, batch: Int, sequenceLength: Int, positions: Tensor, firstKeys: Tensor?, keyCounts: [Int]?,
         dropout: DropoutKey, training: Bool, splitRows: Bool, tensorParallel: TensorParallel) throws {
        let t = tensorParallel.size, tokens = batch * sequenceLength
        guard sequenceLength <= config.maxPositionEmbeddings else {
            throw ConfigError(flag: "--max-position-embeddings",
                              "sequence length \(sequenceLength) exceeds --max-position-embeddings \(config.maxPositionEmbeddings)")
        }
        let split = splitRows && t > 1
        guard !split || tokens % t == 0 else {
            throw ConfigError(flag: "--sequence-parallel",
                              "--sequence-parallel: the \(tokens) tokens of a micro-batch do not split over --tensor-model-parallel-size \(t)")
        }
        self.init(positions: positions, firstKeys: firstKeys, keyCounts: keyCounts,
                  attention: try .megatronFusedQKV(config, tensorParallelSize: t, batch: batch, sequenceLength: sequenceLength),
                  scale: 1 / Float(config.kvChannels).squareRoot(), dropout: dropout,
                  hiddenDropout: training ? config.hiddenDropout : 0, attentionDropout: training ? config.attentionDropout : 0,
                  rows: split ? RowShard(sequenceParallel: true, first: tensorParallel.rank * tokens / t) : .all, cache: nil)
    }
}

extension AttentionLayout {
    /// The heads of `config` that one of `tensorParallelSize` ranks holds (whole query groups), in
    /// the fused QKV activation of `batch` sequences of `sequenceLength` tokens.
    static func megatronFusedQKV(_ config: TransformerConfig, tensorParallelSize t: Int, batch: Int,
                                 sequenceLength: Int) throws -> AttentionLayout {
        try megatronFusedQKV(batch: batch, sequenceLength: sequenceLength, heads: config.numAttentionHeads / t,
                             groups: config.numQueryGroups / t, headDim: config.kvChannels)
    }
}

extension LayerPass {
    /// Where `count` rows of this rank's activations between the tensor-parallel layers lie in the
    /// whole micro-batch: the rows whose dropout masks they take, so that no layout changes them.
    func dropoutRows(count: Int) -> DropoutRows { wholeRows ?? .contiguous(from: rows.first, count: count) }
}
