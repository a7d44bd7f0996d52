import MegatronCore
import MegatronParallel

extension GPTModel: MegatronModule {
    /// The span of the last stage's copy of the word embedding (tied embeddings over several
    /// stages), whose gradient `reduceSharedEmbeddingGradients` completes; nil elsewhere.
    public var sharedEmbeddingRange: Range<Int>? {
        guard pipeline.count > 1, !config.untieEmbeddingsAndOutputWeights, pipeline.isFirst || pipeline.isLast,
              let e = layout.entry("embedding.word_embeddings.weight") else { return nil }
        return e.offset ..< e.offset + e.count
    }

    /// Under pipeline parallelism with tied embeddings, adds the first stage's word-embedding gradient
    /// and the last stage's (its copy's, from the output layer) on both, so the two copies take the
    /// same step (Megatron's all-reduce of the embedding group). Once per iteration, after the last
    /// backward; the other stages do nothing.
    public func reduceSharedEmbeddingGradients() throws {
        guard let range = sharedEmbeddingRange else { return }
        let group = pipeline.group
        let peer = pipeline.isFirst ? group.size - 1 : 0
        let mine = try gradients.view(offset: range.lowerBound, shape: [range.count])
        let theirs = try Tensor(shape: [range.count], dtype: mine.dtype, on: device, zeroed: false)
        if mine.dtype == .float32 {
            try group.sendReceive(UnsafeBufferPointer(start: mine.floats, count: range.count), to: peer,
                                  into: UnsafeMutableBufferPointer(start: theirs.floats, count: range.count), from: peer,
                                  tag: MessageTag.sharedEmbedding)
            // a + b and b + a are the same float: both copies get the same bits.
            return try Elementwise.axpy(mine, theirs, alpha: 1, on: device)
        }
        // 16-bit gradients travel as their words and are added in fp32, a block at a time, each sum
        // rounded once: the same bits on both stages again.
        try group.sendReceive(UnsafeBufferPointer(start: mine.halfBits, count: range.count), to: peer,
                              into: UnsafeMutableBufferPointer(start: theirs.halfBits, count: range.count), from: peer,
                              tag: MessageTag.sharedEmbedding)
        let widened = try Tensor(shape: [min(range.count, Tensor.fp32BlockElements)], on: device, zeroed: false)
        try theirs.forEachFP32Block(scratch: widened, on: device) { start, addend in
            try mine.view(offset: start, shape: [addend.count]).accumulate(addend, on: device)
        }
    }

    /// Under sequence parallelism, sums over the tensor-parallel group the gradients of the
    /// replicated parameters that act on rows (norms, and the biases added after a reduce-scatter):
    /// each rank's cover only its rows. Call it once per iteration, after the last micro-batch's
    /// backward (and after or before the data-parallel reduction: both are sums), as Megatron's
    /// finalize_model_grads all-reduces the layernorm gradients.
    public func reduceSequenceParallelGradients() throws {
        let group = tensorParallel.group
        guard sequenceParallel, group.size > 1 else { return }
        let entries = layout.entries.filter { !$0.isSharded && $0.name != "embedding.position_embeddings.weight" }
        try layout.allReduce(entries, of: gradients, over: group, on: device)
    }
}
