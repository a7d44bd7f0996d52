import MegatronCore

/// A GPT decoder as Megatron builds it: word (+ learned position) embeddings, pre-norm transformer
/// layers (fused QKV, causal self-attention, output projection, MLP), a final norm, and an output
/// layer tied to the word embedding unless untied. Parameters live in one flat fp32 buffer and
/// gradients in a twin buffer with the same layout (`ParameterLayout`).
///
/// Shapes (T = batch·seq tokens, h hidden, a = heads·kv-channels, f = ffn):
/// embeddings [T, h] → per layer: norm → QKV [T, (heads + 2·groups)·d] → attention [T, a] →
/// proj [T, h] + residual → norm → fc1 [T, f or 2f] → GELU / SwiGLU [T, f] → fc2 [T, h] + residual
/// → final norm → logits [T, vocab].
public final class GPTModel: @unchecked Sendable {
    public let config: GPTConfig
    public let layout: ParameterLayout
    public let device: CPUDevice
    /// All parameters, flat, in `layout` order.
    public let parameters: Tensor
    /// Their gradients, same layout; backward accumulates here.
    public let gradients: Tensor
    let weights: GPTWeights
    let grads: GPTWeights
    let norm: Norm
    let rotary: RotaryEmbedding?

    /// A model initialised as Megatron does: weights N(0, σ), the output projections of attention
    /// and MLP (linear_proj, linear_fc2) N(0, σ/√(2·layers)), biases 0, norm weights 1. The draw depends
    /// only on the seed and each parameter's name and index, not on any parallel layout. Without a
    /// seed the parameters are left zero, for a model about to be loaded from a checkpoint.
    public init(config: GPTConfig, seed: UInt64?, on device: CPUDevice) throws {
        try config.validate()
        self.config = config
        self.device = device
        layout = ParameterLayout(config)
        parameters = Tensor(shape: [layout.totalCount], on: device)
        gradients = Tensor(shape: [layout.totalCount], on: device)
        weights = try GPTWeights(buffer: parameters, layout: layout, config: config)
        grads = try GPTWeights(buffer: gradients, layout: layout, config: config)
        norm = Norm(kind: config.normalization, epsilon: config.normEpsilon)
        rotary = config.positionEmbedding == .rope
            ? try RotaryEmbedding(rotaryDim: config.rotaryDim, base: config.rotaryBase, maxPositions: config.maxPositionEmbeddings, on: device)
            : nil
        if let seed { initialize(seed: seed) }
    }

    private func initialize(seed: UInt64) {
        let sigma = config.initMethodStd
        let scaled = sigma / (2 * Float(config.numLayers)).squareRoot()
        for (index, entry) in layout.entries.enumerated() {
            let values = UnsafeMutableBufferPointer(start: parameters.floats + entry.offset, count: entry.count)
            if entry.name.hasSuffix(".bias") {
                values.update(repeating: 0)
            } else if entry.name.hasSuffix("layernorm.weight") {
                values.update(repeating: 1)
            } else {
                let std = entry.name.hasSuffix("linear_proj.weight") || entry.name.hasSuffix("linear_fc2.weight") ? scaled : sigma
                var normal = GaussianStream(seed: seed, stream: UInt64(index))
                for i in values.indices { values[i] = std * normal.next() }
            }
        }
    }

    /// Sets every gradient to zero (before an iteration's first micro-batch).
    public func zeroGradients() { gradients.zero() }

    // MARK: forward and backward

    /// What one layer's backward needs from its forward.
    struct LayerActivations {
        let input: Tensor
        let inputNorm: Tensor, inputNormSaved: Norm.Saved
        let qkv: Tensor
        let context: Tensor, lse: Tensor
        let attentionOutput: Tensor
        let mlpNorm: Tensor, mlpNormSaved: Norm.Saved
        let fc1: Tensor
        let activation: Tensor
    }

    /// Names a dropout mask: a different stream per iteration, micro-batch, layer and site.
    public struct DropoutKey: Sendable {
        public let seed: UInt64
        public let iteration: Int
        public let microBatch: Int

        public init(seed: UInt64, iteration: Int, microBatch: Int) {
            self.seed = seed
            self.iteration = iteration
            self.microBatch = microBatch
        }

        func stream(layer: Int, site: Int) -> PhiloxStream {
            let id = ((UInt64(iteration) &* 65_536 &+ UInt64(microBatch)) &* 4096 &+ UInt64(layer + 1)) &* 8 &+ UInt64(site)
            return PhiloxStream(seed: seed, stream: id)
        }
    }

    private enum DropoutSite: Int { case embedding, attentionProbabilities, attentionOutput, mlpOutput }

    /// Runs forward and backward over one micro-batch and adds ∂(lossWeight·loss)/∂θ into `gradients`,
    /// where loss is the masked mean cross-entropy Σ mask·ℓ / max(Σ mask, 1) (Megatron's lm loss and
    /// its clamp: a micro-batch with every token masked contributes no gradient). `lossWeight` is
    /// 1 / micro-batches per iteration (times the loss scale under fp16).
    ///
    /// `gradientsReady`, when given, is called during backward with each span of `gradients` as soon
    /// as backward has finished adding to it (the output layer and final norm first, then each layer
    /// from the last, then the embeddings), once per parameter: data parallelism starts reducing there.
    @discardableResult
    public func forwardBackward(_ batch: MicroBatch, lossWeight: Float = 1, dropout: DropoutKey,
                                gradientsReady: ((Range<Int>) throws -> Void)? = nil) throws -> MaskedLoss {
        let (logits, final, saved) = try forward(batch, dropout: dropout, training: true)
        let mask = batch.lossMask.toFloatArray()
        let tokens = mask.reduce(0, +)
        let weights = try Tensor(mask.map { $0 * lossWeight / max(tokens, 1) }, shape: [mask.count], on: device)
        let losses = try CrossEntropy.forwardBackward(logits: logits, targets: batch.labels, gradWeights: weights, on: device)
        try backward(dLogits: logits, final: final, saved: saved, batch: batch, dropout: dropout, gradientsReady: gradientsReady)
        return MaskedLoss(losses: losses.toFloatArray(), mask: mask)
    }

    /// The loss of a micro-batch, without dropout or gradients (evaluation).
    public func loss(_ batch: MicroBatch) throws -> MaskedLoss {
        let (logits, _, _) = try forward(batch, dropout: DropoutKey(seed: 0, iteration: 0, microBatch: 0), training: false)
        let losses = try CrossEntropy.forward(logits: logits, targets: batch.labels, on: device)
        return MaskedLoss(losses: losses.toFloatArray(), mask: batch.lossMask.toFloatArray())
    }

    /// Logits [T, vocab] of a micro-batch (inference: no dropout).
    public func logits(_ batch: MicroBatch) throws -> Tensor {
        try forward(batch, dropout: DropoutKey(seed: 0, iteration: 0, microBatch: 0), training: false).logits
    }

    struct FinalActivations {
        let decoderOutput: Tensor
        let normOutput: Tensor
        let normSaved: Norm.Saved
    }

    private func forward(_ batch: MicroBatch, dropout: DropoutKey, training: Bool)
        throws -> (logits: Tensor, final: FinalActivations, saved: [LayerActivations]) {
        let c = config
        guard batch.sequenceLength <= c.maxPositionEmbeddings else {
            throw TensorError("sequence length \(batch.sequenceLength) exceeds --max-position-embeddings \(c.maxPositionEmbeddings)")
        }
        let hiddenP = training ? c.hiddenDropout : 0, attentionP = training ? c.attentionDropout : 0
        var x = try Embedding.forward(ids: batch.tokens, word: weights.wordEmbedding, position: weights.positionEmbedding,
                                      positions: weights.positionEmbedding == nil ? nil : batch.positions, on: device)
        if hiddenP > 0 {
            x = try Dropout.apply(x, probability: hiddenP, rng: dropout.stream(layer: -1, site: DropoutSite.embedding.rawValue), on: device)
        }
        let layout = try AttentionLayout.megatronFusedQKV(batch: batch.batch, sequenceLength: batch.sequenceLength,
                                                          heads: c.numAttentionHeads, groups: c.numQueryGroups, headDim: c.kvChannels)
        let scale = 1 / Float(c.kvChannels).squareRoot()
        var saved: [LayerActivations] = []
        for (l, w) in weights.layers.enumerated() {
            let (n1, n1Saved) = try norm.forward(x, weight: w.inputNormWeight, bias: w.inputNormBias, on: device)
            let qkv = try Linear.forward(n1, weight: w.qkvWeight, bias: w.qkvBias, on: device)
            try rotary?.apply(to: qkv, headOffsets: layout.queryOffsets + layout.keyOffsets, positions: batch.positions, on: device)
            let (context, lse) = try Attention.forward(qkv: qkv, layout: layout, scale: scale,
                                                       firstKeys: batch.attentionFirstKeys, dropout: attentionP,
                                                       rng: dropout.stream(layer: l, site: DropoutSite.attentionProbabilities.rawValue),
                                                       on: device)
            let proj = try GEMM.matmul(context, w.projWeight, transposeB: true, on: device)
            let x1 = try BiasDropoutAdd.forward(proj, bias: w.projBias, residual: x, probability: hiddenP,
                                                rng: dropout.stream(layer: l, site: DropoutSite.attentionOutput.rawValue), on: device)
            let (n2, n2Saved, fc1, activation, x2) = try mlpBlock(x1, w, dropout: hiddenP,
                                                                  rng: dropout.stream(layer: l, site: DropoutSite.mlpOutput.rawValue))
            if training {
                saved.append(LayerActivations(input: x, inputNorm: n1, inputNormSaved: n1Saved, qkv: qkv, context: context, lse: lse,
                                              attentionOutput: x1, mlpNorm: n2, mlpNormSaved: n2Saved, fc1: fc1, activation: activation))
            }
            x = x2
        }
        let (finalNorm, finalSaved) = try norm.forward(x, weight: weights.finalNormWeight, bias: weights.finalNormBias, on: device)
        let logits = try GEMM.matmul(finalNorm, weights.outputWeight, transposeB: true, on: device)
        return (logits, FinalActivations(decoderOutput: x, normOutput: finalNorm, normSaved: finalSaved), saved)
    }

    /// The MLP half of a layer: x1 + dropout(fc2(activation(fc1(norm(x1))))), with the intermediate
    /// tensors the backward needs.
    func mlpBlock(_ x1: Tensor, _ w: GPTWeights.Layer, dropout p: Float, rng: PhiloxStream)
        throws -> (norm: Tensor, normSaved: Norm.Saved, fc1: Tensor, activation: Tensor, output: Tensor) {
        let (n2, n2Saved) = try norm.forward(x1, weight: w.mlpNormWeight, bias: w.mlpNormBias, on: device)
        let fc1: Tensor, activation: Tensor
        if config.swiglu {
            fc1 = try Linear.forward(n2, weight: w.fc1Weight, bias: w.fc1Bias, on: device)
            activation = try SwiGLU.forward(fc1, on: device)
        } else {
            fc1 = try GEMM.matmul(n2, w.fc1Weight, transposeB: true, on: device)
            activation = try GELU.forward(fc1, bias: w.fc1Bias, approximation: config.geluApproximation, on: device)
        }
        let fc2 = try GEMM.matmul(activation, w.fc2Weight, transposeB: true, on: device)
        let output = try BiasDropoutAdd.forward(fc2, bias: w.fc2Bias, residual: x1, probability: p, rng: rng, on: device)
        return (n2, n2Saved, fc1, activation, output)
    }

    private func backward(dLogits: Tensor, final: FinalActivations, saved: [LayerActivations], batch: MicroBatch,
                          dropout: DropoutKey, gradientsReady: ((Range<Int>) throws -> Void)?) throws {
        let c = config
        let layout = try AttentionLayout.megatronFusedQKV(batch: batch.batch, sequenceLength: batch.sequenceLength,
                                                          heads: c.numAttentionHeads, groups: c.numQueryGroups, headDim: c.kvChannels)
        let scale = 1 / Float(c.kvChannels).squareRoot()
        // Output layer and final norm.
        let dFinalNorm = try Linear.backward(dLogits, input: final.normOutput, weight: weights.outputWeight,
                                             gradWeight: grads.outputWeight, gradBias: nil, on: device)
        var dx = try norm.backward(dFinalNorm, input: final.decoderOutput, weight: weights.finalNormWeight, saved: final.normSaved,
                                   gradWeight: grads.finalNormWeight, gradBias: grads.finalNormBias, on: device)
        try gradientsReady?(self.layout.range(ofPrefix: "output_layer."))
        try gradientsReady?(self.layout.range(ofPrefix: "decoder.final_layernorm."))
        for l in stride(from: c.numLayers - 1, through: 0, by: -1) {
            let a = saved[l], w = weights.layers[l], g = grads.layers[l]
            // MLP: x2 = x1 + dropout(fc2(act) + b2); dx (for x2) flows to x1 unchanged and into the MLP.
            let dFc2 = try BiasDropoutAdd.backward(dx, gradBias: g.fc2Bias, probability: c.hiddenDropout,
                                                   rng: dropout.stream(layer: l, site: DropoutSite.mlpOutput.rawValue), on: device)
            let dActivation = try Linear.backward(dFc2, input: a.activation, weight: w.fc2Weight, gradWeight: g.fc2Weight,
                                                  gradBias: nil, on: device)
            let dFc1: Tensor
            if c.swiglu {
                dFc1 = try SwiGLU.backward(dActivation, input: a.fc1, on: device)
                if let gb = g.fc1Bias { try Elementwise.accumulateColumnSums(of: dFc1, into: gb, on: device) }
            } else {
                dFc1 = try GELU.backward(dActivation, input: a.fc1, bias: w.fc1Bias, gradBias: g.fc1Bias,
                                         approximation: c.geluApproximation, on: device)
            }
            let dMlpNorm = try Linear.backward(dFc1, input: a.mlpNorm, weight: w.fc1Weight, gradWeight: g.fc1Weight,
                                               gradBias: nil, on: device)
            let dx1 = try norm.backward(dMlpNorm, input: a.attentionOutput, weight: w.mlpNormWeight, saved: a.mlpNormSaved,
                                        gradWeight: g.mlpNormWeight, gradBias: g.mlpNormBias, accumulatingInto: dx, on: device)
            // Attention: x1 = x + dropout(proj(context) + b).
            let dProj = try BiasDropoutAdd.backward(dx1, gradBias: g.projBias, probability: c.hiddenDropout,
                                                    rng: dropout.stream(layer: l, site: DropoutSite.attentionOutput.rawValue), on: device)
            let dContext = try Linear.backward(dProj, input: a.context, weight: w.projWeight, gradWeight: g.projWeight,
                                               gradBias: nil, on: device)
            let dQKV = try Attention.backward(dContext, qkv: a.qkv, context: a.context, lse: a.lse, layout: layout, scale: scale,
                                              firstKeys: batch.attentionFirstKeys,
                                              dropout: c.attentionDropout,
                                              rng: dropout.stream(layer: l, site: DropoutSite.attentionProbabilities.rawValue), on: device)
            try rotary?.apply(to: dQKV, headOffsets: layout.queryOffsets + layout.keyOffsets, positions: batch.positions,
                              inverse: true, on: device)
            let dInputNorm = try Linear.backward(dQKV, input: a.inputNorm, weight: w.qkvWeight, gradWeight: g.qkvWeight,
                                                 gradBias: g.qkvBias, on: device)
            dx = try norm.backward(dInputNorm, input: a.input, weight: w.inputNormWeight, saved: a.inputNormSaved,
                                   gradWeight: g.inputNormWeight, gradBias: g.inputNormBias, accumulatingInto: dx1, on: device)
            try gradientsReady?(self.layout.range(ofPrefix: "decoder.layers.\(l)."))
        }
        if c.hiddenDropout > 0 {
            dx = try Dropout.apply(dx, probability: c.hiddenDropout,
                                   rng: dropout.stream(layer: -1, site: DropoutSite.embedding.rawValue), on: device)
        }
        try Embedding.backward(dx, ids: batch.tokens, positions: grads.positionEmbedding == nil ? nil : batch.positions,
                               gradWord: grads.wordEmbedding, gradPosition: grads.positionEmbedding, on: device)
        try gradientsReady?(self.layout.range(ofPrefix: "embedding."))
    }
}
