import MegatronCore

/// Megatron's CrossAttention (a T5 decoder layer's encoder–decoder attention) over this
/// tensor-parallel rank's heads: queries from the decoder's normalised input x, keys and values from
/// the encoder's output e, the encoder's padding hidden. With d = kv-channels and t ranks:
///
///     q       = linear_q(x)                          [T_dec, heads/t · d]
///     kv      = linear_kv(e)                         [T_enc, heads/t · 2d], head h's key then value
///     context = softmax(scale·q·kᵀ + padding)·v      [T_dec, heads/t · d]
///     output  = linear_proj(context)                 [rows, h] summed over the group, without its bias
///
/// The backward adds ∂e into the pass's encoder gradient (every decoder layer reads e).
struct CrossAttention {
    /// The layer's index in the whole model (its dropout streams).
    let layer: Int
    let linearQ: ColumnParallelLinear
    let linearKV: ColumnParallelLinear
    let linearProj: RowParallelLinear
    /// Which of the model's heads this rank's are (their attention-dropout masks).
    let heads: Attention.DropoutHeads
    let device: CPUDevice

    struct Activations {
        let query: Tensor     // [T_dec, heads/t · d]
        let keyValue: Tensor  // [T_enc, heads/t · 2d]
        let context: Tensor   // [T_dec, heads/t · d]
        let lse: Tensor       // [B, heads/t, s_dec]
    }

    func forward(_ x: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: Activations) {
        let encoder = try encoderOf(pass)
        let query = try linearQ.forward(x), keyValue = try linearKV.forward(encoder.output)
        let (context, lse) = try Attention.forward(query: query, keyValue: keyValue, layout: encoder.layout, scale: pass.scale,
                                                   keyCounts: encoder.keyCounts, dropout: pass.attentionDropout,
                                                   rng: dropoutStream(pass), heads: heads, on: device)
        return (try linearProj.forward(context, rows: pass.rows),
                Activations(query: query, keyValue: keyValue, context: context, lse: lse))
    }

    /// ∂x [rows, h] from ∂output; adds ∂e into the pass's encoder gradient and accumulates the
    /// projections' gradients.
    func backward(_ dOutput: Tensor, input x: Tensor, activations a: Activations, pass: LayerPass) throws -> Tensor {
        let encoder = try encoderOf(pass)
        guard let dEncoderOutput = encoder.gradient else { throw TensorError("layer \(layer): a pass without gradients has no backward") }
        let dContext = try linearProj.backward(dOutput, input: a.context, rows: pass.rows)
        let (dQuery, dKeyValue) = try Attention.backward(dContext, query: a.query, keyValue: a.keyValue, context: a.context, lse: a.lse,
                                                         layout: encoder.layout, scale: pass.scale, keyCounts: encoder.keyCounts,
                                                         dropout: pass.attentionDropout, rng: dropoutStream(pass), heads: heads,
                                                         on: device)
        try Elementwise.axpy(dEncoderOutput, try linearKV.backward(dKeyValue, input: encoder.output, rows: .all), alpha: 1, on: device)
        return try linearQ.backward(dQuery, input: x, rows: pass.rows)
    }

    private func encoderOf(_ pass: LayerPass) throws -> LayerPass.Encoder {
        guard let encoder = pass.encoder else { throw TensorError("layer \(layer): cross-attention needs the encoder's output") }
        return encoder
    }

    private func dropoutStream(_ pass: LayerPass) -> PhiloxStream {
        pass.dropout.stream(layer: layer, site: .crossAttentionProbabilities)
    }
}

extension CrossAttention: TransformerSublayer {
    var inputLinear: ColumnParallelLinear { linearQ }
    var outputLinear: RowParallelLinear { linearProj }
}
