/// A micro-batch's lm loss kept as Megatron reports it: the masked sum Σ mask·ℓ and the token count
/// Σ mask, so that an iteration's or an evaluation's loss is Σ sums / Σ tokens over its micro-batches
/// (and data-parallel ranks), every token weighing the same, rather than a mean of micro-batch means.
public struct MaskedLoss: Sendable, Equatable {
    public var sum: Float
    public var tokens: Float

    public init(sum: Float, tokens: Float) {
        self.sum = sum
        self.tokens = tokens
    }

    /// From per-token losses and the loss mask.
    public init(losses: [Float], mask: [Float]) {
        self.init(sum: zip(losses, mask).reduce(0) { $0 + $1.0 * $1.1 }, tokens: mask.reduce(0, +))
    }

    /// Σ mask·ℓ / Σ mask: NaN when every token is masked, as Megatron's 0 / 0.
    public var mean: Float { sum / tokens }
}
