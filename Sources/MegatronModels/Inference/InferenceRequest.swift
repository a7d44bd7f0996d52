/// A prompt and how to continue it.
public struct InferenceRequest: Sendable {
    public var prompt: [Int32]
    public var sampling: SamplingParams

    public init(prompt: [Int32], sampling: SamplingParams) {
        self.prompt = prompt
        self.sampling = sampling
    }
}

/// What the engine reports about one request, in order: the prompt's log-probabilities (when asked
/// for), one `.token` per generated token, then `.finished` exactly once.
public enum InferenceEvent: Sendable {
    /// log p(prompt[i + 1] | prompt[...i]) for each prompt token after the first.
    case promptLogProbs([Float])
    /// A generated token; its log-probability under the model's unscaled distribution when the
    /// request asked for log-probabilities, and its likeliest alternatives when it asked for those.
    case token(Int32, logProb: Float?, top: [TokenLogProb])
    case finished(FinishReason)
}

public struct TokenLogProb: Sendable, Equatable {
    public let token: Int32
    public let logProb: Float
}

public enum FinishReason: Sendable, Equatable {
    /// Its tokens to generate are done.
    case length
    /// It generated a stop sequence.
    case stop
    /// Cancelled by its client (or a server shutting down); its blocks went back to the pool.
    case cancelled
    /// The model's pass failed; the message says why.
    case failed(String)
}

/// What a request produced, collected from its events.
public struct InferenceResult: Sendable {
    public let prompt: [Int32]
    public internal(set) var tokens: [Int32] = []
    public internal(set) var promptLogProbs: [Float]?
    public internal(set) var logProbs: [Float] = []
    public internal(set) var topLogProbs: [[TokenLogProb]] = []
    public internal(set) var finishReason: FinishReason?

    public init(prompt: [Int32]) { self.prompt = prompt }

    public mutating func record(_ event: InferenceEvent) {
        switch event {
        case .promptLogProbs(let values): promptLogProbs = values
        case let .token(token, logProb, top):
            tokens.append(token)
            if let logProb { logProbs.append(logProb) }
            if !top.isEmpty { topLogProbs.append(top) }
        case .finished(let reason): finishReason = reason
        }
    }
}

/// A request the engine refuses, and why (the server answers it with a client error).
public struct InferenceRequestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
