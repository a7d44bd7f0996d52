import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import ServingClient
import Testing

/// `megatron serve` as a user runs it: the binary on a loopback port (--port 0), called over HTTP.
final class RunningServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    private let printed = Printed()

    /// What the server printed so far.
    private final class Printed: @unchecked Sendable {
        let lock = NSLock()
        var data = Data()
        var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
    }

    /// Starts `megatron serve --load load` and waits for its "serving … on http://host:port" line.
    init(load: String, _ flags: [String] = ["--tokenizer-type", "NullTokenizer", "--vocab-size", "100"]) throws {
        let pipe = Pipe()
        process.executableURL = PretrainFlagTests.productsDirectory.appendingPathComponent("megatron")
        process.arguments = ["serve", "--load", load, "--port", "0", "--threads", "1",
                             "--inference-dynamic-batching-buffer-size-gb", "0.25"] + flags
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [printed] handle in
            let data = handle.availableData
            printed.lock.withLock { printed.data += data }
        }
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        var found: Int?
        while found == nil, Date() < deadline, process.isRunning {
            Thread.sleep(forTimeInterval: 0.02)
            found = printed.text.firstMatch(of: /on http:\/\/127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) }
        }
        guard let found else {
            process.terminate()
            throw LoopbackHTTPClient.ClientError(description: "megatron serve did not start listening: \(printed.text)")
        }
        port = found
    }

    var output: String { printed.text }

    deinit { if process.isRunning { process.terminate() } }

    func call(_ method: String, _ path: String, _ json: String) throws -> LoopbackHTTPClient.Response {
        try LoopbackHTTPClient.exchange(port: port, method, path, body: Data(json.utf8))
    }

    /// GET /health's fields.
    func health() throws -> [String: Any] {
        let response = try LoopbackHTTPClient.exchange(port: port, "GET", "/health")
        return try JSONSerialization.jsonObject(with: response.body) as? [String: Any] ?? [:]
    }

    /// Polls /health until `condition` holds (or 30 s pass); returns the last answer.
    func waitForHealth(_ condition: ([String: Any]) -> Bool) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(30)
        var last = try health()
        while !condition(last), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
            last = try health()
        }
        return last
    }
}

func jsonObject(_ response: LoopbackHTTPClient.Response) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:]
}

/// A random-weight model with room for long generations (1024 positions, vocabulary 100), saved as
/// a checkpoint: long enough runs to hang up in the middle of, or to shut down under.
func longContextCheckpoint() throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString)").path
    var config = TransformerConfig(numLayers: 4, hiddenSize: 256, numAttentionHeads: 4, ffnHiddenSize: 1024,
                                   paddedVocabSize: TransformerConfig.paddedVocabSize(100, divisibleBy: 128), maxPositionEmbeddings: 1024)
    config.hiddenDropout = 0
    config.attentionDropout = 0
    let model = try GPTModel(config: config, seed: 5, on: CPUDevice(threads: 1))
    let progress = Checkpoint.Progress(iteration: 0, consumedTrainSamples: 0, consumedValidSamples: 0, optimizer: nil,
                                       optimizerStep: 0, scheduler: nil, model: config)
    try Checkpoint.save(to: URL(fileURLWithPath: directory), progress: progress, parameters: model.parameters.floats, optimizerState: [])
    return directory
}

@Suite(.serialized) struct ServeTests {
    /// Greedy answers of both APIs are transformers' greedy generate on the imported GPT-2 fixture,
    /// and `megatron generate`'s.
    @Test func greedyAnswersAreTransformersAndGenerate() throws {
        let directory = try GenerateTests.importedCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let expected = try SafeTensors.read(GenerateTests.fixture.appendingPathComponent("expected.safetensors")).tensors["greedy"]!
        let greedy = expected.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }.map(String.init)
        let server = try RunningServer(load: directory)
        let megatron = try server.call("PUT", "/api", #"{"prompts": ["5 17 99"], "tokens_to_generate": 6, "top_k": 1, "logprobs": true}"#)
        #expect(megatron.status == 200, "\(megatron.text)")
        let answer = jsonObject(megatron)
        #expect((answer["text"] as? [String]) == [greedy.joined(separator: " ")], "\(megatron.text) vs \(greedy)")
        #expect((answer["segments"] as? [[String]]) == [greedy])
        #expect(((answer["logprobs"] as? [[Double]])?.first?.count) == greedy.count - 1)
        let openAI = try server.call("POST", "/v1/completions", #"{"prompt": [5, 17, 99], "max_tokens": 6, "temperature": 0}"#)
        let choice = (jsonObject(openAI)["choices"] as? [[String: Any]])?.first
        #expect(openAI.status == 200 && choice?["text"] as? String == greedy.dropFirst(3).joined(separator: " "), "\(openAI.text)")
        #expect(choice?["finish_reason"] as? String == "length")
        let generated = try GenerateTests.generate(directory, prompt: "5 17 99")
        #expect(generated.output.trimmingCharacters(in: .whitespacesAndNewlines) == greedy.joined(separator: " "))
    }

    /// Sampling with a seed gives the same tokens every time, alone or in a batch with others:
    /// requests sent concurrently get what they get one at a time.
    @Test func seededAndBatchedAnswersAreOneAtATimeAnswers() throws {
        let directory = try longContextCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try RunningServer(load: directory)
        let bodies = (0 ..< 8).map { i in
            let prompt = (0 ... i + 2).map { String(($0 * 7 + i * 13) % 99) }.joined(separator: " ")
            let sampling = i % 2 == 0 ? #""top_k": 1"# : #""top_k": 0, "temperature": 0.9, "random_seed": \#(100 + i)"#
            return #"{"prompts": ["\#(prompt)"], "tokens_to_generate": \#(12 + 5 * i), \#(sampling), "logprobs": true}"#
        }
        let alone = try bodies.map { try server.call("PUT", "/api", $0) }
        #expect(alone.allSatisfy { $0.status == 200 })
        let again = try server.call("PUT", "/api", bodies[1])
        #expect(jsonObject(again)["text"] as? [String] == jsonObject(alone[1])["text"] as? [String])
        final class Answers: @unchecked Sendable {
            let lock = NSLock()
            var values = [LoopbackHTTPClient.Response?](repeating: nil, count: 8)
        }
        // A thread per request, so that all eight are in flight at once whatever the cores.
        let together = Answers(), answered = DispatchGroup()
        for i in 0 ..< 8 {
            answered.enter()
            Thread {
                let answer = try? server.call("PUT", "/api", bodies[i])
                together.lock.withLock { together.values[i] = answer }
                answered.leave()
            }.start()
        }
        answered.wait()
        for i in 0 ..< 8 {
            let x = jsonObject(alone[i]), y = together.values[i].map(jsonObject) ?? [:]
            #expect(x["text"] as? [String] == y["text"] as? [String], "request \(i)")
            let a = (x["logprobs"] as? [[Double]])?.first ?? [], b = (y["logprobs"] as? [[Double]])?.first ?? [.nan]
            #expect(a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 }, "request \(i)")
        }
        // Several prompts in one request are a batch too.
        let both = try server.call("PUT", "/api", #"{"prompts": ["1 2 3", "4 5"], "tokens_to_generate": 9, "top_k": 1}"#)
        let first = try server.call("PUT", "/api", #"{"prompts": ["1 2 3"], "tokens_to_generate": 9, "top_k": 1}"#)
        #expect((jsonObject(both)["text"] as? [String])?.first == (jsonObject(first)["text"] as? [String])?.first)
        let health = try server.waitForHealth { $0["pending_requests"] as? Int == 0 }
        #expect(health["free_blocks"] as? Int == health["total_blocks"] as? Int)
    }

    /// A client that hangs up mid-stream ends its request at the next token: its blocks return to
    /// the pool long before its 1000 tokens would have been generated.
    @Test func aClientGoneMidStreamFreesItsBlocks() throws {
        let directory = try longContextCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try RunningServer(load: directory)
        let client = try LoopbackHTTPClient(port: server.port)
        try client.send(LoopbackHTTPClient.request("POST", "/v1/completions",
                                                   body: Data(#"{"prompt": "1 2 3", "max_tokens": 1000, "stream": true, "temperature": 0}"#.utf8)))
        let (status, headers) = try client.readHead()
        #expect(status == 200 && headers["content-type"] == "text/event-stream")
        var received = ""
        try client.readBody(headers: headers) { data in
            received += String(decoding: data, as: UTF8.self)
            return !received.contains("\n\n")
        }
        #expect(received.hasPrefix("data: {"))
        client.close()
        let health: [String: Any]
        do { health = try server.waitForHealth { $0["pending_requests"] as? Int == 0 } } catch {
            Issue.record("\(error); the server printed: \(server.output); running: \(server.process.isRunning)")
            return
        }
        #expect(health["free_blocks"] as? Int == health["total_blocks"] as? Int, "\(health)")
        let generated = health["generated_tokens"] as? Int ?? 1000
        #expect(generated < 1000, "\(generated) tokens generated for a client that left after the first")
        #expect(try server.call("GET", "/health", "").status == 200)
    }

    /// SIGTERM during a request: the request is answered in full, then the server exits cleanly.
    @Test func sigtermFinishesRunningRequests() throws {
        let directory = try longContextCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try RunningServer(load: directory)
        final class Answer: @unchecked Sendable { var response: LoopbackHTTPClient.Response?; var error: Error? }
        let answer = Answer(), done = DispatchSemaphore(value: 0)
        Thread {
            do { answer.response = try server.call("PUT", "/api", #"{"prompts": ["1 2 3"], "tokens_to_generate": 800, "top_k": 1}"#) }
            catch { answer.error = error }
            done.signal()
        }.start()
        _ = try server.waitForHealth { $0["pending_requests"] as? Int == 1 }
        kill(server.process.processIdentifier, SIGTERM)
        done.wait()
        server.process.waitUntilExit()
        #expect(answer.error == nil && answer.response?.status == 200, "\(String(describing: answer.error))")
        let text = (answer.response.map(jsonObject)?["text"] as? [String])?.first ?? ""
        #expect(text.split(separator: " ").count == 803, "\(text.prefix(80))")
        #expect(server.process.terminationStatus == 0 && server.output.contains("> server stopped"), "\(server.output)")
    }

    /// Requests of 40 malformed kinds, each sent six times among valid ones: every bad one gets a
    /// 4xx naming what is wrong, every valid one a 200, and the server keeps serving.
    @Test func aBarrageOfBadRequestsGetsClientErrors() throws {
        let directory = try GenerateTests.importedCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try RunningServer(load: directory)
        let put = "PUT", post = "POST"
        let bad: [(String, String, String, String)] = [
            (put, "/api", "{", "not a JSON object"),
            (put, "/api", "[1, 2]", "not a JSON object"),
            (put, "/api", #"{"tokens_to_generate": 4}"#, "prompts argument required"),
            (put, "/api", #"{"prompts": "5 6"}"#, "prompts is not a list of strings"),
            (put, "/api", #"{"prompts": [5, 6]}"#, "prompts is not a list of strings"),
            (put, "/api", #"{"prompts": []}"#, "prompts is empty"),
            (put, "/api", #"{"prompts": [\#(Array(repeating: "\"5\"", count: 129).joined(separator: ","))]}"#, "Maximum number of prompts is 128"),
            (put, "/api", #"{"prompts": ["5"], "tokens_to_generate": "4"}"#, "tokens_to_generate must be an integer greater than 0"),
            (put, "/api", #"{"prompts": ["5"], "tokens_to_generate": -1}"#, "tokens_to_generate must be an integer greater than or equal to 0"),
            (put, "/api", #"{"prompts": ["5"], "logprobs": "yes"}"#, "logprobs must be a boolean value"),
            (put, "/api", #"{"prompts": ["5"], "tokens_to_generate": 0}"#, "tokens_to_generate=0 implies logprobs should be True"),
            (put, "/api", #"{"prompts": ["5"], "temperature": -1}"#, "temperature must be a positive number less than or equal to 100.0"),
            (put, "/api", #"{"prompts": ["5"], "temperature": 101}"#, "temperature must be a positive number less than or equal to 100.0"),
            (put, "/api", #"{"prompts": ["5"], "top_k": 1001}"#, "top_k must be equal to or greater than 0 and less than or equal to 1000"),
            (put, "/api", #"{"prompts": ["5"], "top_k": 1.5}"#, "top_k must be an integer"),
            (put, "/api", #"{"prompts": ["5"], "top_p": 1.5}"#, "top_p must be less than or equal to 1.0"),
            (put, "/api", #"{"prompts": ["5"], "top_k": 5, "top_p": 0.5}"#, "cannot set both top-k and top-p samplings."),
            (put, "/api", #"{"prompts": ["5"], "top_p_decay": 0.5}"#, "top_p_decay cannot be set without top_p"),
            (put, "/api", #"{"prompts": ["5"], "top_p": 0.5, "top_p_bound": 0.9}"#, "top_p_bound must be greater than 0 and less than top_p"),
            (put, "/api", #"{"prompts": ["5"], "add_BOS": "no"}"#, "add_BOS must be a boolean value"),
            (put, "/api", #"{"prompts": [""]}"#, "Empty prompts require add_BOS=true"),
            (put, "/api", #"{"prompts": ["5"], "random_seed": -5}"#, "random_seed must be a positive integer"),
            (put, "/api", #"{"prompts": ["5"], "colour": "red"}"#, #"unknown field \"colour\""#),
            (put, "/api", #"{"prompts": ["\#((0 ..< 20).map(String.init).joined(separator: " "))"], "tokens_to_generate": 1}"#,
             "Length of prompt + tokens_to_generate longer than allowed"),
            (put, "/api", #"{"prompts": ["5 100"]}"#, "is not a token id in 0 ..< 100"),
            (put, "/api", #"{"prompts": ["5"], "max_len": 4}"#, "max_len is no longer used"),
            (put, "/api", #"{"prompts": ["5"], "beam_width": 2}"#, "beam search is not implemented"),
            (post, "/v1/completions", #"{"max_tokens": 4}"#, "prompt: required"),
            (post, "/v1/completions", #"{"prompt": "5", "max_tokens": -1}"#, "max_tokens: -1 is negative"),
            (post, "/v1/completions", #"{"prompt": "5", "temperature": 3}"#, "temperature: 3.0 is outside 0 ... 2"),
            (post, "/v1/completions", #"{"prompt": "5", "n": 0}"#, "n: 0 is outside"),
            (post, "/v1/completions", #"{"prompt": "5", "logprobs": 6}"#, "logprobs: 6 is outside 0 ... 5"),
            (post, "/v1/completions", #"{"prompt": "5", "stop": ["a", "b", "c", "d", "e"]}"#, "stop: expected a string or up to 4 strings"),
            (post, "/v1/completions", #"{"prompt": "5 6 7 8 9 10 11 12", "max_tokens": 9}"#, "exceed the model's context of 16 tokens"),
            (post, "/v1/completions", #"{"prompt": "5", "best_of": 3}"#, "best_of"),
            (post, "/v1/completions", #"{"prompt": "5", "stream": "yes"}"#, "stream: expected true or false"),
            (post, "/v1/completions", #"{"prompt": []}"#, "prompt: the list is empty"),
            (post, "/v1/completions", #"{"prompt": [5, 100]}"#, "expected token ids 0 ..< 100"),
            (post, "/v1/completions", #"{"prompt": "5", "presence_penalty": 0.5}"#, "presence_penalty: not implemented"),
            (post, "/v1/completions", #"{"prompt": "\#(String(repeating: "5 ", count: 600_000))"}"#, "exceeds 1048576 bytes"),
        ]
        var answered = 0
        for round in 0 ..< 6 {
            for (method, path, body, message) in bad {
                let response = try server.call(method, path, body)
                answered += 1
                #expect((400 ..< 500).contains(response.status) && response.text.contains(message),
                        "\(method) \(path) \(body.prefix(80)): \(response.status) \(response.text.prefix(300))")
            }
            for (method, path) in [("GET", "/api"), ("POST", "/nowhere")] {
                #expect(try server.call(method, path, "{}").status == 404)
                answered += 1
            }
            let valid = try server.call(put, "/api", #"{"prompts": ["5 6"], "tokens_to_generate": 3, "random_seed": \#(round)}"#)
            #expect(valid.status == 200, "\(valid.text)")
            answered += 1
        }
        #expect(answered == 6 * (bad.count + 3) && answered >= 200)
        let health = try server.health()
        #expect(server.process.isRunning && health["status"] as? String == "ok")
    }

    /// OpenAI streaming ends with [DONE]; stop strings cut the text; n choices come back; echo
    /// prepends the prompt, with the prompt's log-probabilities.
    @Test func openAICompletionsStreamStopAndEcho() throws {
        let directory = try GenerateTests.importedCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try RunningServer(load: directory)
        let plain = try server.call("POST", "/v1/completions", #"{"prompt": "5 17 99", "max_tokens": 6, "temperature": 0}"#)
        let text = (jsonObject(plain)["choices"] as? [[String: Any]])?.first?["text"] as? String ?? ""
        let streamed = try server.call("POST", "/v1/completions", #"{"prompt": "5 17 99", "max_tokens": 6, "temperature": 0, "stream": true}"#)
        let events = streamed.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(events.last == "data: [DONE]")
        let pieces = events.dropLast().compactMap { event -> String? in
            let json = try? JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any]
            return (json?["choices"] as? [[String: Any]])?.first?["text"] as? String
        }
        #expect(pieces.joined() == text && !text.isEmpty, "\(streamed.text)")
        let words = text.split(separator: " ")
        let stop = try server.call("POST", "/v1/completions",
                                   #"{"prompt": "5 17 99", "max_tokens": 6, "temperature": 0, "stop": [" \#(words[1])"]}"#)
        let stopped = (jsonObject(stop)["choices"] as? [[String: Any]])?.first
        #expect(stopped?["text"] as? String == String(words[0]) && stopped?["finish_reason"] as? String == "stop", "\(stop.text)")
        let echo = try server.call("POST", "/v1/completions",
                                   #"{"prompt": "5 17 99", "max_tokens": 2, "n": 3, "temperature": 0, "echo": true, "logprobs": 1}"#)
        let choices = jsonObject(echo)["choices"] as? [[String: Any]] ?? []
        #expect(choices.count == 3 && choices.allSatisfy { ($0["text"] as? String)?.hasPrefix("5 17 99") == true }, "\(echo.text)")
        let logprobs = choices.first?["logprobs"] as? [String: Any]
        #expect((logprobs?["tokens"] as? [String]) == ["5", "17", "99"] + words.prefix(2).map(String.init))
        #expect((logprobs?["token_logprobs"] as? [Any])?.count == 5 && (logprobs?["token_logprobs"] as? [Any])?.first is NSNull)
    }
}
