import MegatronCore

extension TransformerLayer {
    /// A layer's activations with the parts that selective recomputation drops left out (nil):
    /// the norms' outputs (layernorm), the attention core's (core_attn), fc1 and its activation (mlp).
    struct PartialActivations {
        private(set) var input: Tensor            // [rows, h]: x
        private(set) var qkv: Tensor              // [T, (heads + 2·groups)/t · d]
        private(set) var attentionOutput: Tensor  // [rows, h]: x1
        private(set) var attentionNorm: (Tensor, Norm.Saved)?
        private(set) var attentionCore: (context: Tensor, lse: Tensor?)?
        private(set) var mlpNorm: (Tensor, Norm.Saved)?
        private(set) var mlpCore: MLP.Activations?
        /// A decoder layer's cross-attention half, always kept.
        let crossAttention: Half<CrossAttention.Activations>?

        /// The same activations with the token-wide tensors (every one but the per-row statistics)
        /// in `precision`: 16 bits to keep them (--bf16, --fp16), fp32 to compute on them again.
        func stored(as precision: DType, on device: CPUDevice) throws -> PartialActivations {
            func store(_ t: Tensor) throws -> Tensor { try t.stored(as: precision, on: device) }
            var p = self
            p.input = try store(input)
            p.qkv = try store(qkv)
            p.attentionOutput = try store(attentionOutput)
            p.attentionNorm = try attentionNorm.map { (try store($0.0), $0.1) }
            p.attentionCore = try attentionCore.map { (try store($0.context), $0.lse) }
            p.mlpNorm = try mlpNorm.map { (try store($0.0), $0.1) }
            p.mlpCore = try mlpCore.map { MLP.Activations(fc1: try store($0.fc1), activation: try store($0.activation)) }
            return p
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
        try window?.load()
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
