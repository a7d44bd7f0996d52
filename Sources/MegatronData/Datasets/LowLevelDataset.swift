/// What GPTDataset reads documents from (Megatron's "low-level dataset"): an IndexedDataset on
/// disk, or the mock documents of --mock-data.
public protocol LowLevelDataset: Sendable {
    /// Tokens per sequence; GPTDataset's documents are these sequences.
    var sequenceLengths: [Int32] { get }
    /// Tokens `range` of sequence `index` (Megatron's `get(idx, offset, length)`): a sample reads only
    /// the part of each document it spans.
    func sequence(_ index: Int, tokens range: Range<Int>) -> [Int32]
    /// Names the data for GPTDataset's log and index cache: a path and its size, or the mock's parameters.
    var identity: String { get }
}

extension LowLevelDataset {
    public var sequenceCount: Int { sequenceLengths.count }

    /// The token ids of sequence `index`.
    public func sequence(_ index: Int) -> [Int32] { sequence(index, tokens: 0 ..< Int(sequenceLengths[index])) }
}

extension IndexedDataset: LowLevelDataset {
    public var identity: String {
        "\(prefix) (\(sequenceCount) sequences, \(sequenceLengths.reduce(0) { $0 + Int($1) }) tokens)"
    }
}
