import MegatronCore

/// Model FLOPs of one training iteration by Megatron's formula (`num_floating_point_operations` in
/// megatron/training/training.py, dense GPT): every GEMM counted three times (forward, data and
/// weight gradient), 2 FLOPs per multiply-add, the attention core with the causal half only:
///
///   tokens · 6 · [h·f·k·L + L·(h·(q + 2·kv) + q·h) + h·V] + batch·s² · L · 6·q
///
/// with q = heads·kv-channels, kv = query-groups·kv-channels, f = ffn, k = 3 under SwiGLU else 2,
/// V the padded vocabulary.
public func modelFLOPsPerIteration(_ c: TransformerConfig, globalBatchSize: Int, sequenceLength: Int) -> Double {
    let h = Double(c.hiddenSize), layers = Double(c.numLayers), s = Double(sequenceLength)
    let q = Double(c.numAttentionHeads * c.kvChannels), kv = Double(c.numQueryGroups * c.kvChannels)
    let ffn = Double(c.ffnHiddenSize) * (c.swiglu ? 3 : 2)
    let tokens = Double(globalBatchSize) * s
    let perToken = 6 * (h * ffn * layers + layers * (h * (q + 2 * kv) + q * h) + h * Double(c.paddedVocabSize))
    return tokens * perToken + Double(globalBatchSize) * s * s * layers * 6 * q
}
