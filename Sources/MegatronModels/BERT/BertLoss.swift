/// A BERT micro-batch's losses as pretrain_bert.py reports them: the lm loss (masked mean over the
/// masked tokens) and the sop loss (mean over the samples with a sentence-order label); the loss
/// trained is their sum.
public struct BertLoss: Sendable, Equatable {
    public var lm: MaskedLoss
    /// Σ per-sample cross-entropy over the labelled samples, and their count (zero without the binary head).
    public var sop: MaskedLoss

    /// lm mean + sop mean (the sop term absent without the binary head).
    public var total: Float { lm.mean + (sop.tokens > 0 ? sop.mean : 0) }
}
