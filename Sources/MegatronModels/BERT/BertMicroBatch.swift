import MegatronCore

/// One micro-batch of `batch` BERT samples of `sequenceLength` tokens, rows batch-major, as
/// pretrain_bert.py's get_batch gives them: the (masked) tokens, their token types, the padding
/// mask, the masked-LM labels with their loss mask, and the sentence-order label of each sample.
///
/// Padding is a suffix of each row: attention sees the first `keyCounts[b]` keys. Megatron's mask
/// can also hide a key inside a sequence (its dataset marks any [PAD] id as padding, a masked
/// token replaced by [PAD] too); such positions move after the sequence's tokens, keeping their
/// position ids. That computes what the mask does, since the encoder is order-free but for the
/// position ids (bidirectional attention, per-token layers), the pooler reads row 0 ([CLS], never
/// padding) and the losses are sums over tokens; only the rows of the logits come in that order.
public struct BertMicroBatch: Sendable {
    /// [B·s] ids.
    public let tokens: Tensor
    /// [B·s] token types (0: first segment, 1: second); nil without the binary head.
    public let tokentypes: Tensor?
    /// [B·s] the original ids where the loss mask is 1, 0 elsewhere.
    public let labels: Tensor
    /// [B·s] 1 where a token was masked (and so counts in the lm loss).
    public let lossMask: Tensor
    /// [B·s] each row's position in its sample: 0 ..< s, unless padding inside it moved.
    public let positions: Tensor
    /// Per sequence, its tokens before the padding: the keys its attention sees.
    public let keyCounts: [Int]
    /// Per sequence, 1 when its two segments were swapped (is_random), 0 when in order, −1 to leave
    /// it out of the sop loss (its ignore index).
    public let sentenceOrder: [Int32]
    public let batch: Int
    public let sequenceLength: Int

    /// From per-sample rows of s values each: `paddingMask` 1 on a sample's tokens, then 0 on its
    /// padding (the padding at the end, as BertDataset pads); `labels` read where `lossMask` is 1.
    /// Pass `tokentypes` nil for a model without the binary head.
    public init(tokens: [[Int32]], tokentypes: [[Int32]]?, paddingMask: [[Int32]], labels: [[Int32]], lossMask: [[Int32]],
                sentenceOrder: [Int32], on device: CPUDevice) throws {
        guard let first = tokens.first, !first.isEmpty else { throw TensorError("BERT micro-batch: no samples") }
        let s = first.count, b = tokens.count
        for (name, rows) in [("tokens", tokens), ("padding_mask", paddingMask), ("labels", labels), ("loss_mask", lossMask)]
            + (tokentypes.map { [("types", $0)] } ?? []) {
            guard rows.count == b, rows.allSatisfy({ $0.count == s }) else {
                throw TensorError("BERT micro-batch: \(name) must be \(b) rows of \(s) values like the tokens")
            }
        }
        guard sentenceOrder.count == b else { throw TensorError("BERT micro-batch: expected \(b) is_random values, got \(sentenceOrder.count)") }
        // Each row's tokens, then its padding, in order.
        let orders = try paddingMask.enumerated().map { index, mask in
            guard mask[0] != 0 else { throw TensorError("BERT micro-batch: padding_mask of sample \(index) must start with a token ([CLS])") }
            return mask.indices.filter { mask[$0] != 0 } + mask.indices.filter { mask[$0] == 0 }
        }
        func reordered(_ rows: [[Int32]]) -> [Int32] { zip(rows, orders).flatMap { row, order in order.map { row[$0] } } }
        keyCounts = paddingMask.map { mask in mask.count { $0 != 0 } }
        batch = b
        sequenceLength = s
        self.sentenceOrder = sentenceOrder
        self.tokens = try Tensor(int32s: reordered(tokens), shape: [b * s], on: device)
        self.tokentypes = try tokentypes.map { try Tensor(int32s: reordered($0), shape: [b * s], on: device) }
        let mask = reordered(lossMask)
        self.labels = try Tensor(int32s: zip(reordered(labels), mask).map { $1 != 0 ? $0 : 0 }, shape: [b * s], on: device)
        self.lossMask = try Tensor(mask.map(Float.init), shape: [b * s], on: device)
        positions = try Tensor(int32s: orders.flatMap { $0.map(Int32.init) }, shape: [b * s], on: device)
    }
}
