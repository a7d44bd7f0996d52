import Dispatch
import MegatronCore
import MegatronModels
import MegatronParallel

/// Data parallelism over a model's flat gradient buffer, as Megatron's DistributedDataParallel:
/// the buffer is cut at parameter boundaries into buckets of at least `bucketSize` elements, in
/// reverse parameter order (the order backward finishes them). Each bucket's gradients are scaled
/// by 1/dp and summed over the data-parallel group, so every rank ends with the average gradient;
/// under the distributed optimizer they are reduce-scattered instead, each rank keeping its chunk of
/// every bucket, and the updated parameters are all-gathered back.
///
/// With `overlapGradReduce`, a bucket's reduction starts on a communication thread as soon as
/// backward reports all of its gradients final (`gradientsReady`), while the rest of backward runs.
/// `finalizeModelGradients` then completes every gradient of the iteration. With
/// `overlapParamGather` the parameters' all-gathers after the optimizer step run on that thread too,
/// in the order the next forward reads the buckets, and the forward waits for each bucket only
/// when it reaches it (`parametersNeeded`, Megatron's forward pre-hook).
///
/// Under 16-bit storage the parameters are all-gathered as their 16-bit words; 16-bit gradients
/// (--fp16's default, --grad-reduce-in-bf16, --main-grads-dtype bf16) are summed in fp32, a block at
/// a time (`reduceSixteenBit`).
///
/// Under context parallelism the ranks that split the same sequences hold the same parameters and
/// their gradients are parts of one sum: as in Megatron, the group is the data-parallel ranks with
/// their context-parallel peers (dp·cp of them), and the model weights its loss by cp.
public final class DistributedDataParallel: @unchecked Sendable {
    public struct Settings: Sendable {
        /// Elements per bucket (--ddp-bucket-size); nil: Megatron's default, max(40M, 1M·dp) when
        /// overlapping and one bucket for the whole buffer otherwise.
        public var bucketSize: Int?
        /// --overlap-grad-reduce
        public var overlapGradReduce = false
        /// --use-distributed-optimizer
        public var useDistributedOptimizer = false
        /// --overlap-param-gather (with the distributed optimizer and --overlap-grad-reduce)
        public var overlapParamGather = false

        public init() {}
    }

    public let settings: Settings
    /// The ranks that reduce (and under the distributed optimizer shard) the gradients: the
    /// data-parallel group, with the context-parallel ranks when there are several.
    public let dataParallelWithContext: any Communicator
    /// Spans of the flat buffer, bucket 0 at its end.
    public let buckets: [Range<Int>]
    let model: any MegatronModule
    private let thread: BackgroundThread?
    /// Per bucket: gradient elements that backward has not yet finished; and whether its reduction
    /// has been started this iteration.
    private var unfinished: [Int] = []
    private var started: [Bool] = []
    /// Seconds the training thread spent waiting for reductions in the last `finishGradSync`.
    public private(set) var lastWaitSeconds = 0.0
    /// Seconds the reductions themselves took in the last iteration.
    public private(set) var lastCommunicationSeconds = 0.0
    /// Per bucket under `overlapParamGather`: the communication thread's ticket of its all-gather
    /// in flight, nil once the training thread has waited for it.
    private var gatherTickets: [Int?]
    /// The all-gather of the parameters that the current iteration's forward reads: seconds it
    /// took, and seconds the training thread waited for it (all of it without overlap).
    public private(set) var paramGatherSeconds = 0.0, paramGatherWaitSeconds = 0.0

    /// Data parallelism over the model's data-parallel group with its context-parallel peers.
    public init(model: any MegatronModule, settings: Settings = .init()) throws {
        self.model = model
        let dataParallelWithContext = model.groups.dataParallelWithContext
        self.dataParallelWithContext = dataParallelWithContext
        self.settings = settings
        if let size = settings.bucketSize, size < 1 { throw ConfigError(flag: "--ddp-bucket-size", "--ddp-bucket-size \(size): expected at least 1") }
        if settings.overlapParamGather && !(settings.useDistributedOptimizer && settings.overlapGradReduce) {
            throw ConfigError(flag: "--overlap-param-gather",
                              "--overlap-param-gather needs --use-distributed-optimizer and --overlap-grad-reduce (as in Megatron)")
        }
        let bucketSize = settings.overlapGradReduce ? settings.bucketSize ?? max(40_000_000, 1_000_000 * dataParallelWithContext.size) : nil
        var buckets: [Range<Int>] = []
        var end = model.layout.totalCount
        // The word embedding shared by the first and last pipeline stages is a bucket of its own on
        // both (Megatron's distributed optimizer does the same): the two stages then reduce identical
        // buffers and shard them alike, so the two copies get the same bits.
        let shared = model.sharedEmbeddingRange
        for entry in model.layout.entries.reversed() {
            if let shared, entry.offset == shared.lowerBound {
                if end > shared.upperBound { buckets.append(shared.upperBound ..< end) }
                buckets.append(shared)
                end = shared.lowerBound
                continue
            }
            if let bucketSize, end - entry.offset >= bucketSize {
                buckets.append(entry.offset ..< end)
                end = entry.offset
            }
        }
        if end > 0 { buckets.append(0 ..< end) }
        self.buckets = buckets
        gatherTickets = Array(repeating: nil, count: buckets.count)
        thread = settings.overlapGradReduce && dataParallelWithContext.size > 1 ? BackgroundThread(name: "grad-reduce") : nil
    }

    deinit { thread?.stop() }

    /// The spans whose optimizer state this rank keeps: its chunk of every bucket under the
    /// distributed optimizer, else the whole buffer.
    public var ownedRanges: [Range<Int>] { ownedRanges(ofRank: dataParallelWithContext.rank) }

    /// The spans data-parallel rank `rank` owns.
    public func ownedRanges(ofRank rank: Int) -> [Range<Int>] {
        guard settings.useDistributedOptimizer else { return [0 ..< model.layout.totalCount] }
        return buckets.reversed().map { bucket in
            let chunk = dataParallelWithContext.chunk(rank: rank, count: bucket.count)
            return bucket.lowerBound + chunk.lowerBound ..< bucket.lowerBound + chunk.upperBound
        }.filter { !$0.isEmpty }
    }

    /// Call before the backward whose gradients complete the iteration (the last micro-batch's).
    public func startGradSync() {
        unfinished = buckets.map(\.count)
        started = Array(repeating: false, count: buckets.count)
        lastCommunicationSeconds = 0
    }

    /// Backward finished adding into `range`: start every bucket this completes, when overlapping.
    /// The word embedding shared by the first and last pipeline stages waits for
    /// `finalizeModelGradients`, which first adds the two stages' gradients.
    public func gradientsReady(_ range: Range<Int>) throws {
        for part in range.removing(model.sharedEmbeddingRange) { try markReady(part) }
    }

    /// Completes the iteration's gradients after the last micro-batch's backward, as Megatron's
    /// finalize_model_grads: the tied word embedding's two copies summed over the first and last
    /// pipeline stages, the data-parallel reduction finished (waiting for the buckets in flight),
    /// and under sequence parallelism the gradients of the row-wise parameters summed over the
    /// tensor-parallel group.
    public func finalizeModelGradients() throws {
        try model.reduceSharedEmbeddingGradients()
        if let shared = model.sharedEmbeddingRange { try markReady(shared) }
        try finishGradSync()
        try model.reduceSequenceParallelGradients()
    }

    private func markReady(_ range: Range<Int>) throws {
        guard thread != nil else { return }
        for (b, bucket) in buckets.enumerated() where bucket.overlaps(range) {
            unfinished[b] -= bucket.clamped(to: range).count
            if unfinished[b] == 0 { launch(b) }
        }
    }

    /// Reduces every bucket not yet started and waits until all reductions are done.
    func finishGradSync() throws {
        guard dataParallelWithContext.size > 1 else { return }
        let start = Self.now()
        if let thread {
            for b in buckets.indices where !started[b] { launch(b) }
            try thread.waitUntilIdle()
        } else {
            for b in buckets.indices { try reduce(b) }
        }
        lastWaitSeconds = Self.now() - start
    }

    /// Under the distributed optimizer, after the optimizer step: all-gathers every bucket's
    /// parameters from their owners. With `overlapParamGather` this only queues the all-gathers on
    /// the communication thread, first bucket first: the next forward's `parametersNeeded` waits for
    /// each, and `finishParamGather` for all of them.
    public func gatherParameters() throws {
        guard settings.useDistributedOptimizer, dataParallelWithContext.size > 1 else { return }
        try finishParamGather()
        paramGatherSeconds = 0
        paramGatherWaitSeconds = 0
        if let thread, settings.overlapParamGather {
            for b in buckets.indices.reversed() { gatherTickets[b] = thread.submit { [self] in try allGather(b) } }
        } else {
            let start = Self.now()
            for b in buckets.indices { try allGather(b) }
            paramGatherWaitSeconds = Self.now() - start
        }
    }

    /// The forward is about to read `range` of the parameters: waits for the all-gathers in flight
    /// of the buckets it overlaps.
    public func parametersNeeded(_ range: Range<Int>) throws {
        for (b, bucket) in buckets.enumerated() where bucket.overlaps(range) { try waitForGather(b) }
    }

    /// Waits for every parameter all-gather in flight: before anything but the forward reads the
    /// parameters (evaluation, a checkpoint, a norm, the end of training).
    public func finishParamGather() throws {
        for b in buckets.indices { try waitForGather(b) }
    }

    private func waitForGather(_ b: Int) throws {
        guard let ticket = gatherTickets[b] else { return }
        let start = Self.now()
        gatherTickets[b] = nil
        try thread!.wait(for: ticket)
        paramGatherWaitSeconds += Self.now() - start
    }

    /// All-gathers bucket `b`'s parameters.
    private func allGather(_ b: Int) throws {
        let start = Self.now()
        let bucket = buckets[b], parameters = model.parameters
        if parameters.dtype == .float32 {
            try dataParallelWithContext.allGather(UnsafeMutableBufferPointer(start: parameters.floats + bucket.lowerBound, count: bucket.count))
        } else {
            try dataParallelWithContext.allGather(UnsafeMutableBufferPointer(start: parameters.halfBits + bucket.lowerBound, count: bucket.count))
        }
        paramGatherSeconds += Self.now() - start
    }

    private static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    private func launch(_ b: Int) {
        started[b] = true
        thread!.submit { [self] in try reduce(b) }
    }

    /// Scales bucket `b`'s gradients by 1/dp and sums them over the data-parallel group.
    private func reduce(_ b: Int) throws {
        let start = Self.now()
        let bucket = buckets[b]
        let gradients = try model.gradients.view(offset: bucket.lowerBound, shape: [bucket.count])
        if gradients.dtype != .float32 {
            try reduceSixteenBit(gradients)
        } else {
            try Elementwise.scale(gradients, by: 1 / Float(dataParallelWithContext.size), on: model.device)
            let values = UnsafeMutableBufferPointer(start: gradients.floats, count: bucket.count)
            if settings.useDistributedOptimizer {
                try dataParallelWithContext.reduceScatter(values, op: .sum)
            } else {
                try dataParallelWithContext.allReduce(values, op: .sum)
            }
        }
        lastCommunicationSeconds += Self.now() - start
    }

    /// 16-bit gradients averaged over the group: each block of `Tensor.fp32BlockElements` widened to
    /// fp32, scaled by 1/dp, all-reduced, and rounded back once (Megatron reduces in bf16 itself,
    /// rounding at every step of the ring; fp32 sums round once). All-reduced under the distributed
    /// optimizer too, each rank then reading its chunk: twice a reduce-scatter's traffic, for fp32
    /// scratch of one block instead of a bucket.
    private func reduceSixteenBit(_ gradients: Tensor) throws {
        let device = model.device
        let scratch = try Tensor(shape: [min(gradients.count, Tensor.fp32BlockElements)], on: device, zeroed: false)
        try gradients.forEachFP32Block(scratch: scratch, writeBack: true, on: device) { _, values in
            try Elementwise.scale(values, by: 1 / Float(dataParallelWithContext.size), on: device)
            try dataParallelWithContext.allReduce(UnsafeMutableBufferPointer(start: values.floats, count: values.count), op: .sum)
        }
    }
}

extension Range where Bound == Int {
    /// The parts of this range outside `other` (none, one or two ranges).
    func removing(_ other: Range<Int>?) -> [Range<Int>] {
        guard let other, overlaps(other) else { return isEmpty ? [] : [self] }
        return [lowerBound ..< Swift.max(lowerBound, other.lowerBound), Swift.min(upperBound, other.upperBound) ..< upperBound]
            .filter { !$0.isEmpty }
    }
}
