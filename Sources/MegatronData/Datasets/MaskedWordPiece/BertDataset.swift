/// Megatron's BERTMaskedWordPieceDataset (megatron/core/datasets/bert_dataset.py) with
/// pretrain_bert.py's masking (n-grams up to 3, whole words): sample i is a run of whole sentences
/// of one document (`SentenceSampleIndex`, at most sequence length − 3 tokens, 2 or more sentences
/// with the binary head), built from NumPy's RandomState(seed + i):
///
/// 1. With the binary head, the sentences split at a random pivot into segments A and B, swapped
///    with probability 1/2 (is_random, the sentence-order label); without it, all are A.
/// 2. While A + B exceed the sample's target length, the longer (B on a tie) loses its first or
///    last token, at even odds.
/// 3. [CLS] A [SEP] B [SEP] (types 0 through the first [SEP], then 1), masked by
///    `MaskedWordPieceDataset`'s rules, each masked token becoming [MASK] (80 %), a uniformly random
///    id of the vocabulary (10 %) or itself (10 %); padded with [PAD] to the sequence length.
public struct BertDataset: Sendable {
    public let base: MaskedWordPieceDataset
    public let sequenceLength: Int
    public let binaryHead: Bool

    /// The samples of `documents` (a split of `dataset`'s documents): at least `numSamples` (whole
    /// epochs), or one epoch when nil. `masking.maxNgram` is pretrain_bert.py's 3 unless set.
    public init(_ dataset: IndexedDataset, documents: Range<Int>, numSamples: Int?, sequenceLength: Int, binaryHead: Bool,
                tokenizer: BertWordPieceTokenizer, maskProbability: Double, shortSequenceProbability: Double, seed: Int32) throws {
        guard sequenceLength > 4 else {
            throw TokenizerError("BertDataset: --seq-length \(sequenceLength) leaves no room for text beside [CLS] and two [SEP]")
        }
        let masking = MaskedWordPieceDataset.Masking(probability: maskProbability, shortSequenceProbability: shortSequenceProbability,
                                                     maxNgram: 3)
        base = try MaskedWordPieceDataset(dataset, documents: documents, numSamples: numSamples, maxSequenceLength: sequenceLength - 3,
                                          minSentencesPerSample: binaryHead ? 2 : 1, tokenizer: tokenizer, masking: masking, seed: seed)
        self.sequenceLength = sequenceLength
        self.binaryHead = binaryHead
    }

    public var count: Int { base.count }

    /// Sample `index`, and whether its segments were cut to fit (Megatron's "truncated").
    public func sample(_ index: Int) -> (sample: BertSample, truncated: Bool) {
        let tokenizer = base.tokenizer
        var (sentences, targetLength, random) = base.sentences(of: index)
        var pivot = sentences.count, isNextRandom = false
        if binaryHead {
            pivot = sentences.count >= 3 ? random.randint(1, sentences.count) : 1
            isNextRandom = random.random() < 0.5
        }
        var a = Array(sentences[..<pivot].joined()), b = Array(sentences[pivot...].joined())
        if isNextRandom { swap(&a, &b) }
        let truncated = a.count + b.count > targetLength
        while a.count + b.count > targetLength {
            let fromFront = random.random() < 0.5
            if a.count > b.count {
                if fromFront { a.removeFirst() } else { a.removeLast() }
            } else {
                if fromFront { b.removeFirst() } else { b.removeLast() }
            }
        }
        var tokens = [tokenizer.cls] + a + [tokenizer.sep]
        var types = [Int32](repeating: 0, count: tokens.count)
        if !b.isEmpty {
            tokens += b + [tokenizer.sep]
            types += [Int32](repeating: 1, count: b.count + 1)
        }
        let vocabulary = tokenizer.vocabSize
        let masked = base.maskedLMPredictions(tokens, targetLength: targetLength, random: &random) { random in
            if random.random() < 0.8 { return tokenizer.mask }
            return random.random() >= 0.5 ? Int32(random.randint(0, vocabulary)) : nil
        }
        let padding = sequenceLength - tokens.count
        var text = masked.tokens + [Int32](repeating: tokenizer.pad, count: padding)
        var labels = [Int32](repeating: -1, count: sequenceLength), lossMask = [Int32](repeating: 0, count: sequenceLength)
        for (position, label) in zip(masked.positions, masked.labels) {
            labels[position] = label
            lossMask[position] = 1
        }
        // Megatron marks every [PAD] id (a masked token replaced by it too) with the pad id itself:
        // 0, padding, in BERT's vocabularies, where [PAD] is the first line.
        let paddingMask = text.map { $0 == tokenizer.pad ? tokenizer.pad : 1 }
        for i in text.indices where text[i] == tokenizer.pad { text[i] = 0 }
        for i in labels.indices where labels[i] == tokenizer.pad { labels[i] = 0 }
        types += [Int32](repeating: tokenizer.pad, count: padding)
        return (BertSample(text: text, types: types, labels: labels, isRandom: isNextRandom ? 1 : 0, lossMask: lossMask,
                           paddingMask: paddingMask), truncated)
    }
}
