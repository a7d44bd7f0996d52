import MegatronCore

extension GPTModel {
    /// Bytes of activations the backward of a micro-batch of `batch` sequences of `sequenceLength`
    /// needs at its peak: what the forward keeps of every layer (per layer at most its input, both
    /// norm outputs and their per-row statistics, QKV, the attention context and per-row
    /// log-sum-exp, the attention output, fc1 and its activation: this rank's widths), the decoder
    /// output, final norm and logits (on the last pipeline stage), and under full recomputation one
    /// chunk's recomputed layers. Under the interleaved schedule, one micro-batch through every
    /// model chunk of this stage. What the layers keep is in `savedActivationPrecision` (counted
    /// so for their few per-row statistics too, which stay fp32), the logits in
    /// `trainingLogitsPrecision`; the recomputed layers and the last stage's other tensors are fp32.
    public func savedActivationBytes(batch: Int, sequenceLength: Int) -> Int {
        let c = config, t = tensorParallel.size, tokens = batch * sequenceLength / contextParallel.size, h = c.hiddenSize
        let norms = 2 * h + 4, attention = c.attentionWidth / t + c.numAttentionHeads / t, mlp = (c.fc1Width + c.ffnHiddenSize) / t
        let whole = 2 * h + c.qkvWidth / t + norms + attention + mlp
        // Floats per token the forward keeps, and of the largest run of layers recomputed at once.
        var kept = 0, largestRecomputed = 0
        for layers in chunks {
            var recomputed = 0
            for layer in layers.indices {
                switch recompute.kept(layer: layer, of: layers.count) {
                case .activations(let modules):
                    kept += whole - (modules.contains(.layerNorm) ? norms : 0) - (modules.contains(.coreAttention) ? attention : 0)
                        - (modules.contains(.mlp) ? mlp : 0)
                    recomputed = 0
                case .chunkInput:
                    kept += h
                    recomputed = whole
                case .nothing:
                    recomputed += whole
                }
                largestRecomputed = max(largestRecomputed, recomputed)
            }
        }
        let fp32 = DType.float32.size
        let lastStage = pipeline.isLast ? (2 * h + 2) * fp32 + c.paddedVocabSize / t * trainingLogitsPrecision.size : 0
        return tokens * (kept * savedActivationPrecision.size + largestRecomputed * fp32 + lastStage)
    }
}
