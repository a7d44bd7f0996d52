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
}
