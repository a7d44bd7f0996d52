import MegatronData
import MegatronModels

/// Megatron's text generation API (tools/run_text_generation_server.py, `PUT /api`): the request's
/// fields, defaults, limits and messages as Megatron's server checks them, in its order, and its
/// answer: per prompt the text (prompt and continuation), the segments (one string per token) and
/// the log-probabilities of every token after the first.
///
/// Unlike Megatron's server, which answers most refusals with status 200, every refusal here is a
/// 400, with a JSON body {"message": …} (what Megatron's text_generation_cli reads); unknown fields
/// are refused; beam search (beam_width) is refused as not implemented.
struct MegatronGenerateAPI {
    let tokenizer: any TextTokenizer
    let maxSequenceLength: Int

    static let maxPrompts = 128
    static let fields: Set<String> = [
        "prompts", "tokens_to_generate", "logprobs", "temperature", "top_k", "top_p", "top_p_decay", "top_p_bound", "add_BOS",
        "stop_on_double_eol", "stop_on_eol", "prevent_newline_after_colon", "random_seed", "no_log", "beam_width", "stop_token",
        "length_penalty", "max_len", "sentences",
    ]

    struct Parsed {
        let requests: [InferenceRequest]
        let logprobs: Bool
        let log: Bool
    }

    func parse(_ body: JSONValue?, seed defaultSeed: UInt64) throws(APIError) -> Parsed {
        guard case .object(let raw)? = body else { throw APIError("the request body is not a JSON object") }
        guard raw["prompts"] != nil else { throw APIError("prompts argument required") }
        if raw["max_len"] != nil { throw APIError("max_len is no longer used.  Replace with tokens_to_generate") }
        if raw["sentences"] != nil { throw APIError("sentences is no longer used.  Replace with prompts") }
        let f = try FieldReader(body, known: Self.fields)
        guard case .array(let list)? = f.fields["prompts"] else { throw APIError("prompts is not a list of strings") }
        let prompts = list.compactMap { if case .string(let s) = $0 { s } else { nil } }
        guard prompts.count == list.count else { throw APIError("prompts is not a list of strings") }
        guard !prompts.isEmpty else { throw APIError("prompts is empty") }
        guard prompts.count <= Self.maxPrompts else { throw APIError("Maximum number of prompts is \(Self.maxPrompts)") }
        let tokensToGenerate = try f.int("tokens_to_generate", default: 64, "tokens_to_generate must be an integer greater than 0")
        guard tokensToGenerate >= 0 else { throw APIError("tokens_to_generate must be an integer greater than or equal to 0") }
        let logprobs = try f.bool("logprobs", default: false, "logprobs must be a boolean value")
        if tokensToGenerate == 0 && !logprobs { throw APIError("tokens_to_generate=0 implies logprobs should be True") }
        let temperatureMessage = "temperature must be a positive number less than or equal to 100.0"
        let temperature = try f.number("temperature", default: 1, temperatureMessage)
        guard temperature > 0, temperature <= 100 else { throw APIError(temperatureMessage) }
        let topK = try f.int("top_k", default: 0, "top_k must be an integer equal to or greater than 0 and less than or equal to 1000")
        guard (0 ... 1000).contains(topK) else { throw APIError("top_k must be equal to or greater than 0 and less than or equal to 1000") }
        let topP = try f.number("top_p", default: 0, "top_p must be a positive float less than or equal to 1.0")
        if topP > 0 && topK > 0 { throw APIError("cannot set both top-k and top-p samplings.") }
        guard (0 ... 1).contains(topP) else { throw APIError("top_p must be less than or equal to 1.0") }
        let decay = try f.number("top_p_decay", default: 0, "top_p_decay must be a positive float less than or equal to 1.0")
        if f.has("top_p_decay") {
            guard topP > 0 else { throw APIError("top_p_decay cannot be set without top_p") }
            guard (0 ... 1).contains(decay) else { throw APIError("top_p_decay must be less than or equal to 1.0") }
        }
        let bound = try f.number("top_p_bound", default: 0, "top_p_bound must be a positive float less than or equal to top_p")
        if f.has("top_p_bound") {
            guard topP > 0 else { throw APIError("top_p_bound cannot be set without top_p") }
            guard bound > 0, bound <= topP else { throw APIError("top_p_bound must be greater than 0 and less than top_p") }
        }
        let addBOS = try f.bool("add_BOS", default: false, "add_BOS must be a boolean value")
        if prompts.contains(where: \.isEmpty) && !addBOS { throw APIError("Empty prompts require add_BOS=true") }
        let stopOnDoubleEOL = try f.bool("stop_on_double_eol", default: false, "stop_on_double_eol must be a boolean value")
        let stopOnEOL = try f.bool("stop_on_eol", default: false, "stop_on_eol must be a boolean value")
        let noNewlineAfterColon = try f.bool("prevent_newline_after_colon", default: false,
                                             "prevent_newline_after_colon must be a boolean value")
        let randomSeed = try f.int("random_seed", default: -1, "random_seed must be integer")
        if f.has("random_seed") && randomSeed < 0 { throw APIError("random_seed must be a positive integer") }
        let noLog = try f.bool("no_log", default: false, "no_log must be a boolean value")
        if f.has("beam_width") {
            let width = try f.int("beam_width", default: 1, "beam_width must be integer")
            guard width >= 1 else { throw APIError("beam_width must be an integer > 1") }
            guard prompts.count == 1 else { throw APIError("When doing beam_search, batch size must be 1") }
            throw APIError("beam_width: beam search is not implemented by this server; use greedy (top_k 1) or sampling")
        }
        _ = try f.int("stop_token", default: 0, "stop_token must be an integer")
        _ = try f.number("length_penalty", default: 1, "length_penalty must be a float")

        var sampling = SamplingParams(temperature: Float(temperature), topK: topK, topP: Float(topP), topPDecay: Float(decay),
                                      topPBound: Float(bound), numTokensToGenerate: tokensToGenerate, returnLogProbs: logprobs)
        let newline = singleToken("\n"), doubleNewline = singleToken("\n\n")
        if stopOnDoubleEOL {
            sampling.stopSequences = [doubleNewline.map { [$0] }, newline.map { [$0, $0] }].compactMap { $0 }
        } else if stopOnEOL {
            sampling.stopSequences = [newline, doubleNewline].compactMap { $0.map { [$0] } }
        } else {
            sampling.stopSequences = [[tokenizer.eod]]
        }
        if noNewlineAfterColon, let colon = singleToken(":"), let newline {
            sampling.bans = [.init(after: colon, token: newline)]
        }
        var requests: [InferenceRequest] = []
        for (i, prompt) in prompts.enumerated() {
            var tokens: [Int32]
            do { tokens = try tokenizer.encode(prompt) } catch { throw APIError("prompts[\(i)]: \(error)") }
            if addBOS { tokens.insert(tokenizer.eod, at: 0) }
            guard !tokens.isEmpty else { throw APIError("prompts[\(i)] has no tokens; send add_BOS=true for an empty prompt") }
            guard tokens.count + tokensToGenerate <= maxSequenceLength else {
                throw APIError("Length of prompt + tokens_to_generate longer than allowed (prompts[\(i)]: \(tokens.count) + "
                               + "\(tokensToGenerate) > \(maxSequenceLength))")
            }
            sampling.seed = (randomSeed >= 0 ? UInt64(randomSeed) : defaultSeed) &+ UInt64(i)
            requests.append(InferenceRequest(prompt: tokens, sampling: sampling))
        }
        return Parsed(requests: requests, logprobs: logprobs, log: !noLog)
    }

    /// Megatron's answer: text, segments and logprobs (null unless asked for), one entry per prompt.
    func respond(_ results: [InferenceResult], logprobs: Bool) -> JSONValue {
        let tokens = results.map { $0.prompt + $0.tokens }
        return .object([
            "text": .strings(tokens.map { tokenizer.decode($0) }),
            "segments": .array(tokens.map { .strings($0.map { tokenizer.decode([$0]) }) }),
            "logprobs": logprobs ? .array(results.map { .floats(($0.promptLogProbs ?? []) + $0.logProbs) }) : .null,
        ])
    }

    /// The id `text` encodes to, when it is one token.
    private func singleToken(_ text: String) -> Int32? {
        guard let ids = try? tokenizer.encode(text), ids.count == 1 else { return nil }
        return ids[0]
    }
}
