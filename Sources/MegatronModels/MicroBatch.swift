import MegatronCore

/// One micro-batch of `batch` sequences of `sequenceLength` tokens, rows batch-major: the inputs,
/// the next-token labels, the loss mask (1 where the token counts) and each token's position.
public struct MicroBatch: Sendable {
    public let tokens: Tensor
    public let labels: Tensor
    public let lossMask: Tensor
    public let positions: Tensor
    public let batch: Int
    public let sequenceLength: Int

    /// From `batch` samples of sequenceLength + 1 tokens each: inputs are tokens 0 ..< s, labels 1 ... s,
    /// positions 0 ..< s, every token counted.
    public init(samples: [[Int32]], on device: CPUDevice) throws {
        guard let first = samples.first, first.count >= 2, samples.allSatisfy({ $0.count == first.count }) else {
            throw TensorError("micro-batch: samples must share one length of at least 2 tokens")
        }
        let s = first.count - 1
        batch = samples.count
        sequenceLength = s
        tokens = try Tensor(int32s: samples.flatMap { $0.dropLast() }, shape: [batch * s], on: device)
        labels = try Tensor(int32s: samples.flatMap { $0.dropFirst() }, shape: [batch * s], on: device)
        lossMask = try Tensor([Float](repeating: 1, count: batch * s), shape: [batch * s], on: device)
        positions = try Tensor(int32s: (0 ..< batch).flatMap { _ in (0 ..< s).map(Int32.init) }, shape: [batch * s], on: device)
    }
}
