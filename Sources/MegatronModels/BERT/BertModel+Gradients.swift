extension BertModel: MegatronModule {
    /// Under sequence parallelism, sums over the tensor-parallel group the gradients of the
    /// replicated parameters that act on this rank's rows only: the encoder's norms and the biases
    /// added after a reduce-scatter, its final norm, the LM head's dense layer and norm. The
    /// embedding tables, the pooler and the binary head see every row on every rank and are left
    /// alone. Once per iteration, after the last micro-batch's backward.
    public func reduceSequenceParallelGradients() throws {
        let group = tensorParallel.group
        guard sequenceParallel, group.size > 1 else { return }
        let wholeOnEveryRank = ["embedding.", "pooler.", "binary_head."]
        let entries = layout.entries.filter { entry in !entry.isSharded && !wholeOnEveryRank.contains { entry.name.hasPrefix($0) } }
        try layout.allReduce(entries, of: gradients, over: group, on: device)
    }

    /// One pipeline stage: no shared embedding copy.
    public var sharedEmbeddingRange: Range<Int>? { nil }
    public func reduceSharedEmbeddingGradients() throws {}
}
