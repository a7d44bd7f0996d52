import MegatronCore

extension TransformerLayer {
    /// A layer's activations with the parts that selective recomputation drops left out (nil):
    /// the norms' outputs (layernorm), the attention core's (core_attn), fc1 and its activation (mlp).
    struct PartialActivations {
        let input: Tensor            // [rows, h]: x
        let qkv: Tensor              // [T, (heads + 2·groups)/t · d]
        let attentionOutput: Tensor  // [rows, h]: x1
        let attentionNorm: (Tensor, Norm.Saved)?
        let attentionCore: (context: Tensor, lse: Tensor?)?
        let mlpNorm: (Tensor, Norm.Saved)?
        let mlpCore: MLP.Activations?
        /// A decoder layer's cross-attention half, always kept.
        let crossAttention: Half<CrossAttention.Activations>?

        private init(input: Tensor, qkv: Tensor, attentionOutput: Tensor, attentionNorm: (Tensor, Norm.Saved)?,
                     attentionCore: (context: Tensor, lse: Tensor?)?, mlpNorm: (Tensor, Norm.Saved)?, mlpCore: MLP.Activations?,
                     crossAttention: Half<CrossAttention.Activations>?) {
            self.input = input
            self.qkv = qkv
            self.attentionOutput = attentionOutput
            self.attentionNorm = attentionNorm
            self.attentionCore = attentionCore
            self.mlpNorm = mlpNorm
            self.mlpCore = mlpCore
            self.crossAttention = crossAttention
        }

        /// The same activations with the token-wide tensors (every one but the per-row statistics)
        /// in `precision`: 16 bits to keep them (--bf16, --fp16), fp32 to compute on them again.
        func stored(as precision: DType, on device: CPUDevice) throws -> PartialActivations {
            func store(_ t: Tensor) throws -> Tensor { try t.stored(as: precision, on: device) }
            return PartialActivations(
                input: try store(input), qkv: try store(qkv), attentionOutput: try store(attentionOutput),
                attentionNorm: try attentionNorm.map { (try store($0.0), $0.1) },
                attentionCore: try attentionCore.map { (try store($0.context), $0.lse) },
                mlpNorm: try mlpNorm.map { (try store($0.0), $0.1) },
                mlpCore: try mlpCore.map { MLP.Activations(fc1: try store($0.fc1), activation: try store($0.activation)) },
                crossAttention: crossAttention)
        }

        init(_ a: Activations, recomputed: Set<ActivationRecompute.Module>) {
            input = a.attention.input
            qkv = a.attention.core.qkv
            attentionOutput = a.mlp.input
            attentionNorm = recomputed.contains(.layerNorm) ? nil : (a.attention.norm, a.attention.normSaved)
            attentionCore = recomputed.contains(.coreAttention) ? nil : (a.attention.core.context, a.attention.core.lse)
            mlpNorm = recomputed.contains(.layerNorm) ? nil : (a.mlp.norm, a.mlp.normSaved)
            mlpCore = recomputed.contains(.mlp) ? nil : a.mlp.core
            crossAttention = a.crossAttention
        }
    }

    /// The whole activations, computing again (with the forward's own steps and dropout masks) what
    /// `partial` left out.
    func restore(_ partial: PartialActivations, pass: LayerPass) throws -> Activations {
        let p = try partial.stored(as: .float32, on: device)
        let (n1, n1Saved) = try p.attentionNorm ?? normalize(p.input, inputLayerNorm, for: selfAttention, pass: pass)
        let (context, lse) = try p.attentionCore ?? selfAttention.core(p.qkv, pass: pass)
        let (n2, n2Saved) = try p.mlpNorm ?? normalize(p.attentionOutput, preMLPLayerNorm, for: mlp, pass: pass)
        let mlpCore = try p.mlpCore ?? mlp.activations(n2)
        return Activations(
            attention: Half(input: p.input, norm: n1, normSaved: n1Saved,
                            core: SelfAttention.Activations(qkv: p.qkv, context: context, lse: lse)),
            mlp: Half(input: p.attentionOutput, norm: n2, normSaved: n2Saved, core: mlpCore), crossAttention: p.crossAttention)
    }
}
