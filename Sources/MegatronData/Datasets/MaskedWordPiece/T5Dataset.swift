/// Megatron's T5MaskedWordPieceDataset (megatron/core/datasets/t5_dataset.py) with pretrain_t5.py's
/// span corruption: sample i is a run of whole sentences of one document (`SentenceSampleIndex`, at
/// most encoder sequence length − 2 tokens), from NumPy's RandomState(seed + i):
///
/// 1. The sentences' tokens, cut to the sample's target length.
/// 2. Spans masked by `MaskedWordPieceDataset`'s rules with SpanBERT's geometric span lengths
///    (p = 0.2, at most 10 words).
/// 3. Span k becomes sentinel k (`<extra_id_k>`, --vocab-extra-ids) in the encoder input; the
///    decoder reads [BOS], then each sentinel followed by its span's tokens, and learns that
///    sequence shifted left, ending in [EOS]; both padded with [PAD].
public struct T5Dataset: Sendable {
    public let base: MaskedWordPieceDataset
    public let encoderSequenceLength: Int
    public let decoderSequenceLength: Int

    /// The samples of `documents` (a split of `dataset`'s documents): at least `numSamples` (whole
    /// epochs), or one epoch when nil. The tokenizer's --vocab-extra-ids are the sentinels.
    public init(_ dataset: IndexedDataset, documents: Range<Int>, numSamples: Int?, encoderSequenceLength: Int,
                decoderSequenceLength: Int, tokenizer: BertWordPieceTokenizer, maskProbability: Double,
                shortSequenceProbability: Double, seed: Int32) throws {
        guard encoderSequenceLength > 3 else {
            throw TokenizerError("T5Dataset: --encoder-seq-length \(encoderSequenceLength) leaves no room for text")
        }
        var masking = MaskedWordPieceDataset.Masking(probability: maskProbability, shortSequenceProbability: shortSequenceProbability,
                                                     maxNgram: 10)
        masking.useGeometricDistribution = true
        // Each span is a token or more, and needs its sentinel.
        let maxMasked = Int(maskProbability * Double(encoderSequenceLength - 2))
        guard tokenizer.extraIDs.count >= maxMasked else {
            throw TokenizerError("T5Dataset: --vocab-extra-ids \(tokenizer.extraIDs.count) gives too few sentinels for up to \(maxMasked) "
                                 + "masked spans (--mask-prob \(maskProbability) of --encoder-seq-length \(encoderSequenceLength))")
        }
        base = try MaskedWordPieceDataset(dataset, documents: documents, numSamples: numSamples,
                                          maxSequenceLength: encoderSequenceLength - 2, minSentencesPerSample: 1, tokenizer: tokenizer,
                                          masking: masking, seed: seed)
        self.encoderSequenceLength = encoderSequenceLength
        self.decoderSequenceLength = decoderSequenceLength
    }

    public var count: Int { base.count }

    /// Sample `index`, and whether its text was cut to fit (Megatron's "truncated"); an error when
    /// its decoder tokens ([BOS], each span's sentinel and tokens) exceed the decoder length.
    public func sample(_ index: Int) throws -> (sample: T5Sample, truncated: Bool) {
        let tokenizer = base.tokenizer
        var (sentences, targetLength, random) = base.sentences(of: index)
        let all = Array(sentences.joined())
        let tokens = Array(all.prefix(targetLength))
        let masked = base.maskedLMPredictions(tokens, targetLength: targetLength, random: &random) { _ in tokenizer.mask }
        var encoder: [Int32] = [], decoder = [tokenizer.bos], labels: [Int32] = []
        var start = 0
        for (span, sentinel) in zip(masked.spans, tokenizer.extraIDs) {
            encoder += masked.tokens[start ..< span.positions[0]] + [sentinel]
            decoder += [sentinel] + span.labels
            labels += [sentinel] + span.labels
            start = span.positions[span.positions.count - 1] + 1
        }
        encoder += masked.tokens[start...]
        labels.append(tokenizer.eos)
        guard decoder.count <= decoderSequenceLength else {
            throw TokenizerError("T5Dataset: sample \(index) masks \(masked.positions.count) tokens in \(masked.spans.count) spans: "
                                 + "\(decoder.count) decoder tokens, over --decoder-seq-length \(decoderSequenceLength)")
        }
        let pad = tokenizer.pad
        func padded(_ row: [Int32], to length: Int, with value: Int32) -> [Int32] {
            row + [Int32](repeating: value, count: length - row.count)
        }
        let encoderTokens = padded(encoder, to: encoderSequenceLength, with: pad)
        let decoderTokens = padded(decoder, to: decoderSequenceLength, with: pad)
        let sample = T5Sample(encoderTokens: encoderTokens.map { $0 == pad ? 0 : $0 },
                              decoderTokens: decoderTokens.map { $0 == pad ? 0 : $0 },
                              labels: padded(labels, to: decoderSequenceLength, with: -1).map { $0 == pad ? 0 : $0 },
                              lossMask: padded([Int32](repeating: 1, count: decoder.count), to: decoderSequenceLength, with: 0),
                              encoderMask: encoderTokens.map { $0 == pad ? 0 : 1 }, decoderMask: decoderTokens.map { $0 == pad ? 0 : 1 })
        return (sample, all.count > targetLength)
    }
}
