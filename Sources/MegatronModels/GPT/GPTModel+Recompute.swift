import MegatronCore

extension GPTModel {
    /// What the forward kept of one layer for the backward (see `ActivationRecompute`).
    enum SavedLayer {
        /// Its activations, the parts `ActivationRecompute.Module` names missing when recomputed.
        case activations(TransformerLayer.PartialActivations)
        /// The input [rows, h] of a chunk of layers recomputed together (full recomputation).
        case chunkInput(Tensor)
        /// A layer inside such a chunk.
        case insideChunk
    }

    /// What to keep of `layer`'s activations `a` (Megatron counts the recomputed layers within each
    /// pipeline stage).
    func save(_ a: TransformerLayer.Activations, of layer: TransformerLayer) -> SavedLayer {
        switch recompute.kept(layer: layer.number - stageLayers.lowerBound, of: layers.count) {
        case .activations(let recomputed): return .activations(TransformerLayer.PartialActivations(a, recomputed: recomputed))
        case .chunkInput: return .chunkInput(a.attention.input)
        case .nothing: return .insideChunk
        }
    }

    /// Layer `number`'s whole activations for its backward (`saved` holding this stage's layers),
    /// computing again what the forward did not keep. A layer inside a chunk comes from `chunk`, which
    /// the chunk's last layer fills by running the chunk's forward again from its input.
    func restore(_ saved: [SavedLayer], layer number: Int, chunk: inout [Int: TransformerLayer.Activations],
                 pass: LayerPass) throws -> TransformerLayer.Activations {
        let first = stageLayers.lowerBound
        switch saved[number - first] {
        case .activations(let partial):
            return try layers[number - first].restore(partial, pass: pass)
        case .chunkInput, .insideChunk:
            if let a = chunk.removeValue(forKey: number) { return a }
            var start = number
            while case .insideChunk = saved[start - first] { start -= 1 }
            guard case .chunkInput(var x) = saved[start - first] else {
                throw TensorError("activation recomputation: layer \(number) has no chunk input")
            }
            for layer in layers[start - first ... number - first] {
                let (output, a) = try layer.forward(x, pass: pass)
                chunk[layer.number] = a
                x = output
            }
            return chunk.removeValue(forKey: number)!
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
