import CKernels
import Foundation
import MegatronCore

/// Megatron's vocabulary-parallel cross-entropy: each tensor-parallel rank holds the logits of its
/// chunk of the vocabulary, columns vocabStart ..< vocabStart + V/t, and the ranks reduce only
/// per-token statistics, never the logits:
///
///     m_t = max over ranks of the local maxima          (all-reduce max)
///     S_t = Σ over ranks of Σ_j exp(z_tj − m_t)         (all-reduce sum, with the target's logit)
///     loss_t = m_t + log S_t − z_t[target_t]
///     ∂loss_t/∂z_tj = exp(z_tj − m_t) / S_t − [j = target_t], each rank for its own columns.
enum VocabParallelCrossEntropy {
    /// Per-token losses [rows] of this rank's logits [rows, V/t] of a vocabulary of `vocabSize` split
    /// over `tensorParallel` (on one rank, `CrossEntropy`'s); with `gradWeights`, the logits are
    /// overwritten by their weighted gradient. 16-bit logits are read in fp32 and their gradient
    /// rounded back (`lossesOfSixteenBitLogits`).
    static func losses(logits: Tensor, targets: Tensor, vocabSize: Int, gradWeights: Tensor?, tensorParallel: TensorParallel,
                       on device: CPUDevice) throws -> Tensor {
        if logits.dtype != .float32 {
            return try lossesOfSixteenBitLogits(logits, targets: targets, vocabSize: vocabSize, gradWeights: gradWeights,
                                                tensorParallel: tensorParallel, on: device)
        }
        guard tensorParallel.size > 1 else {
            return try gradWeights.map { try CrossEntropy.forwardBackward(logits: logits, targets: targets, gradWeights: $0, on: device) }
                ?? CrossEntropy.forward(logits: logits, targets: targets, on: device)
        }
        return try run(logits: logits, targets: targets, vocabStart: tensorParallel.rank * vocabSize / tensorParallel.size,
                       vocabSize: vocabSize, gradWeights: gradWeights, tensorParallel: tensorParallel, on: device)
    }

    /// `losses` of 16-bit logits [rows, V/t], a block of rows at a time converted to fp32 (at most
    /// `Tensor.fp32BlockElements` of them), their gradient rounded back into the logits.
    private static func lossesOfSixteenBitLogits(_ logits: Tensor, targets: Tensor, vocabSize: Int, gradWeights: Tensor?,
                                                 tensorParallel: TensorParallel, on device: CPUDevice) throws -> Tensor {
        let rows = logits.rows, vocab = logits.columns
        try targets.expect(shape: [rows], "VocabParallelCrossEntropy", "targets")
        let blockRows = max(1, min(rows, Tensor.fp32BlockElements / max(vocab, 1)))
        let scratch = try Tensor(shape: [blockRows * vocab], on: device, zeroed: false)
        let losses = try Tensor(shape: [rows], on: device, zeroed: false)
        try logits.forEachFP32Block(scratch: scratch, writeBack: gradWeights != nil, on: device) { start, block in
            let first = start / vocab, count = block.count / vocab
            let blockLosses = try self.losses(logits: block.view(offset: 0, shape: [count, vocab]),
                                              targets: targets.view(offset: first, shape: [count]), vocabSize: vocabSize,
                                              gradWeights: gradWeights?.view(offset: first, shape: [count]),
                                              tensorParallel: tensorParallel, on: device)
            try losses.view(offset: first, shape: [count]).assign(converting: blockLosses, on: device)
        }
        return losses
    }

    /// Losses [rows] for local logits [rows, V/t] and targets [rows] in the whole vocabulary; with
    /// `gradWeights`, the logits are overwritten by gradWeights[t]·∂loss_t/∂z (as `CrossEntropy`).
    static func run(logits: Tensor, targets: Tensor, vocabStart: Int, vocabSize: Int, gradWeights: Tensor?,
                    tensorParallel: TensorParallel, on device: CPUDevice) throws -> Tensor {
        let rows = logits.rows, vocab = logits.columns
        try targets.expect(shape: [rows], "VocabParallelCrossEntropy", "targets")
        if let gradWeights { try gradWeights.expect(shape: [rows], "VocabParallelCrossEntropy", "gradWeights") }
        let target = UnsafeBufferPointer(start: targets.int32s, count: rows)
        if let bad = target.firstIndex(where: { $0 < 0 || Int($0) >= vocabSize }) {
            throw TensorError("CrossEntropy: target \(target[bad]) at row \(bad) is outside the vocabulary of \(vocabSize)")
        }
        let maxima = try Tensor(shape: [rows], on: device, zeroed: false)
        device.parallelFor(rows) { r, _ in mg_row_maxima(logits.floats + r.lowerBound * vocab, maxima.floats + r.lowerBound, r.count, vocab) }
        try tensorParallel.group.allReduce(UnsafeMutableBufferPointer(start: maxima.floats, count: rows), op: .max)
        // [S_t for every row | z_t[target_t] for every row, from the rank that holds it, 0 elsewhere]
        let sums = try Tensor(shape: [2 * rows], on: device)
        let local = { (r: Int) -> Int? in
            let column = Int(target[r]) - vocabStart
            return (0 ..< vocab).contains(column) ? column : nil
        }
        for r in 0 ..< rows { if let column = local(r) { sums.floats[rows + r] = logits.floats[r * vocab + column] } }
        device.parallelFor(rows) { r, _ in
            mg_exp_row_sums(logits.floats + r.lowerBound * vocab, maxima.floats + r.lowerBound, sums.floats + r.lowerBound, r.count, vocab, gradWeights == nil ? 0 : 1)
        }
        try tensorParallel.allReduce(sums)
        let losses = try Tensor(shape: [rows], on: device, zeroed: false)
        for r in 0 ..< rows { losses.floats[r] = maxima.floats[r] + log(sums.floats[r]) - sums.floats[rows + r] }
        guard let gradWeights else { return losses }
        let scale = try Tensor(shape: [rows], on: device, zeroed: false)
        for r in 0 ..< rows { scale.floats[r] = gradWeights.floats[r] / sums.floats[r] }
        device.parallelFor(rows) { r, _ in
            mg_scale_rows(logits.floats + r.lowerBound * vocab, scale.floats + r.lowerBound, r.count, vocab)
        }
        for r in 0 ..< rows { if let column = local(r) { logits.floats[r * vocab + column] -= gradWeights.floats[r] } }
        return losses
    }
}
