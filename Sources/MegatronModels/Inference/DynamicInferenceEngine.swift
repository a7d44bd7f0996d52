import Foundation
import MegatronCore

/// Generation for many requests at once with continuous batching (Megatron-core's
/// DynamicInferenceEngine): requests join and leave the running batch at token boundaries, each
/// step one forward pass over every running request's new tokens (a whole prompt when it joins, its
/// last token after), their keys and values in blocks of a shared `PagedKeyValueCache`.
///
/// A request is admitted, in arrival order, when the batch has room (`maxRequests`), the step's
/// token budget has room for its prompt (`maxTokensPerStep`; the first waiting prompt always fits),
/// and the pool can hold all the positions it may reach on top of what the running requests may
/// reach; otherwise it waits, and is never dropped. So no running request ever lacks a block.
/// Blocks are taken as positions fill and returned when a request finishes or is cancelled.
///
/// Each request draws its tokens from its own seeded stream, and its prompt is prefilled in one
/// pass whatever else runs, so its tokens do not depend on the batch it shares.
///
/// `add` and `cancel` are safe from any thread; `step`, `run` and `generate` run on one thread at
/// a time. Events are delivered on the stepping thread.
public final class DynamicInferenceEngine: @unchecked Sendable {
    public let model: GPTModel
    public let cache: PagedKeyValueCache
    /// Tokens the tokenizer has (the output layer's padding beyond is never drawn).
    public let vocabularySize: Int
    public let maxRequests: Int
    public let maxTokensPerStep: Int
    /// The model's context: prompt and generated tokens together.
    public var maxSequenceLength: Int { model.config.maxPositionEmbeddings }

    private final class Active {
        let id: Int
        let request: InferenceRequest
        let onEvent: @Sendable (InferenceEvent) -> Void
        let blocksNeeded: Int
        var tokens: [Int32]
        var blocks: [Int32] = []
        var admitted = false
        var cachedLength = 0
        var generated = 0
        var draws: GaussianStream
        /// Top-p now (it decays per token when asked to).
        var topP: Float

        init(id: Int, request: InferenceRequest, blocksNeeded: Int, onEvent: @escaping @Sendable (InferenceEvent) -> Void) {
            self.id = id
            self.request = request
            self.onEvent = onEvent
            self.blocksNeeded = blocksNeeded
            tokens = request.prompt
            draws = GaussianStream(seed: request.sampling.seed, stream: 0)
            topP = request.sampling.topP
        }
    }

    private let lock = NSCondition()
    // Guarded by `lock`.
    private var waiting: [Active] = []
    private var cancellations: Set<Int> = []
    private var nextID = 0
    private var draining = false
    private var activeCount = 0
    private var freeBlocks: Int
    private var generatedTokens = 0
    // The stepping thread's own.
    private var running: [Active] = []
    private var committedBlocks = 0

    public init(model: GPTModel, cache: PagedKeyValueCache, vocabularySize: Int, maxRequests: Int = 64,
                maxTokensPerStep: Int = 2048) throws {
        guard maxRequests >= 1 else { throw ConfigError(flag: "--inference-max-requests", "\(maxRequests): expected at least 1") }
        guard maxTokensPerStep >= 1 else {
            throw ConfigError(flag: "--inference-max-tokens-per-step", "\(maxTokensPerStep): expected at least 1")
        }
        guard (1 ... model.config.paddedVocabSize).contains(vocabularySize) else {
            throw ConfigError(flag: "--vocab-size", "the tokenizer's \(vocabularySize) tokens exceed the model's vocabulary of \(model.config.paddedVocabSize)")
        }
        self.model = model
        self.cache = cache
        self.vocabularySize = vocabularySize
        self.maxRequests = maxRequests
        self.maxTokensPerStep = maxTokensPerStep
        freeBlocks = cache.freeBlockCount
    }

    /// An engine with a cache for `positions` positions in blocks of 16 (enough for one sequence of
    /// that length, or several shorter ones).
    public static func single(model: GPTModel, vocabularySize: Int, positions: Int) throws -> DynamicInferenceEngine {
        let blockSize = 16
        return try DynamicInferenceEngine(model: model, cache: PagedKeyValueCache(for: model, blockSize: blockSize,
                                                                                  blockCount: max(1, (positions + blockSize - 1) / blockSize)),
                                          vocabularySize: vocabularySize)
    }

    /// Requests added and not yet finished.
    public var pendingRequests: Int { lock.withLock { activeCount } }

    /// Requests added and not yet finished, the cache blocks no request holds (as of the last step)
    /// and the tokens generated since the start, for a health check from any thread.
    public var status: (pendingRequests: Int, freeBlocks: Int, generatedTokens: Int) {
        lock.withLock { (activeCount, freeBlocks, generatedTokens) }
    }

    /// Queues `request`; its events go to `onEvent`. Returns its id (for `cancel`). Throws
    /// `InferenceRequestError` for a request no step could run.
    @discardableResult
    public func add(_ request: InferenceRequest, onEvent: @escaping @Sendable (InferenceEvent) -> Void) throws -> Int {
        let p = request.prompt, n = request.sampling.numTokensToGenerate
        if let problem = request.sampling.problem { throw InferenceRequestError(problem) }
        guard !p.isEmpty else { throw InferenceRequestError("the prompt is empty") }
        if let bad = p.first(where: { !(0 ..< Int32(vocabularySize)).contains($0) }) {
            throw InferenceRequestError("prompt token \(bad) is outside the vocabulary 0 ..< \(vocabularySize)")
        }
        guard p.count + n <= maxSequenceLength else {
            throw InferenceRequestError("the prompt's \(p.count) tokens and \(n) tokens to generate exceed the model's context of \(maxSequenceLength) tokens")
        }
        // Positions written to the cache: every token but the last generated one.
        let blocksNeeded = cache.blocks(for: max(p.count, p.count + n - 1))
        guard blocksNeeded <= cache.blockCount else {
            throw InferenceRequestError("the request needs \(blocksNeeded) key/value blocks; the cache holds \(cache.blockCount)")
        }
        return try lock.withLock {
            guard !draining else { throw InferenceRequestError("the server is shutting down") }
            defer { nextID += 1 }
            waiting.append(Active(id: nextID, request: request, blocksNeeded: blocksNeeded, onEvent: onEvent))
            activeCount += 1
            lock.signal()
            return nextID
        }
    }

    /// Ends request `id` at the next token boundary (its blocks return to the pool); nothing if it has finished.
    public func cancel(_ id: Int) {
        lock.withLock {
            cancellations.insert(id)
            lock.signal()
        }
    }

    /// Steps until every request has finished, sleeping while there is none; returns after `drain()`
    /// once the last has finished.
    public func run() {
        while true {
            let done: Bool = lock.withLock {
                while waiting.isEmpty, cancellations.isEmpty, running.isEmpty, !draining { lock.wait() }
                return draining && waiting.isEmpty && running.isEmpty
            }
            if done { return }
            step()
        }
    }

    /// Refuses new requests from now on; `run` returns when those already added have finished.
    public func drain() {
        lock.withLock {
            draining = true
            lock.signal()
        }
    }

    /// The results of `requests`, run together on this thread (the engine must not be running).
    public func generate(_ requests: [InferenceRequest]) throws -> [InferenceResult] {
        final class Results: @unchecked Sendable { var values: [InferenceResult] = [] }
        let results = Results()
        results.values = requests.map { InferenceResult(prompt: $0.prompt) }
        for (i, request) in requests.enumerated() { try add(request) { results.values[i].record($0) } }
        while step() {}
        for result in results.values { if case .failed(let message)? = result.finishReason { throw TensorError(message) } }
        return results.values
    }

    /// One pass: admits waiting requests, ends cancelled ones, runs every running request's new
    /// tokens through the model and draws each one's next token. Returns false when there was nothing to run.
    @discardableResult
    public func step() -> Bool {
        admitAndCancel()
        guard !running.isEmpty else { return false }
        var step = InferenceStep(sequences: [])
        for active in running {
            let prefill = active.cachedLength == 0
            let tokens = prefill ? active.request.prompt : [active.tokens.last!]
            while active.blocks.count < cache.blocks(for: active.cachedLength + tokens.count) {
                active.blocks.append(cache.allocate()!)  // admission reserved it
            }
            lock.withLock { freeBlocks = cache.freeBlockCount }
            step.sequences.append(.init(blocks: active.blocks, cachedLength: active.cachedLength, tokens: tokens,
                                        allLogits: prefill && active.request.sampling.returnLogProbs))
        }
        let logits: Tensor
        do {
            logits = try model.logits(step, cache: cache)
        } catch {
            for active in running { finish(active, .failed("the model's pass failed: \(error)")) }
            running.removeAll()
            return true
        }
        var row = 0, finished: Set<ObjectIdentifier> = []
        for (active, sequence) in zip(running, step.sequences) {
            if advance(active, sequence: sequence, logits: logits, firstRow: row) { finished.insert(ObjectIdentifier(active)) }
            row += sequence.logitRows
        }
        running.removeAll { finished.contains(ObjectIdentifier($0)) }
        return true
    }

    /// Records the pass over `active`'s new tokens and draws its next; true when it has finished.
    private func advance(_ active: Active, sequence: InferenceStep.Sequence, logits: Tensor, firstRow: Int) -> Bool {
        let sampling = active.request.sampling, width = min(vocabularySize, logits.columns)
        func row(_ r: Int) -> UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: logits.floats + (firstRow + r) * logits.columns, count: width) }
        if sequence.allLogits {
            let prompt = active.request.prompt
            active.onEvent(.promptLogProbs((0 ..< prompt.count - 1).map { LogSoftmax(row($0))[Int(prompt[$0 + 1])] }))
        }
        active.cachedLength += sequence.tokens.count
        guard active.generated < sampling.numTokensToGenerate else {
            finish(active, .length)
            return true
        }
        let last = row(sequence.logitRows - 1)
        for ban in sampling.bans where ban.after == active.tokens.last! && Int(ban.token) < width {
            logits.floats[(firstRow + sequence.logitRows - 1) * logits.columns + Int(ban.token)] = -1e10
        }
        var now = sampling
        now.topP = active.topP
        let token = now.pick(from: last, uniform: active.draws.uniform())
        if sampling.topPDecay > 0 { active.topP = max(active.topP * sampling.topPDecay, sampling.topPBound) }
        let distribution: LogSoftmax? = sampling.returnLogProbs || sampling.topLogProbs > 0 ? LogSoftmax(last) : nil
        let logProb: Float? = sampling.returnLogProbs ? distribution?[token] : nil
        active.tokens.append(Int32(token))
        active.generated += 1
        lock.withLock { generatedTokens += 1 }
        active.onEvent(.token(Int32(token), logProb: logProb, top: distribution?.top(sampling.topLogProbs) ?? []))
        if sampling.stops(active.tokens) {
            finish(active, .stop)
        } else if active.generated == sampling.numTokensToGenerate {
            finish(active, .length)
        } else {
            return false
        }
        return true
    }

    /// Admits what fits from the queue, in order, and ends the cancelled requests.
    private func admitAndCancel() {
        var cancelled: [Active] = []
        lock.withLock {
            if !cancellations.isEmpty {
                cancelled = waiting.filter { cancellations.contains($0.id) } + running.filter { cancellations.contains($0.id) }
                waiting.removeAll { cancellations.contains($0.id) }
                running.removeAll { cancellations.contains($0.id) }
                cancellations.removeAll()
            }
            var budget = maxTokensPerStep - running.count, admittedPrompt = false
            while let next = waiting.first, running.count < maxRequests {
                let fits = committedBlocks + next.blocksNeeded <= cache.blockCount
                guard fits, next.request.prompt.count <= budget || !admittedPrompt else { break }
                waiting.removeFirst()
                running.append(next)
                next.admitted = true
                committedBlocks += next.blocksNeeded
                budget -= next.request.prompt.count
                admittedPrompt = true
            }
        }
        for active in cancelled { finish(active, .cancelled) }
    }

    /// Returns `active`'s blocks and reports its end.
    private func finish(_ active: Active, _ reason: FinishReason) {
        cache.release(active.blocks)
        active.blocks = []
        if active.admitted { committedBlocks -= active.blocksNeeded }
        lock.withLock {
            activeCount -= 1
            freeBlocks = cache.freeBlockCount
        }
        active.onEvent(.finished(reason))
    }
}
