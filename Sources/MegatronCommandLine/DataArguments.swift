import ArgumentParser

/// Megatron's data and evaluation flags of pretrain_gpt.py: where the samples come from, how the
/// documents split into training, validation and test, and how often the validation split is
/// evaluated.
public struct DataArguments: ParsableArguments, Sendable {
    public init() {}

    @Flag(name: .customLong("mock-data"), help: "Train on synthetic documents (Megatron's --mock-data).")
    public var mockData = false
    @Option(name: .customLong("data-path"), parsing: .upToNextOption,
            help: "A Megatron dataset prefix (PREFIX.bin/.idx), or a blend: weight prefix weight prefix …; sampled in Megatron's GPTDataset / BlendedDataset order.")
    public var dataPath: [String] = []
    @Option(name: .customLong("split"),
            help: "Train, validation and test weights over the dataset's documents; training reads the first split.")
    public var split = "969,30,1"
    @Option(name: .customLong("data-cache-path"),
            help: "Keep GPTDataset's document, sample and shuffle indices here (.npy) and reuse them in later runs.")
    public var dataCachePath: String?
    @Option(name: .customLong("eval-iters"), help: "Global batches per evaluation on the validation (and test) split; 0: none.")
    public var evalIters = 100
    @Option(name: .customLong("eval-interval"),
            help: "Evaluate on the validation split every this many iterations (default: only at the end; Megatron's older default was 1000).")
    public var evalInterval: Int?
    @Flag(name: .customLong("eod-mask-loss"), help: "No loss on end-of-document input tokens.") public var eodMaskLoss = false
    @Flag(name: .customLong("reset-position-ids"), help: "Positions restart at 0 after each end-of-document token.")
    public var resetPositionIDs = false
    @Flag(name: .customLong("reset-attention-mask"), help: "Tokens attend only within their document (after the last end-of-document token).")
    public var resetAttentionMask = false
}
