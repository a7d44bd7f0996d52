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
        let losses = try crossEntropy(logits: activations.output, targets: batch.labels, gradWeights: gradWeights)
        return MaskedLoss(losses: losses.toFloatArray(), mask: mask)
    }

    /// Per-token losses of logits over this rank's vocabulary (see `CrossEntropy`), through
    /// `VocabParallelCrossEntropy` when the vocabulary is split.
    private func crossEntropy(logits: Tensor, targets: Tensor, gradWeights: Tensor?) throws -> Tensor {
        guard tensorParallel.size > 1 else {
            return try gradWeights.map { try CrossEntropy.forwardBackward(logits: logits, targets: targets, gradWeights: $0, on: device) }
                ?? CrossEntropy.forward(logits: logits, targets: targets, on: device)
        }
        let vocabStart = tensorParallel.rank * config.paddedVocabSize / tensorParallel.size
        return try VocabParallelCrossEntropy.run(logits: logits, targets: targets, vocabStart: vocabStart, vocabSize: config.paddedVocabSize,
                                                 gradWeights: gradWeights, tensorParallel: tensorParallel, on: device)
    }
}
