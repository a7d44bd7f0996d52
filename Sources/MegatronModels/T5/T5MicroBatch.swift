import MegatronCore

/// One micro-batch of `batch` T5 samples, rows batch-major, as pretrain_t5.py's get_batch gives them:
/// the encoder's tokens (`encoderSequenceLength` a row, padded at the end), the decoder's input
/// tokens and labels (`decoderSequenceLength` a row) with the loss mask.
public struct T5MicroBatch: Sendable {
    /// [B·s_enc], [B·s_dec] ids.
    public let encoderTokens: Tensor, decoderTokens: Tensor
    /// [B·s_dec] the next decoder token where the loss mask is 1, 0 elsewhere.
    public let labels: Tensor
    /// [B·s_dec] 1 where a decoder token counts in the loss.
    public let lossMask: Tensor
    /// [B·s_enc], [B·s_dec] positions 0 ..< s in each sequence.
    public let encoderPositions: Tensor, decoderPositions: Tensor
    /// Per sequence, its encoder tokens before the padding.
    public let encoderKeyCounts: [Int]
    public let batch: Int
    public let encoderSequenceLength: Int, decoderSequenceLength: Int

    /// From per-sample rows: `encoderMask` 1 on a sample's encoder tokens then 0 on its padding.
    public init(encoderTokens: [[Int32]], decoderTokens: [[Int32]], labels: [[Int32]], lossMask: [[Int32]], encoderMask: [[Int32]],
                on device: CPUDevice) throws {
        guard let first = encoderTokens.first, !first.isEmpty, let firstDecoder = decoderTokens.first, !firstDecoder.isEmpty else {
            throw TensorError("T5 micro-batch: no samples")
        }
        let b = encoderTokens.count, se = first.count, sd = firstDecoder.count
        for (name, rows, width) in [("text_enc", encoderTokens, se), ("enc_mask", encoderMask, se), ("text_dec", decoderTokens, sd),
                                    ("labels", labels, sd), ("loss_mask", lossMask, sd)] {
            guard rows.count == b, rows.allSatisfy({ $0.count == width }) else {
                throw TensorError("T5 micro-batch: \(name) must be \(b) rows of \(width) values")
            }
        }
        encoderKeyCounts = try encoderMask.enumerated().map { index, mask in
            let count = mask.prefix { $0 != 0 }.count
            guard count > 0, mask.dropFirst(count).allSatisfy({ $0 == 0 }) else {
                throw TensorError("T5 micro-batch: enc_mask of sample \(index) must be 1s then 0s, starting with a 1")
            }
            return count
        }
        batch = b
        encoderSequenceLength = se
        decoderSequenceLength = sd
        self.encoderTokens = try Tensor(int32s: encoderTokens.flatMap { $0 }, shape: [b * se], on: device)
        self.decoderTokens = try Tensor(int32s: decoderTokens.flatMap { $0 }, shape: [b * sd], on: device)
        let mask = lossMask.flatMap { $0 }
        self.labels = try Tensor(int32s: zip(labels.flatMap { $0 }, mask).map { $1 != 0 ? $0 : 0 }, shape: [b * sd], on: device)
        self.lossMask = try Tensor(mask.map(Float.init), shape: [b * sd], on: device)
        encoderPositions = try Tensor(int32s: (0 ..< b * se).map { Int32($0 % se) }, shape: [b * se], on: device)
        decoderPositions = try Tensor(int32s: (0 ..< b * sd).map { Int32($0 % sd) }, shape: [b * sd], on: device)
    }
}
