/// What Megatron's BERT and T5 datasets share (megatron/core/datasets/masked_dataset.py): the
/// sentence runs of a split's documents (`SentenceSampleIndex`) and the masked-LM predictions.
///
/// Masking (`_create_masked_lm_predictions` with whole-word masking, as both of Megatron's scripts
/// set it): every token but [CLS] and [SEP] starts a candidate, or joins the candidate before it
/// when its piece continues a word ("##…"). The candidates are shuffled; each in turn draws an
/// n-gram length n of 1 ... maxNgram (P(n) ∝ 1/n, or SpanBERT's geometric length with p = 0.2,
/// clipped to maxNgram) and masks the
/// n candidates from it, shortening n while that would exceed the budget of
/// min(p · target length, max(1, round(p · tokens))) masked tokens, skipping it when even one
/// candidate would or when one of its tokens is masked already, until the budget is spent. Each
/// masked token is replaced as the dataset's `replacement` says (nil keeps it).
public struct MaskedWordPieceDataset: Sendable {
    /// MaskedWordPieceDatasetConfig's masking fields that Megatron's scripts vary.
    public struct Masking: Sendable, Equatable {
        /// --mask-prob
        public var probability: Double
        /// --short-seq-prob
        public var shortSequenceProbability: Double
        public var maxNgram: Int
        /// SpanBERT's span lengths (T5's).
        public var useGeometricDistribution = false

        public init(probability: Double, shortSequenceProbability: Double, maxNgram: Int) {
            self.probability = probability
            self.shortSequenceProbability = shortSequenceProbability
            self.maxNgram = maxNgram
        }
    }

    /// The masked tokens; sorted by position, the masked positions and their original ids; and the
    /// masked spans (each n-gram's positions and original ids) in order.
    public struct Predictions: Sendable {
        public var tokens: [Int32]
        public var positions: [Int]
        public var labels: [Int32]
        public var spans: [(positions: [Int], labels: [Int32])]
    }

    public let dataset: IndexedDataset
    public let tokenizer: BertWordPieceTokenizer
    public let masking: Masking
    public let seed: Int32
    public let sampleIndex: SentenceSampleIndex
    /// P(n) ∝ 1/n of the n-gram lengths 1 ... maxNgram, normalised twice as Megatron does (NumPy
    /// sums a few values in order).
    let ngramProbabilities: [Double]

    /// Samples of `documents` (a split's documents of `dataset`) holding at most `maxSequenceLength`
    /// tokens of at least `minSentencesPerSample` sentences each; at least `numSamples` (whole
    /// epochs), or one epoch when nil.
    public init(_ dataset: IndexedDataset, documents: Range<Int>, numSamples: Int?, maxSequenceLength: Int,
                minSentencesPerSample: Int, tokenizer: BertWordPieceTokenizer, masking: Masking, seed: Int32) throws {
        guard !documents.isEmpty, documents.upperBound <= dataset.documentCount else {
            throw TokenizerError("\(dataset.prefix): documents \(documents) outside its \(dataset.documentCount)")
        }
        guard masking.probability > 0 && masking.probability < 1 else {
            throw TokenizerError("--mask-prob \(masking.probability): expected more than 0 and less than 1")
        }
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.masking = masking
        self.seed = seed
        func normalised(_ values: [Double]) -> [Double] {
            let total = values.reduce(0, +)
            return values.map { $0 / total }
        }
        ngramProbabilities = normalised(normalised((1 ... masking.maxNgram).map { 1 / Double($0) }))
        sampleIndex = try SentenceSampleIndex(documentSentences: Array(dataset.documentIndices[documents.lowerBound ... documents.upperBound]),
                                              sentenceLengths: dataset.sequenceLengths, numSamples: numSamples,
                                              maxSequenceLength: maxSequenceLength,
                                              shortSequenceProbability: masking.shortSequenceProbability, seed: seed,
                                              minSentencesPerSample: minSentencesPerSample)
    }

    public var count: Int { sampleIndex.samples.count }

    /// Sample `index`'s sentences, its target length and its random state (NumPy's RandomState
    /// seeded with (seed + index) mod 2³², as each Megatron sample is).
    func sentences(of index: Int) -> (sentences: [[Int32]], targetLength: Int, random: NumPyRandomState) {
        let sample = sampleIndex.samples[index]
        return (sample.sentences.map { dataset.sequence($0) }, sample.targetLength,
                NumPyRandomState(seed: UInt32(truncatingIfNeeded: Int(seed) + index)))
    }

    /// The masked-LM predictions of `tokens` (a sample cut to `targetLength`), drawing from `random`.
    func maskedLMPredictions(_ tokens: [Int32], targetLength: Int, random: inout NumPyRandomState,
                             replacement: (inout NumPyRandomState) -> Int32?) -> Predictions {
        var candidates: [[Int]] = []
        for (i, id) in tokens.enumerated() where id != tokenizer.cls && id != tokenizer.sep {
            if tokenizer.isWordContinuation(id) && !candidates.isEmpty {
                candidates[candidates.count - 1].append(i)
            } else {
                candidates.append([i])
            }
        }
        let p = masking.probability
        let budget = min(p * Double(targetLength), Double(max(1, Int((Double(tokens.count) * p).rounded(.toNearestOrEven)))))
        /// The tokens of the `n` candidates from `start` (fewer at the end).
        func ngram(_ start: Int, _ n: Int) -> [Int] { candidates[start ..< min(start + n, candidates.count)].flatMap { $0 } }

        var order = Array(candidates.indices)
        random.shuffle(&order)
        var masked = tokens
        var predictions: [(position: Int, label: Int32)] = []
        var maskedPositions = Set<Int>()
        var spans: [(positions: [Int], labels: [Int32])] = []
        for start in order {
            if Double(predictions.count) >= budget { break }
            var n = masking.useGeometricDistribution
                ? min(random.geometric(0.2), masking.maxNgram) : random.choice(probabilities: ngramProbabilities) + 1
            var indices: [Int] = []
            while true {
                indices = ngram(start, n)
                n -= 1
                if budget >= Double(predictions.count + indices.count) { break }
                if n == 0 { indices = []; break }
            }
            if indices.isEmpty || indices.contains(where: maskedPositions.contains) { continue }
            for position in indices {
                maskedPositions.insert(position)
                masked[position] = replacement(&random) ?? tokens[position]
                predictions.append((position, tokens[position]))
            }
            spans.append((indices, indices.map { tokens[$0] }))
        }
        spans.sort { $0.positions[0] < $1.positions[0] }
        predictions.sort { $0.position < $1.position }
        return Predictions(tokens: masked, positions: predictions.map(\.position), labels: predictions.map(\.label), spans: spans)
    }
}
