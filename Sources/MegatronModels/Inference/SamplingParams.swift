import Foundation

/// How one request's tokens are drawn and when its generation stops (Megatron-core's SamplingParams).
/// A token is drawn from the last position's logits divided by the temperature, cut to the `topK`
/// likeliest (1: greedy, 0: no cut), then to the smallest set whose probability reaches `topP`
/// (0: no cut), by softmax. Ids at or beyond the tokenizer's vocabulary (the output layer's
/// padding) are never drawn.
public struct SamplingParams: Sendable, Equatable {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    /// After each token, top-p is multiplied by this (0: kept), not below `topPBound` (0: no bound).
    public var topPDecay: Float
    public var topPBound: Float
    /// Tokens to add after the prompt (0: only the prompt's log-probabilities).
    public var numTokensToGenerate: Int
    /// Log-probabilities of the prompt's tokens (after the first) and of each generated token.
    public var returnLogProbs: Bool
    /// With each generated token, this many likeliest alternatives and their log-probabilities.
    public var topLogProbs: Int
    /// Seeds the request's own draws, so its tokens do not depend on what else runs in its batch.
    public var seed: UInt64
    /// Generation ends when the sequence (prompt and generated tokens) ends with any of these, the
    /// last token generated; the stop tokens stay in the output. Megatron's termination id is
    /// `[eod]`; its stop_on_double_eol `[628]` and `[198, 198]` in GPT-2's vocabulary.
    public var stopSequences: [[Int32]]
    /// Tokens never drawn right after another (their logit set to −10¹⁰, which their
    /// log-probabilities show): Megatron's prevent_newline_after_colon bans "\n" after ":".
    public var bans: [TokenBan]

    public struct TokenBan: Sendable, Equatable {
        public let after: Int32, token: Int32
        public init(after: Int32, token: Int32) {
            self.after = after
            self.token = token
        }
    }

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 0, topPDecay: Float = 0, topPBound: Float = 0,
                numTokensToGenerate: Int = 30, returnLogProbs: Bool = false, topLogProbs: Int = 0, seed: UInt64 = 0,
                stopSequences: [[Int32]] = [], bans: [TokenBan] = []) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.topPDecay = topPDecay
        self.topPBound = topPBound
        self.bans = bans
        self.numTokensToGenerate = numTokensToGenerate
        self.returnLogProbs = returnLogProbs
        self.topLogProbs = topLogProbs
        self.seed = seed
        self.stopSequences = stopSequences
    }

    /// Greedy decoding: always the likeliest token.
    public static func greedy(_ tokens: Int) -> SamplingParams { SamplingParams(topK: 1, numTokensToGenerate: tokens) }

    /// The first rule these parameters break, or nil.
    public var problem: String? {
        if !(temperature > 0) || !temperature.isFinite { return "temperature \(temperature) must be positive" }
        if topK < 0 { return "top_k \(topK) must be 0 or more" }
        if !(0 ... 1).contains(topP) { return "top_p \(topP) must be within 0 ... 1" }
        if !(0 ... 1).contains(topPDecay) || !(0 ... 1).contains(topPBound) {
            return "top_p_decay \(topPDecay) and top_p_bound \(topPBound) must be within 0 ... 1"
        }
        if numTokensToGenerate < 0 { return "tokens to generate \(numTokensToGenerate) must be 0 or more" }
        if topLogProbs < 0 { return "top log-probabilities \(topLogProbs) must be 0 or more" }
        if stopSequences.contains(where: \.isEmpty) { return "a stop sequence is empty" }
        return nil
    }

    /// Whether `tokens`, whose last token was just generated, end with a stop sequence.
    func stops(_ tokens: [Int32]) -> Bool { stopSequences.contains { tokens.count >= $0.count && tokens.suffix($0.count).elementsEqual($0) } }

    /// The token `uniform` ∈ (0, 1] selects from `logits` under these parameters.
    public func pick(from logits: UnsafeBufferPointer<Float>, uniform: Double) -> Int {
        let greatest = logits.indices.max { logits[$0] < logits[$1] }!
        if topK == 1 { return greatest }
        var candidates = topK > 1 ? Array(logits.indices.sorted { logits[$0] > logits[$1] }.prefix(topK)) : Array(logits.indices)
        let top = Double(logits[greatest])
        var weights = candidates.map { exp((Double(logits[$0]) - top) / Double(temperature)) }
        if topP > 0 {
            if topK <= 1 {
                let order = weights.indices.sorted { weights[$0] > weights[$1] }
                candidates = order.map { candidates[$0] }
                weights = order.map { weights[$0] }
            }
            // Keep each token whose likelier tokens sum to at most top_p (the first always).
            let total = weights.reduce(0, +)
            var before = 0.0, kept = 0
            while kept < weights.count, kept == 0 || before <= Double(topP) * total {
                before += weights[kept]
                kept += 1
            }
            candidates.removeSubrange(kept...)
            weights.removeSubrange(kept...)
        }
        var threshold = uniform * weights.reduce(0, +)
        for (candidate, weight) in zip(candidates, weights) {
            threshold -= weight
            if threshold <= 0 { return candidate }
        }
        return candidates.last!
    }
}

/// log softmax of a row of logits at chosen tokens.
struct LogSoftmax {
    let logits: UnsafeBufferPointer<Float>
    let logSumExp: Double

    init(_ logits: UnsafeBufferPointer<Float>) {
        self.logits = logits
        let top = Double(logits.max()!)
        logSumExp = top + log(logits.reduce(0.0) { $0 + exp(Double($1) - top) })
    }

    subscript(token: Int) -> Float { Float(Double(logits[token]) - logSumExp) }

    /// The `count` likeliest tokens and their log-probabilities, likeliest first.
    func top(_ count: Int) -> [TokenLogProb] {
        guard count > 0 else { return [] }
        return logits.indices.sorted { logits[$0] > logits[$1] }.prefix(count).map { TokenLogProb(token: Int32($0), logProb: self[$0]) }
    }
}
