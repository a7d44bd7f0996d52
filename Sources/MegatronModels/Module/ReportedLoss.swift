import Foundation

/// One loss a training run reports (an entry of Megatron's loss dictionary, such as "lm loss"), as a
/// sum and a count that add over micro-batches and data-parallel ranks: the value reported is
/// Σ sum / Σ count. GPT's lm loss sums every token's loss over the tokens (a token-weighted mean
/// over the global batch); BERT's losses add each micro-batch's mean with count 1 (a mean of means).
public struct ReportedLoss: Sendable, Equatable {
    public let name: String
    public var sum: Double
    public var count: Double

    public init(_ name: String, sum: Double, count: Double) {
        self.name = name
        self.sum = sum
        self.count = count
    }

    public var value: Double { sum / count }

    /// exp(value), capped at exp(20) as Megatron's evaluation prints it.
    public var perplexity: Double { exp(min(20, value)) }
}
