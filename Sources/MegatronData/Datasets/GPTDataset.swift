/// Megatron's GPTDataset over one indexed dataset: the documents of one split, repeated for as
/// many epochs as `numSamples` needs (one when it is nil), shuffled, packed into samples of sequence-length + 1 tokens
/// that run across document boundaries, and the samples shuffled, all exactly as
/// megatron/core/datasets/gpt_dataset.py builds them, so a seed gives Megatron's sample order.
///
/// - Document index: the split's documents once per epoch, shuffled by NumPy's RandomState(seed).
///   When the last epoch would contribute under 80 % of an epoch's samples it is shuffled apart,
///   so that its few samples are not drawn from the whole corpus.
/// - Sample index: for sample i, (position in the document index, token offset) of its first
///   token; sample i ends where sample i + 1 begins, one token further (the label of the last input).
/// - Shuffle index: a permutation of the samples (the separated last epoch's shuffled apart).
///
/// With a cache directory (--data-cache-path) the three indices are saved there as .npy files
/// named by a hash of what they depend on (written out beside them in a description file) and
/// loaded instead of rebuilt when a later run asks for the same ones.
public struct GPTDataset: Sendable {
    public let dataset: any LowLevelDataset
    public let sequenceLength: Int
    public let documentIndex: [Int32]
    /// Flattened pairs: sampleIndex[2i] is the position in `documentIndex`, sampleIndex[2i + 1] the offset.
    public let sampleIndex: [Int32]
    public let shuffleIndex: [Int]
    public let epochs: Int
    public let separateFinalEpoch: Bool

    /// Samples available (every epoch's; at least the `numSamples` asked for).
    public var count: Int { shuffleIndex.count }

    /// The dataset over `documents` (indices of the indexed dataset's sequences) giving at least
    /// `numSamples` samples of `sequenceLength` + 1 tokens, or, when `numSamples` is nil, the samples
    /// of one epoch (Megatron's num_samples=None, as unweighted blends build their datasets).
    public init(_ dataset: any LowLevelDataset, documents: Range<Int>, numSamples: Int?, sequenceLength: Int, seed: UInt32,
                cacheDirectory: String? = nil) throws {
        guard sequenceLength > 1 else { throw TokenizerError("GPTDataset: --seq-length \(sequenceLength) must exceed 1") }
        if let numSamples, numSamples < 1 { throw TokenizerError("GPTDataset: \(numSamples) samples requested; expected at least 1") }
        guard !documents.isEmpty, documents.upperBound <= dataset.sequenceCount else {
            throw TokenizerError("GPTDataset: documents \(documents) outside the dataset's \(dataset.sequenceCount)")
        }
        self.dataset = dataset
        self.sequenceLength = sequenceLength
        let sizes = dataset.sequenceLengths
        let tokensPerEpoch = documents.reduce(0) { $0 + Int(sizes[$1]) }
        guard tokensPerEpoch > 1 else { throw TokenizerError("GPTDataset: the split's documents hold \(tokensPerEpoch) token(s)") }
        var epochs = 1, tokens = tokensPerEpoch
        while let numSamples, tokens < numSamples * sequenceLength + 1 {
            epochs += 1
            tokens += tokensPerEpoch
        }
        self.epochs = epochs
        let samplesBeforeFinalEpoch = ((epochs - 1) * tokensPerEpoch - 1) / sequenceLength
        var separate = false
        if let numSamples, epochs > 1 {
            let fromFinalEpoch = numSamples - samplesBeforeFinalEpoch
            let perEpoch = (tokensPerEpoch - 1) / sequenceLength
            separate = fromFinalEpoch < Int(0.80 * Double(perEpoch))
        }
        separateFinalEpoch = separate

        let description = """
            GPTDataset indices
            dataset: \(dataset.identity)
            documents: \(documents.lowerBound) ..< \(documents.upperBound)
            samples requested: \(numSamples.map(String.init) ?? "one epoch")
            sequence length: \(sequenceLength) (+ 1 extra token)
            random seed: \(seed)
            epochs: \(epochs), final epoch separate: \(separate)

            """
        let cache = cacheDirectory.map { IndexCache(directory: $0, description: description) }
        if let cached = cache?.load() {
            (documentIndex, sampleIndex, shuffleIndex) = cached
            return
        }
        (documentIndex, sampleIndex, shuffleIndex) = Self.buildIndices(sizes: sizes, documents: documents, epochs: epochs,
                                                                       separate: separate, sequenceLength: sequenceLength, seed: seed)
        try cache?.save(documentIndex: documentIndex, sampleIndex: sampleIndex, shuffleIndex: shuffleIndex)
    }

    /// Megatron's three indices (see the type's description).
    private static func buildIndices(sizes: [Int32], documents: Range<Int>, epochs: Int, separate: Bool, sequenceLength: Int,
                                     seed: UInt32) -> (documentIndex: [Int32], sampleIndex: [Int32], shuffleIndex: [Int]) {
        let tokensPerEpoch = documents.reduce(0) { $0 + Int(sizes[$1]) }
        let samplesBeforeFinalEpoch = ((epochs - 1) * tokensPerEpoch - 1) / sequenceLength
        var random = NumPyRandomState(seed: seed)
        func shuffledDocuments(epochs: Int) -> [Int32] {
            var index = [Int32]()
            index.reserveCapacity(epochs * documents.count)
            for _ in 0 ..< epochs { index += documents.map { Int32($0) } }
            random.shuffle(&index)
            return index
        }
        let documentIndex = separate ? shuffledDocuments(epochs: epochs - 1) + shuffledDocuments(epochs: 1)
                                     : shuffledDocuments(epochs: epochs)

        let sampleCount = (epochs * tokensPerEpoch - 1) / sequenceLength
        var sampleIndex = [Int32](repeating: 0, count: 2 * (sampleCount + 1))
        var position = 0, offset = 0
        for i in 1 ... sampleCount {
            var remaining = sequenceLength + 1
            while remaining != 0 {
                let length = Int(sizes[Int(documentIndex[position])]) - offset
                remaining -= length
                if remaining <= 0 {
                    offset += remaining + length - 1
                    remaining = 0
                } else if position == documentIndex.count - 1 {
                    offset = Int(sizes[Int(documentIndex[position])]) - 1
                    break
                } else {
                    position += 1
                    offset = 0
                }
            }
            sampleIndex[2 * i] = Int32(position)
            sampleIndex[2 * i + 1] = Int32(offset)
        }

        func shuffledRange(_ range: Range<Int>) -> [Int] {
            var values = Array(range)
            random.shuffle(&values)
            return values
        }
        let shuffleIndex = separate ? shuffledRange(0 ..< samplesBeforeFinalEpoch) + shuffledRange(samplesBeforeFinalEpoch ..< sampleCount)
                                    : shuffledRange(0 ..< sampleCount)
        return (documentIndex, sampleIndex, shuffleIndex)
    }

    /// Sample `i` (in shuffled order): sequence-length + 1 tokens.
    public func sample(_ i: Int) -> [Int32] {
        let j = shuffleIndex[i]
        let begin = Int(sampleIndex[2 * j]), beginOffset = Int(sampleIndex[2 * j + 1])
        let end = Int(sampleIndex[2 * j + 2]), endOffset = Int(sampleIndex[2 * j + 3])
        var out: [Int32] = []
        out.reserveCapacity(sequenceLength + 1)
        for p in begin ... end {
            let document = Int(documentIndex[p])
            let stop = p == end ? endOffset + 1 : Int(dataset.sequenceLengths[document])
            out += dataset.sequence(document, tokens: (p == begin ? beginOffset : 0) ..< stop)
        }
        return out
    }

    /// Megatron's --split: the ranges of `count` documents for train, validation and test, from
    /// weights such as "969,30,1" (normalised; book-ends rounded half to even, as Python's round).
    /// A split with zero weight is nil.
    public static func splitRanges(_ split: String, count: Int) throws -> [Range<Int>?] {
        let parts = split.split(whereSeparator: { $0 == "," || $0 == "/" || $0 == " " }).map(String.init)
        let weights = try parts.map { part -> Double in
            guard let w = Double(part), w >= 0, w.isFinite else { throw TokenizerError("--split \(split): \(part) is not a weight ≥ 0") }
            return w
        }
        guard (1 ... 3).contains(weights.count), weights.reduce(0, +) > 0 else {
            throw TokenizerError("--split \(split): expected one to three weights (train, validation, test), not all zero")
        }
        let padded = weights + Array(repeating: 0, count: 3 - weights.count)
        let total = padded.reduce(0, +)
        var ends = [0.0]
        for w in padded { ends.append(ends.last! + w / total) }
        return (0 ..< 3).map { s in
            guard ends[s + 1] > ends[s] else { return nil }
            let bound = { (x: Double) in Int((x * Double(count)).rounded(.toNearestOrEven)) }
            return bound(ends[s]) ..< bound(ends[s + 1])
        }
    }
}
