/// One BERT training sample as Megatron's BERT dataset gives it (pretrain_bert.py's get_batch keys),
/// each row the sequence length long.
public struct BertSample: Sendable, Equatable {
    /// "text": the ids after masking.
    public var text: [Int32]
    /// "types": 0 on the first segment (with [CLS] and its [SEP]), 1 on the second.
    public var types: [Int32]
    /// "labels": the original id where a token was masked, −1 elsewhere.
    public var labels: [Int32]
    /// "is_random": 1 when the segments were swapped, 0 when in order.
    public var isRandom: Int32
    /// "loss_mask": 1 where a token was masked.
    public var lossMask: [Int32]
    /// "padding_mask": 1 on the tokens, 0 on the padding after them.
    public var paddingMask: [Int32]

    public init(text: [Int32], types: [Int32], labels: [Int32], isRandom: Int32, lossMask: [Int32], paddingMask: [Int32]) {
        self.text = text
        self.types = types
        self.labels = labels
        self.isRandom = isRandom
        self.lossMask = lossMask
        self.paddingMask = paddingMask
    }
}
