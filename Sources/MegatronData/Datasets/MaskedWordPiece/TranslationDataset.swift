/// A parallel corpus as T5 samples for fine-tuning on translation (ours: Megatron has no NMT dataset
/// in megatron/core): `source` and `target` are one corpus's two sides written by
/// `megatron preprocess-data-nmt` (sentence i of one translates sentence i of the other). Sample i is
/// a pair of `pairs` (the split's), the pairs taken in a new shuffled order each epoch (NumPy's
/// RandomState(seed) shuffling 0 ..< pairs.count once per epoch, in turn), as
///
///     encoder = source sentence, cut to the encoder length, then [PAD]
///     decoder = [BOS] target sentence, cut to the decoder length, then [PAD]
///     labels  = target sentence [EOS], cut likewise, then −1; the loss on the decoder's tokens
///
/// the layout of `T5Dataset`'s samples, so pretraining and fine-tuning share the model's batches.
public struct TranslationDataset: Sendable {
    public let source: IndexedDataset
    public let target: IndexedDataset
    public let pairs: Range<Int>
    public let encoderSequenceLength: Int
    public let decoderSequenceLength: Int
    let bos: Int32, eos: Int32, pad: Int32
    /// Pair index of each sample.
    let order: [Int]

    /// At least `numSamples` samples (whole epochs), or one epoch when nil.
    public init(source: IndexedDataset, target: IndexedDataset, pairs: Range<Int>, numSamples: Int?, encoderSequenceLength: Int,
                decoderSequenceLength: Int, tokenizer: BertWordPieceTokenizer, seed: UInt32) throws {
        guard source.sequenceCount == target.sequenceCount else {
            throw TokenizerError("translation data: \(source.prefix) holds \(source.sequenceCount) sentences and \(target.prefix) "
                                 + "\(target.sequenceCount); a parallel corpus's sides pair up line by line")
        }
        guard !pairs.isEmpty, pairs.upperBound <= source.sequenceCount else {
            throw TokenizerError("translation data: pairs \(pairs) outside the corpus's \(source.sequenceCount)")
        }
        guard encoderSequenceLength >= 1, decoderSequenceLength >= 2 else {
            throw TokenizerError("translation data: the encoder needs a token and the decoder two")
        }
        self.source = source
        self.target = target
        self.pairs = pairs
        self.encoderSequenceLength = encoderSequenceLength
        self.decoderSequenceLength = decoderSequenceLength
        (bos, eos, pad) = (tokenizer.bos, tokenizer.eos, tokenizer.pad)
        var random = NumPyRandomState(seed: seed), order: [Int] = []
        repeat {
            var epoch = Array(pairs)
            random.shuffle(&epoch)
            order += epoch
        } while order.count < (numSamples ?? 1)
        self.order = order
    }

    public var count: Int { order.count }

    public func sample(_ index: Int) -> T5Sample {
        let pair = order[index]
        let text = source.sequence(pair), translation = target.sequence(pair)
        func padded(_ row: [Int32], to length: Int, with value: Int32) -> [Int32] {
            Array(row.prefix(length)) + [Int32](repeating: value, count: max(0, length - row.count))
        }
        let encoder = padded(text, to: encoderSequenceLength, with: pad)
        let decoderCount = min(translation.count + 1, decoderSequenceLength)
        let tokens = (0 ..< decoderSequenceLength).map { Int32($0 < decoderCount ? 1 : 0) }
        return T5Sample(encoderTokens: encoder, decoderTokens: padded([bos] + translation, to: decoderSequenceLength, with: pad),
                        labels: padded(translation + [eos], to: decoderSequenceLength, with: -1), lossMask: tokens,
                        encoderMask: (0 ..< encoderSequenceLength).map { Int32($0 < min(text.count, encoderSequenceLength) ? 1 : 0) },
                        decoderMask: tokens)
    }
}
