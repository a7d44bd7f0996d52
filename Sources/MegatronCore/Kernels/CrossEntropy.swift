import CKernels

/// Softmax cross-entropy over the (padded) vocabulary, Megatron's language-model loss per token:
/// loss_t = logsumexp(z_t) − z_t[target_t].
public enum CrossEntropy {
    /// Losses [rows] of logits [..., vocab] for targets [rows]; logits are left unchanged.
    public static func forward(logits: Tensor, targets: Tensor, on device: CPUDevice) throws -> Tensor {
        try run(logits: logits, targets: targets, gradWeights: nil, on: device)
    }

    /// Losses [rows], and the logits overwritten in place by their gradient
    /// gradWeights[t]·(softmax(z_t) − onehot(target_t)), gradWeights[t] being ∂L/∂loss_t (for a mean
    /// over unmasked tokens: mask_t / Σ mask, times the loss scale). One pass over 50K-wide rows
    /// instead of a forward, a stored softmax and a backward.
    public static func forwardBackward(logits: Tensor, targets: Tensor, gradWeights: Tensor,
                                       on device: CPUDevice) throws -> Tensor {
        try gradWeights.expect(shape: [logits.rows], "CrossEntropy", "gradWeights")
        return try run(logits: logits, targets: targets, gradWeights: gradWeights, on: device)
    }

    private static func run(logits: Tensor, targets: Tensor, gradWeights: Tensor?, on device: CPUDevice) throws -> Tensor {
        try logits.expect(dtype: .float32, "CrossEntropy", "logits")
        try targets.expect(dtype: .int32, "CrossEntropy", "targets")
        try targets.expect(shape: [logits.rows], "CrossEntropy", "targets")
        let vocab = logits.columns
        let values = UnsafeBufferPointer(start: targets.int32s, count: targets.count)
        if let bad = values.firstIndex(where: { $0 < 0 || Int($0) >= vocab }) {
            throw TensorError("CrossEntropy: target \(values[bad]) at row \(bad) is outside the vocabulary of \(vocab)")
        }
        let losses = try Tensor(shape: [logits.rows], on: device, zeroed: false)
        device.parallelFor(logits.rows) { r, _ in
            mg_cross_entropy(logits.floats + r.lowerBound * vocab, losses.floats + r.lowerBound,
                             targets.int32s + r.lowerBound, gradWeights.map { $0.floats + r.lowerBound },
                             r.count, vocab)
        }
        return losses
    }
}
