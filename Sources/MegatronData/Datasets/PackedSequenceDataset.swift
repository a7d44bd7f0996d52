/// Training samples cut in order from an indexed dataset: all its sequences concatenated, sample i
/// being tokens [i·s, i·s + s] (s + 1 tokens, overlapping the next sample by one), wrapping around
/// after the last full sample. No shuffling and no train/valid/test split: Megatron's GPTDataset
/// (document, sample and shuffle indices) replaces this with the data pipeline's issue.
public struct PackedSequenceDataset: Sendable {
    public let dataset: IndexedDataset
    public let sequenceLength: Int
    /// Index of each sequence's first token in the concatenation.
    let starts: [Int]
    public let tokenCount: Int

    public init(_ dataset: IndexedDataset, sequenceLength: Int) throws {
        self.dataset = dataset
        self.sequenceLength = sequenceLength
        var starts: [Int] = [], total = 0
        for length in dataset.sequenceLengths {
            starts.append(total)
            total += Int(length)
        }
        self.starts = starts
        tokenCount = total
        guard total > sequenceLength else {
            throw TokenizerError("dataset has \(total) tokens, fewer than one sample of \(sequenceLength + 1)")
        }
    }

    /// Full samples before wrapping around.
    public var sampleCount: Int { (tokenCount - 1) / sequenceLength }

    public func sample(_ index: Int) -> [Int32] {
        var position = (index % sampleCount) * sequenceLength
        var out: [Int32] = []
        out.reserveCapacity(sequenceLength + 1)
        // The sequence holding `position`: the last start not after it.
        var s = starts.partitioningIndex { $0 > position } - 1
        while out.count < sequenceLength + 1 {
            let tokens = dataset.sequence(s)
            let offset = position - starts[s]
            let take = min(tokens.count - offset, sequenceLength + 1 - out.count)
            out += tokens[offset ..< offset + take]
            position += take
            s += 1
        }
        return out
    }
}

extension Array {
    /// The first index whose element satisfies `predicate`, which must be false then true along the array.
    func partitioningIndex(where predicate: (Element) -> Bool) -> Int {
        var low = 0, high = count
        while low < high {
            let mid = (low + high) / 2
            if predicate(self[mid]) { high = mid } else { low = mid + 1 }
        }
        return low
    }
}
