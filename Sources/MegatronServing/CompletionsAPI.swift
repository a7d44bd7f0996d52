import Foundation
import MegatronData
import MegatronModels

/// OpenAI's completions API (`POST /v1/completions`), so that existing clients work unchanged:
/// prompt (a string, strings, token ids or lists of them), max_tokens (16), temperature (1; 0 is
/// greedy), top_p (1), n (1), stop (up to 4 strings), stream (server-sent events ending in
/// `data: [DONE]`), logprobs (0 ... 5 alternatives), echo, seed; also top_k (vLLM's). Generation
/// also stops at the tokenizer's end of document, which the text leaves out. Refusals are 400s with
/// OpenAI's error body; fields this server does not implement (suffix, logit_bias, non-zero
/// penalties, best_of above n) are refused rather than ignored.
struct CompletionsAPI {
    let tokenizer: any TextTokenizer
    let maxSequenceLength: Int
    let modelName: String

    static let fields: Set<String> = [
        "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "stream", "logprobs", "echo", "stop", "seed", "user",
        "presence_penalty", "frequency_penalty", "best_of", "logit_bias", "suffix", "stream_options",
    ]
    static let maxChoices = 16, maxPrompts = 64

    struct Parsed {
        /// Prompt-major: prompt p's choice c is request p·n + c.
        let requests: [InferenceRequest]
        let promptTexts: [String]
        let n: Int
        let stream: Bool
        let echo: Bool
        let logprobs: Int?
        let stops: [String]
        let model: String
    }

    func parse(_ body: JSONValue?, seed defaultSeed: UInt64) throws(APIError) -> Parsed {
        let f = try FieldReader(body, known: Self.fields)
        guard let promptField = f.fields["prompt"], promptField != .null else { throw APIError("prompt: required") }
        let prompts = try tokens(of: promptField)
        let model: String
        switch f.fields["model"] {
        case nil, .null?: model = modelName
        case .string(let name)?: model = name
        default: throw APIError("model: expected a string")
        }
        let maxTokens = try f.int("max_tokens", default: 16, "max_tokens: expected an integer")
        guard maxTokens >= 0 else { throw APIError("max_tokens: \(maxTokens) is negative; expected 0 or more") }
        let temperature = try f.number("temperature", default: 1, "temperature: expected a number")
        guard (0 ... 2).contains(temperature) else { throw APIError("temperature: \(temperature) is outside 0 ... 2") }
        let topP = try f.number("top_p", default: 1, "top_p: expected a number")
        guard topP > 0, topP <= 1 else { throw APIError("top_p: \(topP) is outside (0, 1]") }
        let topK = try f.int("top_k", default: 0, "top_k: expected an integer")
        guard topK >= 0 || topK == -1 else { throw APIError("top_k: \(topK) must be 0 or more (or -1: off)") }
        let n = try f.int("n", default: 1, "n: expected an integer")
        guard (1 ... Self.maxChoices).contains(n) else { throw APIError("n: \(n) is outside 1 ... \(Self.maxChoices)") }
        let bestOf = try f.int("best_of", default: n, "best_of: expected an integer")
        guard bestOf == n else { throw APIError("best_of: only best_of = n is implemented") }
        let stream = try f.bool("stream", default: false, "stream: expected true or false")
        let echo = try f.bool("echo", default: false, "echo: expected true or false")
        var logprobs: Int?
        if f.has("logprobs") {
            let k = try f.int("logprobs", default: 0, "logprobs: expected an integer 0 ... 5 or null")
            guard (0 ... 5).contains(k) else { throw APIError("logprobs: \(k) is outside 0 ... 5") }
            logprobs = k
        }
        let stops: [String]
        switch f.fields["stop"] {
        case nil, .null?: stops = []
        case .string(let s)?: stops = [s]
        case .array(let list)?:
            stops = list.compactMap { if case .string(let s) = $0 { s } else { nil } }
            guard stops.count == list.count, stops.count <= 4 else { throw APIError("stop: expected a string or up to 4 strings") }
        default: throw APIError("stop: expected a string or up to 4 strings")
        }
        guard !stops.contains("") else { throw APIError("stop: an empty string cannot stop generation") }
        let seed = try f.int("seed", default: -1, "seed: expected an integer")
        for penalty in ["presence_penalty", "frequency_penalty"] {
            guard try f.number(penalty, default: 0, "\(penalty): expected a number") == 0 else {
                throw APIError("\(penalty): not implemented; only 0 is accepted")
            }
        }
        if case .object(let bias)? = f.fields["logit_bias"], !bias.isEmpty { throw APIError("logit_bias: not implemented") }
        if f.has("suffix") { throw APIError("suffix: not implemented") }
        if case .string? = f.fields["user"] {} else if f.has("user") { throw APIError("user: expected a string") }

        var requests: [InferenceRequest] = []
        for (p, prompt) in prompts.enumerated() {
            guard !prompt.isEmpty else { throw APIError("prompt[\(p)]: the prompt has no tokens") }
            guard prompt.count + maxTokens <= maxSequenceLength else {
                throw APIError("prompt[\(p)]: its \(prompt.count) tokens and max_tokens \(maxTokens) exceed the model's context of "
                               + "\(maxSequenceLength) tokens")
            }
            for c in 0 ..< n {
                let sampling = SamplingParams(temperature: temperature == 0 ? 1 : Float(temperature), topK: temperature == 0 ? 1 : max(topK, 0),
                                              topP: topP == 1 ? 0 : Float(topP), numTokensToGenerate: maxTokens,
                                              returnLogProbs: logprobs != nil, topLogProbs: logprobs ?? 0,
                                              seed: (seed >= 0 ? UInt64(seed) : defaultSeed) &+ UInt64(p * n + c),
                                              stopSequences: [[tokenizer.eod]])
                requests.append(InferenceRequest(prompt: prompt, sampling: sampling))
            }
        }
        return Parsed(requests: requests, promptTexts: prompts.map { tokenizer.decode($0) }, n: n, stream: stream, echo: echo,
                      logprobs: logprobs, stops: stops, model: model)
    }

    /// The token ids of each prompt: a string, a list of strings, a list of ids, or a list of such lists.
    private func tokens(of prompt: JSONValue) throws(APIError) -> [[Int32]] {
        func ids(_ list: [JSONValue], _ name: String) throws(APIError) -> [Int32] {
            var result: [Int32] = []
            for value in list {
                guard case .int(let id) = value, (0 ..< tokenizer.vocabSize).contains(id) else {
                    throw APIError("\(name): expected token ids 0 ..< \(tokenizer.vocabSize)")
                }
                result.append(Int32(id))
            }
            return result
        }
        func encode(_ text: String, _ name: String) throws(APIError) -> [Int32] {
            do { return try tokenizer.encode(text) } catch { throw APIError("\(name): \(error)") }
        }
        switch prompt {
        case .string(let text): return [try encode(text, "prompt")]
        case .array(let list) where !list.isEmpty && list.count <= Self.maxPrompts:
            if case .int = list[0] { return [try ids(list, "prompt")] }
            var prompts: [[Int32]] = []
            for (i, item) in list.enumerated() {
                switch item {
                case .string(let text): prompts.append(try encode(text, "prompt[\(i)]"))
                case .array(let inner): prompts.append(try ids(inner, "prompt[\(i)]"))
                default: throw APIError("prompt[\(i)]: expected a string or a list of token ids")
                }
            }
            return prompts
        case .array(let list) where list.isEmpty: throw APIError("prompt: the list is empty")
        case .array: throw APIError("prompt: at most \(Self.maxPrompts) prompts")
        default: throw APIError("prompt: expected a string, a list of strings, or token ids")
        }
    }
}

/// One choice's text as its tokens arrive: the decoded continuation (without an end-of-document
/// token), cut before the first stop string. What may be sent so far holds back a tail that could
/// still become a stop string and an unfinished UTF-8 character.
struct CompletionText {
    let tokenizer: any TextTokenizer
    let stops: [String]
    private(set) var tokens: [Int32] = []
    /// A stop string appeared; `text` ends before it.
    private(set) var stopped = false
    private(set) var text = ""
    private var sentScalars = 0

    init(tokenizer: any TextTokenizer, stops: [String]) {
        self.tokenizer = tokenizer
        self.stops = stops
    }

    /// Adds a generated token; returns the text that may be sent now.
    mutating func append(_ token: Int32) -> String {
        guard !stopped else { return "" }
        if token != tokenizer.eod { tokens.append(token) }
        text = tokenizer.decode(tokens)
        if let cut = stops.compactMap({ text.range(of: $0)?.lowerBound }).min() {
            text = String(text[..<cut])
            stopped = true
        }
        return release(final: stopped)
    }

    /// The text not yet sent, once generation has ended.
    mutating func finish() -> String { release(final: true) }

    private mutating func release(final: Bool) -> String {
        var scalars = Array(text.unicodeScalars)
        if !final {
            while scalars.last == "\u{FFFD}" { scalars.removeLast() }
            let held = stops.map { stop in
                (1 ..< max(1, stop.unicodeScalars.count)).reversed().first { k in
                    scalars.count >= k && scalars.suffix(k).elementsEqual(stop.unicodeScalars.prefix(k))
                } ?? 0
            }.max() ?? 0
            scalars.removeLast(held)
        }
        guard scalars.count > sentScalars else { return "" }
        defer { sentScalars = scalars.count }
        var delta = String.UnicodeScalarView()
        delta.append(contentsOf: scalars[sentScalars...])
        return String(delta)
    }
}
