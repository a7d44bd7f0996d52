import Foundation
import MegatronCore

/// Autoregressive text generation from a GPT model with Megatron's sampling controls: the last
/// position's logits divided by the temperature, cut to the `topK` largest (1: greedy, 0: the
/// whole vocabulary), softmax, one draw. Ids at or beyond `vocabularySize` (the padding of the
/// output layer) are never produced.
public struct TextGeneration: Sendable {
    public var topK: Int
    public var temperature: Float
    /// Seeds the draws, so a generation is reproducible.
    public var seed: UInt64

    public init(topK: Int = 1, temperature: Float = 1, seed: UInt64 = 0) {
        self.topK = topK
        self.temperature = temperature
        self.seed = seed
    }

    /// `count` tokens following `prompt`: through a key/value cache when the whole sequence fits in
    /// `maxLength` tokens, else re-running the model on the last `maxLength` tokens for each.
    public func continuation(of prompt: [Int32], count: Int, model: GPTModel, vocabularySize: Int, maxLength: Int) throws -> [Int32] {
        guard !prompt.isEmpty else { throw TensorError("generation: the prompt is empty") }
        guard temperature > 0 else { throw TensorError("generation: temperature \(temperature) must be positive") }
        var tokens = prompt, draws = GaussianStream(seed: seed, stream: 0)
        // With room for the whole sequence, a key/value cache runs each new token alone.
        if prompt.count + count <= maxLength {
            let cache = try KeyValueCache(for: model, capacity: prompt.count + count)
            var logits = try model.logits(continuing: prompt, cache: cache)
            for step in 0 ..< count {
                let last = UnsafeBufferPointer(start: logits.floats + (logits.rows - 1) * logits.columns,
                                               count: min(vocabularySize, logits.columns))
                tokens.append(Int32(pick(from: last, uniform: draws.uniform())))
                if step + 1 < count { logits = try model.logits(continuing: [tokens.last!], cache: cache) }
            }
            return Array(tokens.dropFirst(prompt.count))
        }
        for _ in 0 ..< count {
            let window = Array(tokens.suffix(maxLength))
            let logits = try model.logits(MicroBatch(samples: [window + [0]], on: model.device))
            let last = UnsafeBufferPointer(start: logits.floats + (window.count - 1) * logits.columns,
                                           count: min(vocabularySize, logits.columns))
            tokens.append(Int32(pick(from: last, uniform: draws.uniform())))
        }
        return Array(tokens.dropFirst(prompt.count))
    }

    /// The token `uniform` ∈ (0, 1] selects from the top-k softmax of `logits` / temperature.
    public func pick(from logits: UnsafeBufferPointer<Float>, uniform: Double) -> Int {
        let k = topK <= 0 ? logits.count : min(topK, logits.count)
        let candidates = k == 1 ? [logits.indices.max { logits[$0] < logits[$1] }!]
                                : Array(logits.indices.sorted { logits[$0] > logits[$1] }.prefix(k))
        guard candidates.count > 1 else { return candidates[0] }
        let top = Double(logits[candidates[0]])
        let weights = candidates.map { exp((Double(logits[$0]) - top) / Double(temperature)) }
        var threshold = uniform * weights.reduce(0, +)
        for (candidate, weight) in zip(candidates, weights) {
            threshold -= weight
            if threshold <= 0 { return candidate }
        }
        return candidates.last!
    }
}
