import Foundation
import MegatronData
import MegatronModels

/// One `/v1/completions` request as it runs: every choice's text grows with its tokens and stops at
/// a stop string (its request cancelled there); streamed, each token's text goes out as a chunk.
struct CompletionRun: Sendable {
    let parsed: CompletionsAPI.Parsed
    let tokenizer: any TextTokenizer
    let id = "cmpl-\(UUID().uuidString.lowercased())"
    let created = Int(Date().timeIntervalSince1970)

    /// A choice so far.
    private struct Choice {
        var text: CompletionText
        var generated = 0
        var logProbs: [Float] = []
        var tops: [[TokenLogProb]] = []
        var promptLogProbs: [Float]?
        var finishReason: String?
    }

    /// Runs the choices on `engine`, calling `emit` with each streamed chunk; returns the whole response.
    func complete(on engine: ServingEngine, emit: (JSONValue) async throws -> Void) async throws -> JSONValue {
        var choices = parsed.requests.map { _ in Choice(text: CompletionText(tokenizer: tokenizer, stops: parsed.stops)) }
        return try await engine.withGeneration(parsed.requests) { generation in
            if parsed.echo {
                for i in choices.indices { try await emit(chunk(i, text: parsed.promptTexts[i / parsed.n], logprobs: nil, finish: nil)) }
            }
            for await (i, event) in generation.events {
                switch event {
                case .promptLogProbs(let values): choices[i].promptLogProbs = values
                case let .token(token, logProb, top):
                    guard !choices[i].text.stopped else { continue }
                    choices[i].generated += 1
                    let delta = choices[i].text.append(token)
                    if token != tokenizer.eod, let logProb {
                        choices[i].logProbs.append(logProb)
                        choices[i].tops.append(top)
                    }
                    if choices[i].text.stopped { engine.cancel(generation, request: i) }
                    let logprobs = parsed.logprobs != nil && token != tokenizer.eod && choices[i].logProbs.count > 0
                        ? logProbsObject(tokens: [token], logProbs: [choices[i].logProbs.last], tops: [choices[i].tops.last ?? []], offset: 0)
                        : nil
                    if parsed.stream && (!delta.isEmpty || logprobs != nil) { try await emit(chunk(i, text: delta, logprobs: logprobs, finish: nil)) }
                case .finished(let reason):
                    let finish = choices[i].text.stopped || reason == .stop ? "stop" : "length"
                    choices[i].finishReason = finish
                    if parsed.stream { try await emit(chunk(i, text: choices[i].text.finish(), logprobs: nil, finish: finish)) }
                    if case .failed(let message) = reason { throw InferenceRequestError(message) }
                }
            }
            return response(choices)
        }
    }

    private func chunk(_ index: Int, text: String, logprobs: JSONValue?, finish: String?) -> JSONValue {
        .object(["id": .string(id), "object": .string("text_completion"), "created": .int(created), "model": .string(parsed.model),
                 "choices": .array([.object(["index": .int(index), "text": .string(text), "logprobs": logprobs ?? .null,
                                             "finish_reason": finish.map(JSONValue.string) ?? .null])])])
    }

    private func response(_ choices: [Choice]) -> JSONValue {
        let promptTokens = stride(from: 0, to: parsed.requests.count, by: parsed.n).map { parsed.requests[$0].prompt.count }.reduce(0, +)
        let completionTokens = choices.map(\.generated).reduce(0, +)
        return .object([
            "id": .string(id), "object": .string("text_completion"), "created": .int(created), "model": .string(parsed.model),
            "choices": .array(choices.enumerated().map { i, choice in
                let prompt = parsed.requests[i].prompt
                let echo = parsed.echo ? parsed.promptTexts[i / parsed.n] : ""
                var logprobs = JSONValue.null
                if parsed.logprobs != nil {
                    let kept = choice.text.tokens
                    let generated = logProbsObject(tokens: kept, logProbs: Array(choice.logProbs.prefix(kept.count)),
                                                   tops: Array(choice.tops.prefix(kept.count)), offset: echo.count)
                    logprobs = parsed.echo ? join(logProbsObject(tokens: prompt, logProbs: [nil] + (choice.promptLogProbs ?? []),
                                                                 tops: prompt.map { _ in [] }, offset: 0), generated) : generated
                }
                return .object(["index": .int(i), "text": .string(echo + choice.text.text), "logprobs": logprobs,
                                "finish_reason": .string(choice.finishReason ?? "length")])
            }),
            "usage": .object(["prompt_tokens": .int(promptTokens), "completion_tokens": .int(completionTokens),
                              "total_tokens": .int(promptTokens + completionTokens)]),
        ])
    }

    /// OpenAI's logprobs object: each token's text, log-probability, likeliest alternatives and offset in the text.
    private func logProbsObject(tokens: [Int32], logProbs: [Float?], tops: [[TokenLogProb]], offset: Int) -> JSONValue {
        var offsets: [JSONValue] = [], position = offset
        for token in tokens {
            offsets.append(.int(position))
            position += tokenizer.decode([token]).count
        }
        return .object([
            "tokens": .strings(tokens.map { tokenizer.decode([$0]) }),
            "token_logprobs": .array(logProbs.map { $0.map { .double(Double($0)) } ?? .null }),
            "top_logprobs": parsed.logprobs == 0 ? .null : .array(tops.map { top in
                top.isEmpty ? .null : .object(Dictionary(top.map { (tokenizer.decode([$0.token]), JSONValue.double(Double($0.logProb))) },
                                                         uniquingKeysWith: { first, _ in first }))
            }),
            "text_offset": .array(offsets),
        ])
    }

    private func join(_ a: JSONValue, _ b: JSONValue) -> JSONValue {
        guard case .object(let x) = a, case .object(let y) = b else { return a }
        return .object(x.merging(y) { first, second in
            if case .array(let p) = first, case .array(let q) = second { return .array(p + q) }
            return first == .null && second == .null ? .null : .array([])
        })
    }
}
