import Foundation
import MegatronCore
import MegatronModels
import Testing

/// Logits of `tokens` through the paged cache: the first `prefix` tokens in one pass, then one
/// token per pass, every token's row asked for; blocks of `blockSize` taken from the end of the pool
/// so that the sequence's blocks are not in order.
func cachedLogits(_ model: GPTModel, _ tokens: [Int32], prefix: Int, blockSize: Int) throws -> [Float] {
    let cache = try PagedKeyValueCache(for: model, blockSize: blockSize, blockCount: 8)
    var blocks: [Int32] = [], logits: [Float] = [], length = 0
    for chunk in [Array(tokens.prefix(prefix))] + tokens.dropFirst(prefix).map({ [$0] }) {
        while blocks.count * blockSize < length + chunk.count { blocks.append(cache.allocate()!) }
        let step = InferenceStep(sequences: [.init(blocks: blocks, cachedLength: length, tokens: chunk, allLogits: true)])
        logits += try model.logits(step, cache: cache).toFloatArray()
        length += chunk.count
    }
    return logits
}

/// A model with room for longer generations than the tiny one's 8 positions.
private func generationModel(_ variant: Int = 1) throws -> GPTModel {
    var config = GPTModelTests.variants[variant].1
    config.maxPositionEmbeddings = 40
    return try GPTModel(config: config, seed: 7, on: device)
}

private func largestDifference(_ a: [Float], _ b: [Float]) -> Float {
    a.count == b.count ? zip(a, b).map { abs($0 - $1) }.max() ?? 0 : .infinity
}

@Suite struct PagedKeyValueCacheTests {
    /// Incremental inference through the paged cache computes the logits of running the whole
    /// sequence: a prompt of 5 tokens at once, then 3 tokens one at a time, on every architecture variant.
    @Test(arguments: GPTModelTests.variants.map(\.0))
    func cachedLogitsAreTheWholeSequencesLogits(_ name: String) throws {
        var config = GPTModelTests.variants.first { $0.0 == name }!.1
        config.hiddenDropout = 0
        config.attentionDropout = 0
        let model = try GPTModel(config: config, seed: 7, on: device)
        let tokens = samples(1, 7)[0]   // 8 tokens: the whole context
        let whole = try model.logits(MicroBatch(samples: [tokens + [0]], on: device)).toFloatArray()
        let cached = try cachedLogits(model, tokens, prefix: 5, blockSize: 3)
        let scale = whole.map(abs).max()!
        #expect(largestDifference(whole, cached) <= 1e-5 * scale, "\(name) (logits up to \(scale))")
    }

    /// Sequences of one step are independent: two prompts and a decode token in one ragged pass, their
    /// blocks interleaved in the pool, give each sequence's logits alone bit for bit.
    @Test func aRaggedStepIsEachSequenceAlone() throws {
        let model = try generationModel()
        let cache = try PagedKeyValueCache(for: model, blockSize: 2, blockCount: 16)
        let a = samples(1, 6, seed: 3)[0], b = samples(1, 2, seed: 4)[0]
        // a's first 5 tokens cached, then its 6th with b's prompt, in one pass.
        var blocksA: [Int32] = [], blocksB: [Int32] = []
        for _ in 0 ..< 3 { blocksA.append(cache.allocate()!); blocksB.append(cache.allocate()!) }
        let first = InferenceStep(sequences: [.init(blocks: blocksA, cachedLength: 0, tokens: Array(a.prefix(5)))])
        _ = try model.logits(first, cache: cache)
        let ragged = InferenceStep(sequences: [.init(blocks: blocksA, cachedLength: 5, tokens: [a[5]]),
                                               .init(blocks: blocksB, cachedLength: 0, tokens: b, allLogits: true)])
        let together = try model.logits(ragged, cache: cache).toFloatArray()
        let v = model.config.paddedVocabSize
        let aloneA = try model.logits(MicroBatch(samples: [Array(a.prefix(6)) + [0]], on: device)).toFloatArray()
        let aloneB = try model.logits(MicroBatch(samples: [b + [0]], on: device)).toFloatArray()
        let scale = aloneA.map(abs).max()!
        #expect(largestDifference(Array(together[..<v]), Array(aloneA[(5 * v)...])) <= 1e-5 * scale)
        #expect(largestDifference(Array(together[v...]), aloneB) <= 1e-5 * scale)
    }

    /// A pass past the model's positions or the sequence's blocks is refused, naming the limit.
    @Test func passesPastTheirRoomAreRefused() throws {
        let model = try GPTModel(config: GPTModelTests.variants[0].1, seed: 7, on: device)
        let cache = try PagedKeyValueCache(for: model, blockSize: 4, blockCount: 4)
        let blocks = [cache.allocate()!, cache.allocate()!, cache.allocate()!]
        #expect(throws: ConfigError.self) {
            try model.logits(InferenceStep(sequences: [.init(blocks: blocks, cachedLength: 6, tokens: [1, 2, 3])]), cache: cache)
        }
        #expect(throws: TensorError.self) {
            try model.logits(InferenceStep(sequences: [.init(blocks: [blocks[0]], cachedLength: 2, tokens: [1, 2, 3])]), cache: cache)
        }
        #expect(cache.freeBlockCount == 1)
    }
}

@Suite struct DynamicInferenceEngineTests {
    /// Prompts of different lengths, greedy and sampled, some asking for log-probabilities.
    static let requests: [InferenceRequest] = (0 ..< 6).map { i in
        let prompt = samples(1, 2 + 3 * i, seed: UInt64(10 + i))[0]
        var sampling = i % 2 == 0 ? SamplingParams.greedy(4 + 2 * i)
                                  : SamplingParams(temperature: 0.8, topK: i == 3 ? 5 : 0, topP: i == 5 ? 0.9 : 0,
                                                   numTokensToGenerate: 4 + 2 * i, seed: UInt64(i))
        sampling.returnLogProbs = i % 3 == 0
        return InferenceRequest(prompt: prompt, sampling: sampling)
    }

    /// Continuous batching changes nothing a request produces: six requests through an engine that
    /// runs at most three at once in a cache too small for all (they join as others leave) give the
    /// tokens and log-probabilities each gives alone; greedy tokens are the argmax of the whole
    /// sequence's logits; the pool is whole again at the end.
    @Test func batchedResultsAreOneAtATimeResults() throws {
        let model = try generationModel()
        let alone = try Self.requests.map { request in
            try DynamicInferenceEngine.single(model: model, vocabularySize: 40, positions: 40).generate([request])[0]
        }
        let cache = try PagedKeyValueCache(for: model, blockSize: 4, blockCount: 20)
        let engine = try DynamicInferenceEngine(model: model, cache: cache, vocabularySize: 40, maxRequests: 3)
        let batched = try engine.generate(Self.requests)
        #expect(cache.freeBlockCount == 20 && engine.pendingRequests == 0)
        for (i, (x, y)) in zip(alone, batched).enumerated() {
            #expect(x.tokens == y.tokens, "request \(i)")
            #expect(x.tokens.count == Self.requests[i].sampling.numTokensToGenerate && y.finishReason == .length)
            #expect(largestDifference(x.logProbs, y.logProbs) <= 1e-5, "request \(i)")
            #expect(largestDifference(x.promptLogProbs ?? [], y.promptLogProbs ?? []) <= 1e-5, "request \(i)")
            #expect((x.promptLogProbs?.count ?? x.prompt.count - 1) == x.prompt.count - 1)
        }
        // Greedy: each token is the argmax of the full forward over the sequence so far.
        let greedy = batched[2], sequence = greedy.prompt + greedy.tokens, v = model.config.paddedVocabSize
        let logits = try model.logits(MicroBatch(samples: [sequence], on: device)).toFloatArray()
        for (k, token) in greedy.tokens.enumerated() {
            let row = logits[(greedy.prompt.count - 1 + k) * v ..< (greedy.prompt.count + k) * v].prefix(40)
            #expect(row.indices.max { row[$0] < row[$1] }! - row.startIndex == Int(token))
        }
        // Log-probabilities are the log-softmax of the logits at the next token.
        if let promptLogProbs = batched[0].promptLogProbs {
            let p = batched[0].prompt, rows = try model.logits(MicroBatch(samples: [p], on: device)).toFloatArray()
            for (j, value) in promptLogProbs.enumerated() {
                let row = rows[j * v ..< j * v + 40], top = row.max()!
                let expected = row[j * v + Int(p[j + 1])] - top - log(row.reduce(0) { $0 + exp($1 - top) })
                #expect(abs(value - expected) <= 1e-4)
            }
        }
    }

    /// The same seed draws the same tokens; another seed other tokens.
    @Test func samplingWithASeedIsReproducible() throws {
        let model = try generationModel()
        func draw(_ seed: UInt64) throws -> [Int32] {
            let sampling = SamplingParams(temperature: 1.5, numTokensToGenerate: 20, seed: seed)
            return try DynamicInferenceEngine.single(model: model, vocabularySize: 40, positions: 40)
                .generate([InferenceRequest(prompt: [1, 2, 3], sampling: sampling)])[0].tokens
        }
        #expect(try draw(5) == draw(5))
        #expect(try draw(5) != draw(6))
    }

    /// A stop sequence ends generation with it; zero tokens to generate scores the prompt only.
    @Test func stopSequencesAndScoring() throws {
        let model = try generationModel()
        let engine = try DynamicInferenceEngine.single(model: model, vocabularySize: 40, positions: 80)
        let free = try engine.generate([InferenceRequest(prompt: [1, 2, 3], sampling: .greedy(12))])[0]
        var stopping = SamplingParams.greedy(12)
        stopping.stopSequences = [Array(free.tokens[2 ... 3])]
        let stopped = try engine.generate([InferenceRequest(prompt: [1, 2, 3], sampling: stopping)])[0]
        // It ends at the first generated token that completes the pair (here or earlier).
        let end = (0 ..< free.tokens.count).first { k in ([1, 2, 3] + free.tokens[...k]).suffix(2).elementsEqual(free.tokens[2 ... 3]) }!
        #expect(stopped.finishReason == .stop && stopped.tokens == Array(free.tokens[...end]))
        var scoring = SamplingParams.greedy(0)
        scoring.returnLogProbs = true
        let scored = try engine.generate([InferenceRequest(prompt: [1, 2, 3, 4], sampling: scoring)])[0]
        #expect(scored.tokens.isEmpty && scored.promptLogProbs?.count == 3 && scored.finishReason == .length)
    }

    /// Cancelling returns a running request's blocks at the next token boundary; a request no pass
    /// could run is refused when added, saying why.
    @Test func cancellationFreesBlocksAndImpossibleRequestsAreRefused() throws {
        let model = try generationModel()
        let cache = try PagedKeyValueCache(for: model, blockSize: 4, blockCount: 10)
        let engine = try DynamicInferenceEngine(model: model, cache: cache, vocabularySize: 40)
        final class Events: @unchecked Sendable { var tokens = 0; var reason: FinishReason? }
        let events = Events()
        let id = try engine.add(InferenceRequest(prompt: [1, 2, 3], sampling: .greedy(30))) { event in
            switch event {
            case .token: events.tokens += 1
            case .finished(let reason): events.reason = reason
            case .promptLogProbs: break
            }
        }
        engine.step()
        engine.step()
        #expect(cache.freeBlockCount < 10)
        engine.cancel(id)
        engine.step()
        #expect(events.tokens == 2 && events.reason == .cancelled && cache.freeBlockCount == 10 && engine.pendingRequests == 0)
        for (request, expected) in [(InferenceRequest(prompt: [], sampling: .greedy(1)), "the prompt is empty"),
                                    (InferenceRequest(prompt: [1, 40], sampling: .greedy(1)), "outside the vocabulary"),
                                    (InferenceRequest(prompt: [1, 2], sampling: .greedy(39)), "exceed the model's context of 40"),
                                    (InferenceRequest(prompt: [1], sampling: SamplingParams(temperature: -1)), "temperature -1.0 must be positive")] {
            #expect { try engine.add(request) { _ in } } throws: { "\($0)".contains(expected) }
        }
        let small = try DynamicInferenceEngine(model: model, cache: PagedKeyValueCache(for: model, blockSize: 4, blockCount: 2),
                                               vocabularySize: 40)
        #expect { try small.add(InferenceRequest(prompt: [1, 2, 3], sampling: .greedy(8))) { _ in } } throws: {
            "\($0)".contains("needs 3 key/value blocks; the cache holds 2")
        }
    }

    /// Top-k and top-p cut the candidates as Megatron's sampler does; greedy is the argmax.
    @Test func samplingCutsTheCandidates() {
        let logits: [Float] = [0.5, 3, -1, 2.5, 1]
        logits.withUnsafeBufferPointer { l in
            #expect(SamplingParams(topK: 1).pick(from: l, uniform: 0.99) == 1)
            // Top-2 keeps ids 1 and 3 with weights 1 : e^(−0.5); the draw splits there.
            let two = SamplingParams(topK: 2)
            let cut = 1 / (1 + exp(-0.5))
            #expect(two.pick(from: l, uniform: cut - 1e-6) == 1 && two.pick(from: l, uniform: cut + 1e-6) == 3)
            #expect((1 ... 100).allSatisfy { [1, 3].contains(two.pick(from: l, uniform: Double($0) / 100)) })
            // Every id can come from the whole vocabulary; a low temperature sharpens toward the argmax.
            #expect(Set((1 ... 1000).map { SamplingParams().pick(from: l, uniform: Double($0) / 1000) }) == Set(0 ..< 5))
            #expect(SamplingParams(temperature: 0.01).pick(from: l, uniform: 0.999) == 1)
            // Probabilities ≈ [.045, .543, .010, .329, .074]: Megatron keeps a token when the likelier
            // ones sum to at most top-p, so 0.6 keeps ids 1 and 3, 0.5 id 1 alone, 0.9 ids 1, 3 and 4.
            func kept(_ topP: Float) -> Set<Int> { Set((1 ... 1000).map { SamplingParams(topP: topP).pick(from: l, uniform: Double($0) / 1000) }) }
            #expect(kept(0.6) == [1, 3] && kept(0.5) == [1] && kept(0.9) == [1, 3, 4])
        }
    }
}
