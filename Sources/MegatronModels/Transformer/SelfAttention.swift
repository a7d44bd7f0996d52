import MegatronCore

/// Megatron's SelfAttention over this tensor-parallel rank's heads (whole query groups): the fused
/// QKV projection (column-parallel), rotary embedding of queries and keys, the attention core, and
/// the output projection (row-parallel). With d = kv-channels, t ranks, x the normalised input:
///
///     qkv     = linear_qkv(x)                          [T, (heads + 2·groups)/t · d], Megatron's fused layout
///     context = softmax(scale·q·kᵀ + bias + mask)·v   [T, heads/t · d]; per row log-sum-exp [B, heads/t, s]
///     output  = linear_proj(context)                   [T, h] summed over the group, without linear_proj's
///                                                      bias (the layer's bias-dropout-add adds it)
struct SelfAttention {
    /// The layer's index in the whole model (its dropout streams and cache rows).
    let layer: Int
    let linearQKV: ColumnParallelLinear
    let linearProj: RowParallelLinear
    let rotary: RotaryEmbedding?
    /// Which of the model's heads this rank's are (their attention-dropout masks).
    let heads: Attention.DropoutHeads
    let device: CPUDevice

    /// What the backward needs besides the input.
    struct Activations {
        let qkv: Tensor      // [T, (heads + 2·groups)/t · d], rotated
        let context: Tensor  // [T, heads/t · d]
        let lse: Tensor?     // [B, heads/t, s]; nil after the key/value cache (no backward)
    }

    /// The output [rows, h] from the normalised input x [T, h] (every row: `linearQKV.gatherInput`'s).
    func forward(_ x: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: Activations) {
        let qkv = try linearQKV.forward(x)
        try rotary?.apply(to: qkv, headOffsets: pass.attention.queryOffsets + pass.attention.keyOffsets, positions: pass.positions,
                          on: device)
        let (context, lse) = try core(qkv, pass: pass)
        return (try linearProj.forward(context, rows: pass.rows), Activations(qkv: qkv, context: context, lse: lse))
    }

    /// The attention core over the rotated `qkv` (run again by selective recomputation): within the
    /// pass, round the context-parallel ranks, or against the paged key/value cache, which takes the
    /// pass's keys and values.
    func core(_ qkv: Tensor, pass: LayerPass) throws -> (context: Tensor, lse: Tensor?) {
        if let cache = pass.cache {
            return (try cache.attend(qkv, layout: pass.attention, scale: pass.scale, layer: layer, on: device), nil)
        }
        if let contextParallel = pass.contextParallel {
            return try RingAttention(contextParallel: contextParallel, layout: pass.attention, scale: pass.scale, device: device).forward(qkv: qkv)
        }
        let (context, lse) = try Attention.forward(qkv: qkv, layout: pass.attention, scale: pass.scale, causal: pass.keyCounts == nil,
                                                   firstKeys: pass.firstKeys, keyCounts: pass.keyCounts, bias: pass.attentionBias?.bias,
                                                   dropout: pass.attentionDropout, rng: dropoutStream(pass), heads: heads, on: device)
        return (context, lse)
    }

    /// ∂x [rows, h] (summed over the group) from ∂output of this rank's rows; accumulates the
    /// projections' weight (and QKV bias) gradients.
    func backward(_ dOutput: Tensor, input x: Tensor, activations a: Activations, pass: LayerPass) throws -> Tensor {
        guard let lse = a.lse else { throw TensorError("layer \(layer): a pass through the key/value cache has no backward") }
        let dContext = try linearProj.backward(dOutput, input: a.context, rows: pass.rows)
        let dQKV = try pass.contextParallel.map {
            try RingAttention(contextParallel: $0, layout: pass.attention, scale: pass.scale, device: device)
                .backward(dContext, qkv: a.qkv, context: a.context, lse: lse)
        } ?? Attention.backward(dContext, qkv: a.qkv, context: a.context, lse: lse, layout: pass.attention, scale: pass.scale,
                                causal: pass.keyCounts == nil, firstKeys: pass.firstKeys, keyCounts: pass.keyCounts,
                                bias: pass.attentionBias?.bias, biasGradient: pass.attentionBias?.gradient,
                                dropout: pass.attentionDropout, rng: dropoutStream(pass), heads: heads, on: device)
        try rotary?.apply(to: dQKV, headOffsets: pass.attention.queryOffsets + pass.attention.keyOffsets, positions: pass.positions,
                          inverse: true, on: device)
        return try linearQKV.backward(dQKV, input: x, rows: pass.rows)
    }

    private func dropoutStream(_ pass: LayerPass) -> PhiloxStream { pass.dropout.stream(layer: layer, site: .attentionProbabilities) }
}
