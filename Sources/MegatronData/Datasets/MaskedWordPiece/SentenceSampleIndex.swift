/// Megatron's sample mapping for sentence-split corpora (helpers.cpp `build_mapping`), which
/// BertDataset and T5Dataset draw their samples from: runs of whole sentences of one document.
///
/// Per epoch, per document of at least `minSentencesPerSample` sentences none over 512 tokens
/// (a single-sentence document is not checked), sentences are gathered until their tokens reach a
/// target length and at least `minSentencesPerSample` are in the run and more than one sentence
/// remains in the document, or the document ends; each run is a sample with that target length.
/// The target is `maxSequenceLength`, or with probability ≈ `shortSequenceProbability` (one in
/// round(1 / p) draws of `std::mt19937(seed)`) a length of 2 ... maxSequenceLength. Epochs repeat
/// until `numSamples` samples exist (whole epochs, so there may be more), then the samples are
/// shuffled by Fisher–Yates over `std::mt19937_64(seed + 1)`.
public struct SentenceSampleIndex: Sendable {
    public struct Sample: Sendable, Equatable {
        /// Indices of the sentences (the indexed dataset's sequences).
        public let sentences: Range<Int>
        /// The tokens the sample should hold (its sentences are cut to it).
        public let targetLength: Int
    }

    public let samples: [Sample]
    public let epochs: Int

    static let longSentenceLength = 512

    /// `documentSentences[d] ..< documentSentences[d + 1]` are document d's sentences and
    /// `sentenceLengths` every sentence's tokens; nil `numSamples` builds one epoch.
    public init(documentSentences: [Int64], sentenceLengths: [Int32], numSamples: Int?, maxSequenceLength: Int,
                shortSequenceProbability: Double, seed: Int32, minSentencesPerSample: Int) throws {
        guard seed > 0 else { throw TokenizerError("sentence sample mapping: --seed \(seed) must be positive (Megatron's build_mapping)") }
        guard maxSequenceLength > 1 else {
            throw TokenizerError("sentence sample mapping: the sample length \(maxSequenceLength) must exceed 1 (--seq-length too short)")
        }
        guard (0 ... 1).contains(shortSequenceProbability) else {
            throw TokenizerError("--short-seq-prob \(shortSequenceProbability): expected 0 ... 1")
        }
        let shortRatio = shortSequenceProbability > 0 ? UInt64((1 / shortSequenceProbability).rounded()) : 0
        var generator = NumPyRandomState(seed: UInt32(seed))
        func targetLength() -> Int {
            guard shortRatio > 0 else { return maxSequenceLength }
            let r = UInt64(generator.nextUInt32())
            return r % shortRatio == 0 ? 2 + Int(r % UInt64(maxSequenceLength - 1)) : maxSequenceLength
        }
        var samples: [Sample] = []
        var epochs = 0
        while epochs == 0 || numSamples.map({ samples.count < $0 }) == true {
            for d in 0 ..< documentSentences.count - 1 {
                let first = Int(documentSentences[d]), end = Int(documentSentences[d + 1])
                var remaining = end - first
                let longSentence = remaining > 1 && (first ..< end).contains { Int(sentenceLengths[$0]) > Self.longSentenceLength }
                guard remaining >= minSentencesPerSample, !longSentence else { continue }
                var start = first, tokens = 0, count = 0
                var target = targetLength()
                for sentence in first ..< end {
                    tokens += Int(sentenceLengths[sentence])
                    count += 1
                    remaining -= 1
                    if (tokens >= target && remaining > 1 && count >= minSentencesPerSample) || remaining == 0 {
                        samples.append(Sample(sentences: start ..< sentence + 1, targetLength: target))
                        start = sentence + 1
                        target = targetLength()
                        tokens = 0
                        count = 0
                    }
                }
            }
            epochs += 1
            if samples.isEmpty {
                throw TokenizerError("sentence sample mapping: no document has \(minSentencesPerSample) or more sentences, "
                                     + "none over \(Self.longSentenceLength) tokens (BERT's sentence order needs 2: preprocess with "
                                     + "--split-sentences, or use --bert-no-binary-head)")
            }
        }
        var shuffle = MersenneTwister64(seed: UInt64(seed) + 1)
        for i in stride(from: samples.count - 1, to: 0, by: -1) {
            samples.swapAt(i, Int(shuffle.next() % UInt64(i + 1)))
        }
        self.samples = samples
        self.epochs = epochs
    }
}
