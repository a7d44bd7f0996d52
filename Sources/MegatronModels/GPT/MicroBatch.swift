import MegatronCore

/// One micro-batch of `batch` sequences of `sequenceLength` tokens, rows batch-major: the inputs,
/// the next-token labels, the loss mask (1 where the token counts) and each token's position.
public struct MicroBatch: Sendable {
    public let tokens: Tensor
    public let labels: Tensor
    public let lossMask: Tensor
    public let positions: Tensor
    /// Per token, the first key it may attend to when attention stays within documents
    /// (--reset-attention-mask); nil: every earlier token of the sequence.
    public let attentionFirstKeys: Tensor?
    public let batch: Int
    public let sequenceLength: Int

    /// What Megatron does at end-of-document tokens inside a sample (_get_ltor_masks_and_position_ids).
    public struct DocumentBoundaries: Sendable {
        /// The end-of-document token id.
        public var endOfDocument: Int32
        /// --eod-mask-loss: no loss where the input token is end-of-document.
        public var eodMaskLoss = false
        /// --reset-position-ids: positions restart at 0 after each end-of-document token.
        public var resetPositionIDs = false
        /// --reset-attention-mask: tokens after an end-of-document token do not attend to it or before.
        public var resetAttentionMask = false

        public init(endOfDocument: Int32) { self.endOfDocument = endOfDocument }
    }

    /// A micro-batch of these parts (rows batch-major, `batch` × `sequenceLength` of each).
    init(tokens: Tensor, labels: Tensor, lossMask: Tensor, positions: Tensor, attentionFirstKeys: Tensor?, batch: Int,
         sequenceLength: Int) {
        self.tokens = tokens
        self.labels = labels
        self.lossMask = lossMask
        self.positions = positions
        self.attentionFirstKeys = attentionFirstKeys
        self.batch = batch
        self.sequenceLength = sequenceLength
    }

    /// From `batch` samples of sequenceLength + 1 tokens each: inputs are tokens 0 ..< s, labels 1 ... s,
    /// positions 0 ..< s, every token counted, unless `boundaries` masks or restarts at documents' ends.
    public init(samples: [[Int32]], boundaries: DocumentBoundaries? = nil, on device: CPUDevice) throws {
        guard let first = samples.first, first.count >= 2, samples.allSatisfy({ $0.count == first.count }) else {
            throw TensorError("micro-batch: samples must share one length of at least 2 tokens")
        }
        let s = first.count - 1
        batch = samples.count
        sequenceLength = s
        tokens = try Tensor(int32s: samples.flatMap { $0.dropLast() }, shape: [batch * s], on: device)
        labels = try Tensor(int32s: samples.flatMap { $0.dropFirst() }, shape: [batch * s], on: device)
        var mask = [Float](repeating: 1, count: batch * s)
        var position = [Int32](repeating: 0, count: batch * s), firstKey = [Int32](repeating: 0, count: batch * s)
        for (b, sample) in samples.enumerated() {
            var next: Int32 = 0, documentStart: Int32 = 0
            for t in 0 ..< s {
                position[b * s + t] = next
                firstKey[b * s + t] = documentStart
                next += 1
                guard let boundaries, sample[t] == boundaries.endOfDocument else { continue }
                if boundaries.eodMaskLoss { mask[b * s + t] = 0 }
                if boundaries.resetPositionIDs { next = 0 }
                if boundaries.resetAttentionMask { documentStart = Int32(t + 1) }
            }
        }
        lossMask = try Tensor(mask, shape: [batch * s], on: device)
        positions = try Tensor(int32s: position, shape: [batch * s], on: device)
        attentionFirstKeys = boundaries?.resetAttentionMask == true ? try Tensor(int32s: firstKey, shape: [batch * s], on: device) : nil
    }
}
