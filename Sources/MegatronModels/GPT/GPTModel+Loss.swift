import MegatronCore

extension GPTModel {
    /// On the last stage: the masked loss of the micro-batch whose logits `activations` holds. With
    /// `lossWeight` (training), the logits are overwritten by ∂(lossWeight·loss)/∂logits, where loss
    /// is the masked mean cross-entropy, for `backward`. Under context parallelism the loss is this
    /// rank's tokens' part, the mean taken over the whole sequences' tokens, and its gradient is
    /// weighted by cp, as Megatron's: data parallelism averages over the context-parallel ranks too.
    public func loss(of activations: StageActivations, lossWeight: Float?) throws -> MaskedLoss {
        guard activations.final != nil else { throw TensorError("only the last pipeline stage computes the loss") }
        let batch = activations.batch, mask = batch.lossMask.toFloatArray()
        let cp = contextParallel.size
        let tokens = cp > 1 ? try contextParallel.group.allReduce(mask.reduce(0, +), op: .sum) : mask.reduce(0, +)
        let gradWeights = try lossWeight.map { w in
            try Tensor(mask.map { $0 * w * Float(cp) / max(tokens, 1) }, shape: [mask.count], on: device)
        }
        let losses = try VocabParallelCrossEntropy.losses(logits: activations.output, targets: batch.labels,
                                                          vocabSize: config.paddedVocabSize, gradWeights: gradWeights,
                                                          tensorParallel: tensorParallel, on: device)
        return MaskedLoss(losses: losses.toFloatArray(), mask: mask)
    }
}
