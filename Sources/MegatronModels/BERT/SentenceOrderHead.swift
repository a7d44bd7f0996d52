import Foundation
import MegatronCore

/// Megatron's Pooler and BERT's binary head (sentence-order prediction), both replicated, on the
/// first token ([CLS]) of each sequence:
///
///     pooled = tanh(h₀·W_poolerᵀ + b_pooler)      [B, h]
///     logits = pooled·W_binaryᵀ + b_binary         [B, 2]
struct SentenceOrderHead {
    let pooler: (weight: Parameter, bias: Parameter)
    let binary: (weight: Parameter, bias: Parameter)
    let device: CPUDevice

    struct Saved {
        let first: Tensor   // [B, h]: each sequence's first row
        let pooled: Tensor  // [B, h]
    }

    /// Logits [B, 2] from the encoder's output [B·s, h] (every row).
    func forward(_ hidden: Tensor, batch: Int, sequenceLength s: Int) throws -> (Tensor, Saved) {
        let h = hidden.columns
        let first = try Tensor(shape: [batch, h], on: device, zeroed: false)
        for b in 0 ..< batch { (first.floats + b * h).update(from: hidden.floats + b * s * h, count: h) }
        let pooled = try Linear.forward(first, weight: pooler.weight.value, bias: pooler.bias.value, on: device)
        for i in 0 ..< pooled.count { pooled.floats[i] = tanhf(pooled.floats[i]) }
        let logits = try Linear.forward(pooled, weight: binary.weight.value, bias: binary.bias.value, on: device)
        return (logits, Saved(first: first, pooled: pooled))
    }

    /// ∂ of each sequence's first row [B, h] from ∂logits [B, 2]; accumulates both layers' gradients.
    func backward(_ dLogits: Tensor, saved s: Saved) throws -> Tensor {
        let dPooled = try Linear.backward(dLogits, input: s.pooled, weight: binary.weight, gradBias: binary.bias.gradient, on: device)
        for i in 0 ..< dPooled.count {
            let t = s.pooled.floats[i]
            dPooled.floats[i] *= 1 - t * t
        }
        return try Linear.backward(dPooled, input: s.first, weight: pooler.weight, gradBias: pooler.bias.gradient, on: device)
    }

    /// pretrain_bert.py's sop loss: the mean cross-entropy of `logits` [B, 2] over the samples whose
    /// label is not −1 (its ignore index), as a sum and a count. With `lossWeight`, `logits` is
    /// overwritten by ∂(lossWeight·mean)/∂logits.
    static func loss(_ logits: Tensor, labels: [Int32], lossWeight: Float?) throws -> MaskedLoss {
        guard labels.allSatisfy({ (-1 ... 1).contains($0) }) else {
            throw TensorError("BERT: is_random labels must be 0, 1 or −1 (ignored); got \(labels)")
        }
        let counted = Float(labels.filter { $0 >= 0 }.count)
        var sum: Float = 0
        for (b, label) in labels.enumerated() {
            let z = logits.floats + 2 * b, m = max(z[0], z[1])
            let e0 = expf(z[0] - m), e1 = expf(z[1] - m), total = e0 + e1
            if label >= 0 { sum += m + logf(total) - z[Int(label)] }
            guard let lossWeight else { continue }
            let scale = label >= 0 ? lossWeight / counted : 0
            z[0] = scale * (e0 / total - (label == 0 ? 1 : 0))
            z[1] = scale * (e1 / total - (label == 1 ? 1 : 0))
        }
        return MaskedLoss(sum: sum, tokens: counted)
    }
}
