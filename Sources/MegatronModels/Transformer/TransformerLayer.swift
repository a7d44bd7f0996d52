import MegatronCore

/// One of the decoder's transformer layers (Megatron's TransformerLayer, pre-norm), in two halves,
/// each closed by a bias-dropout-add on the residual stream:
///
///     x1 = x  + dropout(self_attention(input_layernorm(x)) + b_proj)     attention half
///     x2 = x1 + dropout(mlp(pre_mlp_layernorm(x1)) + b_fc2)              MLP half
///
/// x, x1 and x2 are [rows, h]: all T token rows, or this rank's T/t under sequence parallelism, the
/// norms' outputs being gathered to every row for the column-parallel layers after them. Each half's
/// backward mirrors its forward; training, activation recomputation and the key/value cache all
/// run these same halves.
struct TransformerLayer {
    /// The layer's index in the whole model.
    let number: Int
    let inputLayerNorm: Norm
    let selfAttention: SelfAttention
    let preMLPLayerNorm: Norm
    let mlp: MLP
    let device: CPUDevice

    /// What the backward needs from the forward.
    struct Activations {
        var attention: AttentionHalf
        var mlp: MLPHalf
    }

    struct AttentionHalf {
        let input: Tensor              // [rows, h]: x
        let norm: Tensor               // [T, h]: input_layernorm(x), every row
        let normSaved: Norm.Saved      // [rows] statistics
        let core: SelfAttention.Activations
    }

    struct MLPHalf {
        let input: Tensor              // [rows, h]: x1
        let norm: Tensor               // [T, h]: pre_mlp_layernorm(x1), every row
        let normSaved: Norm.Saved      // [rows] statistics
        let core: MLP.Activations
    }

    func forward(_ x: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: Activations) {
        let (x1, attention) = try attentionForward(x, pass: pass)
        let (x2, mlp) = try mlpForward(x1, pass: pass)
        return (x2, Activations(attention: attention, mlp: mlp))
    }

    /// ∂x from ∂x2; accumulates the layer's parameter gradients.
    func backward(_ dx2: Tensor, activations a: Activations, pass: LayerPass) throws -> Tensor {
        try attentionBackward(mlpBackward(dx2, a.mlp, pass: pass), a.attention, pass: pass)
    }

    // MARK: attention half

    func attentionForward(_ x: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: AttentionHalf) {
        let (norm, normSaved) = try attentionNorm(x, pass: pass)
        let (y, core) = try selfAttention.forward(norm, pass: pass)
        let x1 = try BiasDropoutAdd.forward(y, bias: selfAttention.linearProj.bias?.value, residual: x, probability: pass.hiddenDropout,
                                            rng: pass.dropout.stream(layer: number, site: .attentionOutput), firstRow: pass.rows.first,
                                            on: device)
        return (x1, AttentionHalf(input: x, norm: norm, normSaved: normSaved, core: core))
    }

    /// ∂x = ∂x1 + ∂(self_attention ∘ input_layernorm)ᵀ·∂x1, the sum written into `dx1`.
    func attentionBackward(_ dx1: Tensor, _ a: AttentionHalf, pass: LayerPass) throws -> Tensor {
        let dy = try BiasDropoutAdd.backward(dx1, gradBias: selfAttention.linearProj.bias?.gradient, probability: pass.hiddenDropout,
                                             rng: pass.dropout.stream(layer: number, site: .attentionOutput), firstRow: pass.rows.first,
                                             on: device)
        let dNorm = try selfAttention.backward(dy, input: a.norm, activations: a.core, pass: pass)
        return try inputLayerNorm.backward(dNorm, input: a.input, saved: a.normSaved, accumulatingInto: dx1)
    }

    /// input_layernorm(x), gathered to every row for linear_qkv.
    func attentionNorm(_ x: Tensor, pass: LayerPass) throws -> (Tensor, Norm.Saved) {
        let (rows, saved) = try inputLayerNorm.forward(x)
        return (try selfAttention.linearQKV.gatherInput(rows, pass.rows), saved)
    }

    // MARK: MLP half

    func mlpForward(_ x1: Tensor, pass: LayerPass) throws -> (output: Tensor, activations: MLPHalf) {
        let (norm, normSaved) = try mlpNorm(x1, pass: pass)
        let (y, core) = try mlp.forward(norm, pass: pass)
        let x2 = try BiasDropoutAdd.forward(y, bias: mlp.linearFC2.bias?.value, residual: x1, probability: pass.hiddenDropout,
                                            rng: pass.dropout.stream(layer: number, site: .mlpOutput), firstRow: pass.rows.first,
                                            on: device)
        return (x2, MLPHalf(input: x1, norm: norm, normSaved: normSaved, core: core))
    }

    /// ∂x1 = ∂x2 + ∂(mlp ∘ pre_mlp_layernorm)ᵀ·∂x2, the sum written into `dx2`.
    func mlpBackward(_ dx2: Tensor, _ a: MLPHalf, pass: LayerPass) throws -> Tensor {
        let dy = try BiasDropoutAdd.backward(dx2, gradBias: mlp.linearFC2.bias?.gradient, probability: pass.hiddenDropout,
                                             rng: pass.dropout.stream(layer: number, site: .mlpOutput), firstRow: pass.rows.first,
                                             on: device)
        let dNorm = try mlp.backward(dy, input: a.norm, activations: a.core, pass: pass)
        return try preMLPLayerNorm.backward(dNorm, input: a.input, saved: a.normSaved, accumulatingInto: dx2)
    }

    /// pre_mlp_layernorm(x1), gathered to every row for linear_fc1.
    func mlpNorm(_ x1: Tensor, pass: LayerPass) throws -> (Tensor, Norm.Saved) {
        let (rows, saved) = try preMLPLayerNorm.forward(x1)
        return (try mlp.linearFC1.gatherInput(rows, pass.rows), saved)
    }
}

extension TransformerLayer {
    /// Layer `number` of `config` over the parameters `views` holds (Megatron-core's names), with
    /// this rank's share of the tensor-parallel layers.
    init(_ config: GPTConfig, number: Int, views: ParameterViews, rotary: RotaryEmbedding?, tensorParallel: TensorParallel,
         on device: CPUDevice) throws {
        let p = "decoder.layers.\(number)."
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
        inputLayerNorm = try norm("input_layernorm")
        selfAttention = SelfAttention(layer: number, linearQKV: try column("self_attention.linear_qkv"),
                                      linearProj: try row("self_attention.linear_proj"), rotary: rotary,
                                      heads: .init(first: tensorParallel.rank * localHeads, total: config.numAttentionHeads),
                                      device: device)
        preMLPLayerNorm = try norm("pre_mlp_layernorm")
        mlp = MLP(linearFC1: try column("mlp.linear_fc1", skipBiasAdd: !config.swiglu), linearFC2: try row("mlp.linear_fc2"),
                  swiglu: config.swiglu, geluApproximation: config.geluApproximation, device: device)
    }
}
