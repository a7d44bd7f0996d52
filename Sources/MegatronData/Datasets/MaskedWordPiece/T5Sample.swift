/// One T5 training sample as Megatron's T5 dataset gives it (pretrain_t5.py's get_batch keys): the
/// encoder's rows the encoder sequence length long, the decoder's the decoder sequence length long.
public struct T5Sample: Sendable, Equatable {
    /// "text_enc": the text with each masked span replaced by its sentinel, then [PAD] (id 0).
    public var encoderTokens: [Int32]
    /// "text_dec": [BOS], then each span's sentinel and its tokens, then [PAD] (id 0).
    public var decoderTokens: [Int32]
    /// "labels": the decoder tokens shifted left, ending in [EOS], then −1.
    public var labels: [Int32]
    /// "loss_mask": 1 on the decoder's tokens.
    public var lossMask: [Int32]
    /// "enc_mask", "dec_mask": 1 on the tokens, 0 on the padding.
    public var encoderMask: [Int32], decoderMask: [Int32]

    public init(encoderTokens: [Int32], decoderTokens: [Int32], labels: [Int32], lossMask: [Int32], encoderMask: [Int32],
                decoderMask: [Int32]) {
        self.encoderTokens = encoderTokens
        self.decoderTokens = decoderTokens
        self.labels = labels
        self.lossMask = lossMask
        self.encoderMask = encoderMask
        self.decoderMask = decoderMask
    }
}
