import MegatronCore

/// One transformer layer (Megatron's TransformerLayer, pre-norm) of a GPT decoder or a BERT or T5
/// encoder, in two halves, each a sub-layer between a norm and a bias-dropout-add on the residual
/// stream:
///
///     x1 = x  + dropout(self_attention(input_layernorm(x)) + b_proj)     attention half
///     x2 = x1 + dropout(mlp(pre_mlp_layernorm(x1)) + b_fc2)              MLP half
///
/// A T5 decoder layer has a third half between them, attending over the encoder's output:
/// x1' = x1 + dropout(cross_attention(pre_cross_attn_layernorm(x1)) + b_proj).
///
/// or, under --apply-residual-connection-post-layernorm, with the norm's output as the residual:
/// x1 = n + dropout(self_attention(n) + b_proj), n = input_layernorm(x), and the same for the MLP.
///
/// x, x1 and x2 are [rows, h]: all T token rows, or this rank's T/t under sequence parallelism, the
/// norms' outputs being gathered to every row for the column-parallel layer that starts each
/// sub-layer. Both halves run one recipe (`halfForward`, `halfBackward`), each backward mirroring
/// its forward; training, activation recomputation and the key/value cache all run it.
struct TransformerLayer {
    /// The layer's index in the whole model.
    let number: Int
    let inputLayerNorm: Norm
    let selfAttention: SelfAttention
    /// A T5 decoder layer's pre_cross_attn_layernorm and cross_attention.
    let crossAttention: (norm: Norm, attention: CrossAttention)?
    let preMLPLayerNorm: Norm
    let mlp: MLP
    /// Whether each half's residual is its norm's output rather than its input.
    let residualIsNormOutput: Bool
    let device: CPUDevice
    /// Under 16-bit parameter storage, the fp32 window the layer's parameters are viewed in: loaded
    /// by every forward and every restoring of its activations for the backward.
    let window: ParameterWindow.Slot?

    /// What one half's backward needs from its forward.
    struct Half<Core> {
        let input: Tensor              // [rows, h]: x (x1 for the MLP half)
        let norm: Tensor               // [T, h]: the norm's output, every row
        let normSaved: Norm.Saved      // [rows] statistics
        let core: Core                 // the sub-layer's own
    }

    /// What the backward needs from the forward.
    struct Activations {
        var attention: Half<SelfAttention.Activations>
        var mlp: Half<MLP.Activations>
        var crossAttention: Half<CrossAttention.Activations>? = nil
    }

    func forward(_ x: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: Activations) {
        try window?.load()
        var (x1, attention) = try attentionForward(x, pass: pass)
        var cross: Half<CrossAttention.Activations>?
        if let crossAttention {
            (x1, cross) = try halfForward(x1, crossAttention.norm, crossAttention.attention, site: .crossAttentionOutput, pass: pass)
        }
        let (x2, mlp) = try mlpForward(x1, pass: pass)
        return (x2, Activations(attention: attention, mlp: mlp, crossAttention: cross))
    }

    /// ∂x from ∂x2; accumulates the layer's parameter gradients.
    func backward(_ dx2: Tensor, activations a: Activations, pass: LayerPass) throws -> Tensor {
        try window?.beginBackward()
        var dx1 = try mlpBackward(dx2, a.mlp, pass: pass)
        if let crossAttention, let cross = a.crossAttention {
            dx1 = try halfBackward(dx1, cross, crossAttention.norm, crossAttention.attention, site: .crossAttentionOutput, pass: pass)
        }
        let dx = try attentionBackward(dx1, a.attention, pass: pass)
        try window?.endBackward()
        return dx
    }

    func attentionForward(_ x: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: Half<SelfAttention.Activations>) {
        try halfForward(x, inputLayerNorm, selfAttention, site: .attentionOutput, pass: pass)
    }

    func attentionBackward(_ dx1: Tensor, _ a: Half<SelfAttention.Activations>, pass: LayerPass) throws -> Tensor {
        try halfBackward(dx1, a, inputLayerNorm, selfAttention, site: .attentionOutput, pass: pass)
    }

    func mlpForward(_ x1: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: Half<MLP.Activations>) {
        try halfForward(x1, preMLPLayerNorm, mlp, site: .mlpOutput, pass: pass)
    }

    func mlpBackward(_ dx2: Tensor, _ a: Half<MLP.Activations>, pass: LayerPass) throws -> Tensor {
        try halfBackward(dx2, a, preMLPLayerNorm, mlp, site: .mlpOutput, pass: pass)
    }

    /// out = x + dropout(sublayer(norm(x)) + b), b the bias of the sub-layer's last (row-parallel)
    /// layer (or norm(x) + …, the residual being the norm's output of this rank's rows).
    private func halfForward<S: TransformerSublayer>(_ x: Tensor, _ norm: Norm, _ sublayer: S, site: DropoutKey.Site,
                                                    pass: LayerPass) throws -> (output: Tensor, activations: Half<S.Activations>) {
        let (rows, normSaved) = try norm.forward(x)
        let normed = try sublayer.inputLinear.gatherInput(rows, pass.rows)
        let (y, core) = try sublayer.forward(normed, pass: pass)
        let output = try BiasDropoutAdd.forward(y, bias: sublayer.outputLinear.bias?.value, residual: residualIsNormOutput ? rows : x,
                                                probability: pass.hiddenDropout,
                                                rng: pass.dropout.stream(layer: number, site: site), rows: pass.dropoutRows(count: y.rows),
                                                on: device)
        return (output, Half(input: x, norm: normed, normSaved: normSaved, core: core))
    }

    /// ∂x = ∂out + ∂(sublayer ∘ norm)ᵀ·∂out, the sum written into `dOutput`; with the norm's output
    /// as the residual, ∂x = ∂normᵀ·(∂out + ∂sublayerᵀ·∂out).
    private func halfBackward<S: TransformerSublayer>(_ dOutput: Tensor, _ a: Half<S.Activations>, _ norm: Norm, _ sublayer: S,
                                                     site: DropoutKey.Site, pass: LayerPass) throws -> Tensor {
        let dy = try BiasDropoutAdd.backward(dOutput, gradBias: sublayer.outputLinear.bias?.gradient, probability: pass.hiddenDropout,
                                             rng: pass.dropout.stream(layer: number, site: site), rows: pass.dropoutRows(count: dOutput.rows),
                                             on: device)
        let dNorm = try sublayer.backward(dy, input: a.norm, activations: a.core, pass: pass)
        guard residualIsNormOutput else { return try norm.backward(dNorm, input: a.input, saved: a.normSaved, accumulatingInto: dOutput) }
        try Elementwise.axpy(dNorm, dOutput, alpha: 1, on: device)
        return try norm.backward(dNorm, input: a.input, saved: a.normSaved)
    }

    /// norm(x), gathered to every row for the sub-layer's first layer, as `halfForward` computes it
    /// (run again by selective recomputation of the norms).
    func normalize<S: TransformerSublayer>(_ x: Tensor, _ norm: Norm, for sublayer: S, pass: LayerPass) throws -> (Tensor, Norm.Saved) {
        let (rows, saved) = try norm.forward(x)
        return (try sublayer.inputLinear.gatherInput(rows, pass.rows), saved)
    }
}

extension TransformerLayer {
    /// Layer `number` of `config` over the parameters `views` holds under `prefix` (Megatron-core's
    /// names: "decoder.layers.3.", "encoder.layers.3."), with this rank's share of the
    /// tensor-parallel layers.
    init(_ config: TransformerConfig, number: Int, prefix: String, views: ParameterViews, rotary: RotaryEmbedding?,
         crossAttention: Bool = false, tensorParallel: TensorParallel, on device: CPUDevice) throws {
        let p = prefix
        func norm(_ name: String) throws -> Norm {
            Norm(kind: config.normalization, epsilon: config.normEpsilon, weight: try views(p + name + ".weight"),
                 bias: try views.optional(p + name + ".bias"), device: device)
        }
        func column(_ name: String, skipBiasAdd: Bool = false) throws -> ColumnParallelLinear {
            ColumnParallelLinear(weight: try views(p + name + ".weight"), bias: try views.optional(p + name + ".bias"),
                                 skipBiasAdd: skipBiasAdd, tensorParallel: tensorParallel, device: device)
        }
        func row(_ name: String) throws -> RowParallelLinear {
            RowParallelLinear(weight: try views(p + name + ".weight"), bias: try views.optional(p + name + ".bias"),
                              tensorParallel: tensorParallel, device: device)
        }
        let localHeads = config.numAttentionHeads / tensorParallel.size
        self.number = number
        self.device = device
        window = views.window(ofPrefix: prefix)
        residualIsNormOutput = config.applyResidualConnectionPostLayernorm
        inputLayerNorm = try norm("input_layernorm")
        selfAttention = SelfAttention(layer: number, linearQKV: try column("self_attention.linear_qkv"),
                                      linearProj: try row("self_attention.linear_proj"), rotary: rotary,
                                      heads: .init(first: tensorParallel.rank * localHeads, total: config.numAttentionHeads),
                                      device: device)
        let heads = Attention.DropoutHeads(first: tensorParallel.rank * localHeads, total: config.numAttentionHeads)
        self.crossAttention = crossAttention
            ? (try norm("pre_cross_attn_layernorm"),
               CrossAttention(layer: number, linearQ: try column("cross_attention.linear_q"), linearKV: try column("cross_attention.linear_kv"),
                              linearProj: try row("cross_attention.linear_proj"), heads: heads, device: device))
            : nil
        preMLPLayerNorm = try norm("pre_mlp_layernorm")
        mlp = MLP(linearFC1: try column("mlp.linear_fc1", skipBiasAdd: !config.swiglu), linearFC2: try row("mlp.linear_fc2"),
                  swiglu: config.swiglu, geluApproximation: config.geluApproximation, device: device)
    }
}

/// A transformer layer's sub-layer (self-attention, MLP): a column-parallel layer first, whose input
/// is gathered to every row, and a row-parallel layer last, whose bias the layer's bias-dropout-add
/// adds after the reduction.
protocol TransformerSublayer {
    /// What its backward needs besides its input.
    associatedtype Activations
    var inputLinear: ColumnParallelLinear { get }
    var outputLinear: RowParallelLinear { get }
    /// The output [rows, h], without the last layer's bias, from the normalised input [T, h].
    func forward(_ x: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: Activations)
    /// ∂x [rows, h] from ∂output of this rank's rows; accumulates the sub-layer's parameter gradients.
    func backward(_ dOutput: Tensor, input x: Tensor, activations: Activations, pass: LayerPass) throws -> Tensor
}

extension SelfAttention: TransformerSublayer {
    var inputLinear: ColumnParallelLinear { linearQKV }
    var outputLinear: RowParallelLinear { linearProj }
}

extension MLP: TransformerSublayer {
    var inputLinear: ColumnParallelLinear { linearFC1 }
    var outputLinear: RowParallelLinear { linearFC2 }
}
