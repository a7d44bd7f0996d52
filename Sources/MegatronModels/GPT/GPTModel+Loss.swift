import MegatronCore

extension GPTModel {
    /// On the last stage: the masked loss of the micro-batch whose logits `activations` holds. With
    /// `lossWeight` (training), the logits are overwritten by ∂(lossWeight·loss)/∂logits, where loss
    /// is the masked mean cross-entropy, for `backward`.
    public func loss(of activations: StageActivations, lossWeight: Float?) throws -> MaskedLoss {
        guard activations.final != nil else { throw TensorError("only the last pipeline stage computes the loss") }
        let batch = activations.batch, mask = batch.lossMask.toFloatArray()
        let tokens = mask.reduce(0, +)
        let gradWeights = try lossWeight.map { w in try Tensor(mask.map { $0 * w / max(tokens, 1) }, shape: [mask.count], on: device) }
        let losses = try VocabParallelCrossEntropy.losses(logits: activations.output, targets: batch.labels,
                                                          vocabSize: config.paddedVocabSize, gradWeights: gradWeights,
                                                          tensorParallel: tensorParallel, on: device)
        return MaskedLoss(losses: losses.toFloatArray(), mask: mask)
    }
}
