import MegatronCore

extension GPTModel {
    /// What the forward kept of one layer for the backward (see `ActivationRecompute`).
    enum SavedLayer {
        /// Its activations, the parts `ActivationRecompute.Module` names missing when recomputed.
        case activations(PartialActivations)
        /// The input of a chunk of layers recomputed together (full recomputation).
        case chunkInput(Tensor)
        /// A layer inside such a chunk.
        case insideChunk
    }

    /// A layer's activations with the selectively recomputed parts left out (nil).
    struct PartialActivations {
        let input: Tensor, qkv: Tensor, attentionOutput: Tensor
        let inputNorm: (Tensor, Norm.Saved)?
        let attention: (context: Tensor, lse: Tensor)?
        let mlpNorm: (Tensor, Norm.Saved)?
        let mlp: (fc1: Tensor, activation: Tensor)?

        init(_ a: LayerActivations, recomputed: Set<ActivationRecompute.Module>) {
            input = a.input
            qkv = a.qkv
            attentionOutput = a.attentionOutput
            inputNorm = recomputed.contains(.layerNorm) ? nil : (a.inputNorm, a.inputNormSaved)
            attention = recomputed.contains(.coreAttention) ? nil : (a.context, a.lse)
            mlpNorm = recomputed.contains(.layerNorm) ? nil : (a.mlpNorm, a.mlpNormSaved)
            mlp = recomputed.contains(.mlp) ? nil : (a.fc1, a.activation)
        }
    }

    /// What to keep of layer `layer`'s activations `a` (Megatron counts the recomputed layers within
    /// each pipeline stage).
    func save(_ a: LayerActivations, layer: Int) -> SavedLayer {
        switch recompute.kept(layer: layer - stageLayers.lowerBound, of: stageLayers.count) {
        case .activations(let recomputed): return .activations(PartialActivations(a, recomputed: recomputed))
        case .chunkInput: return .chunkInput(a.input)
        case .nothing: return .insideChunk
        }
    }

    /// Layer `layer`'s whole activations for its backward (`saved` holding this stage's layers):
    /// computing again what the forward did not keep. A layer inside a chunk comes from `chunk`, which
    /// the chunk's last layer fills by running the chunk's forward again from its input.
    func restore(_ saved: [SavedLayer], layer: Int, chunk: inout [Int: LayerActivations], pass: LayerPass) throws -> LayerActivations {
        let first = stageLayers.lowerBound
        switch saved[layer - first] {
        case .activations(let p):
            let w = weights.layer(layer)
            // A recomputed norm output is gathered to all rows, as the forward kept it.
            let (n1, n1Saved) = try p.inputNorm ?? {
                let (rows, saved) = try norm.forward(p.input, weight: w.inputNormWeight, bias: w.inputNormBias, on: device)
                return (try gather(rows, pass.rows), saved)
            }()
            let (context, lse) = try p.attention ?? attentionCore(p.qkv, layer: layer, pass: pass)
            let (n2, n2Saved) = try p.mlpNorm ?? {
                let (rows, saved) = try norm.forward(p.attentionOutput, weight: w.mlpNormWeight, bias: w.mlpNormBias, on: device)
                return (try gather(rows, pass.rows), saved)
            }()
            let (fc1, activation) = try p.mlp ?? mlpActivation(n2, w)
            return LayerActivations(input: p.input, inputNorm: n1, inputNormSaved: n1Saved, qkv: p.qkv, context: context, lse: lse,
                                    attentionOutput: p.attentionOutput, mlpNorm: n2, mlpNormSaved: n2Saved, fc1: fc1, activation: activation)
        case .chunkInput, .insideChunk:
            if let a = chunk.removeValue(forKey: layer) { return a }
            var start = layer
            while case .insideChunk = saved[start - first] { start -= 1 }
            guard case .chunkInput(var x) = saved[start - first] else { throw TensorError("activation recomputation: layer \(layer) has no chunk input") }
            for l in start ... layer {
                let (output, a) = try layerForward(x, layer: l, pass: pass)
                chunk[l] = a
                x = output
            }
            return chunk.removeValue(forKey: layer)!
        }
    }
}

extension GPTModel {
    /// Floats of activations the backward of a micro-batch of `batch` sequences of `sequenceLength`
    /// needs at its peak: what the forward keeps of every layer (per layer at most its input, both
    /// norm outputs and their per-row statistics, QKV, the attention context and per-row
    /// log-sum-exp, the attention output, fc1 and its activation: this rank's widths), the decoder
    /// output, final norm and logits (on the last pipeline stage), and under full recomputation one
    /// chunk's recomputed layers.
    public func savedActivationFloats(batch: Int, sequenceLength: Int) -> Int {
        let c = config, t = tensorParallel.size, tokens = batch * sequenceLength, h = c.hiddenSize
        let norms = 2 * h + 4, attention = c.attentionWidth / t + c.numAttentionHeads / t, mlp = (c.fc1Width + c.ffnHiddenSize) / t
        let whole = 2 * h + c.qkvWidth / t + norms + attention + mlp
        var kept = 0, chunk = 0, largestChunk = 0
        for layer in 0 ..< stageLayers.count {
            switch recompute.kept(layer: layer, of: stageLayers.count) {
            case .activations(let recomputed):
                kept += whole - (recomputed.contains(.layerNorm) ? norms : 0) - (recomputed.contains(.coreAttention) ? attention : 0)
                    - (recomputed.contains(.mlp) ? mlp : 0)
                chunk = 0
            case .chunkInput:
                kept += h
                chunk = whole
            case .nothing:
                chunk += whole
            }
            largestChunk = max(largestChunk, chunk)
        }
        return tokens * (kept + largestChunk + (pipeline.isLast ? 2 * h + 2 + c.paddedVocabSize / t : 0))
    }
}
