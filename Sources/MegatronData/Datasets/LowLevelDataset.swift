/// What GPTDataset reads documents from (Megatron's "low-level dataset"): an IndexedDataset on
/// disk, or the mock documents of --mock-data.
public protocol LowLevelDataset: Sendable {
    /// Tokens per sequence; GPTDataset's documents are these sequences.
    var sequenceLengths: [Int32] { get }
    /// The token ids of sequence `index`.
    func sequence(_ index: Int) -> [Int32]
    /// Names the data for GPTDataset's log and index cache: a path and its size, or the mock's parameters.
    var identity: String { get }
}

extension LowLevelDataset {
    public var sequenceCount: Int { sequenceLengths.count }
}

extension IndexedDataset: LowLevelDataset {
    public var identity: String {
        "\(prefix) (\(sequenceCount) sequences, \(sequenceLengths.reduce(0) { $0 + Int($1) }) tokens)"
    }
}
