import ArgumentParser
import Foundation
import MegatronCommandLine
import MegatronCore
import MegatronData
import MegatronModels
import MegatronServing
import ServingClient

/// `megatron-bench serve`: generation speed of a GPT-2-shaped model, fp32. Batch-1 decode through
/// the inference engine against the memory-bandwidth bound of reading every weight once per token
/// (measured read bandwidth) and against PyTorch eager with a key/value cache
/// (shared/bench/torch_gpt_bench.py generate, run here in the same invocation when PyTorch is found);
/// then `megatron serve`'s HTTP server in this process under 1, 4, 16 … concurrent streaming
/// clients on loopback (bounded in requests and time): aggregate tokens/s and the latency per token.
struct BenchServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Decode tokens/s (batch 1, vs bandwidth bound and PyTorch) and served tokens/s under concurrent clients.")

    @OptionGroup var device: DeviceOptions
    @Option(help: "tiny (L4 h256 s256), small (L6 h512 s512) or 124m (L12 h768 s1024); vocab 50304.") var config = "124m"
    @Option(name: .customLong("new-tokens"), help: "Tokens generated per batch-1 decode run (after a 1-token prompt).") var newTokens = 128
    @Option(help: "Batch-1 decode runs (the median is reported).") var repeats = 3
    @Option(help: "Concurrent streaming clients of each load run.") var clients: [Int] = [1, 4, 16]
    @Option(name: .customLong("requests-per-client"), help: "Requests each client sends in a load run.") var requestsPerClient = 2
    @Option(name: .customLong("max-tokens"), help: "Tokens per load request.") var maxTokens = 64
    @Option(name: .customLong("prompt-tokens"), help: "Prompt tokens per load request.") var promptTokens = 16
    @Option(name: .customLong("time-limit"), help: "Seconds after which a load run's clients send no new request.") var timeLimit = 120.0
    @Option(name: .customLong("torch-python"), help: "Python with PyTorch (default: /tmp/torch-venv/bin/python when present).")
    var torchPython: String?
    @Option(name: .customLong("torch-bench"), help: "The reference benchmark script.") var torchBench = "../shared/bench/torch_gpt_bench.py"
    @Flag(help: "Only profile the engine's decode steps at batch 1, 4 and 16 (where a step's time goes), then stop.") var profile = false

    func validate() throws {
        guard newTokens >= 2, repeats >= 1, requestsPerClient >= 1, maxTokens >= 1, promptTokens >= 1 else {
            throw ValidationError("--new-tokens must be at least 2; --repeats, --requests-per-client, --max-tokens, --prompt-tokens at least 1")
        }
        guard !clients.isEmpty, clients.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--clients: expected counts of at least 1") }
    }

    func run() async throws {
        let (config, _) = try BenchGPT.benchmarkModel(self.config)
        let device = try self.device.makeDevice()
        let model = try GPTModel(config: config, seed: 1, on: device)
        let vocabulary = 50257
        let weightBytes = 4 * (ParameterLayout(config).totalCount - config.maxPositionEmbeddings * config.hiddenSize)
        let bandwidth = try Self.readBandwidth(on: device)
        print("model \(self.config): \(ParameterLayout(config).totalCount) parameters, fp32, \(device.threads) threads; "
              + "weights read per token \(fixed(Double(weightBytes) / 1e6, 1)) MB")
        print("memory read bandwidth (best of 5 passes over 1 GiB): \(fixed(bandwidth / 1e9, 1)) GB/s "
              + "→ bound \(fixed(bandwidth / Double(weightBytes), 1)) tokens/s at batch 1")

        if profile {
            try profileSteps(config)
            return
        }
        let decode = try (0 ..< repeats).map { _ in try decodeTokensPerSecond(model, vocabulary: vocabulary) }.sorted()[repeats / 2]
        print("batch-1 decode, engine: \(fixed(decode, 1)) tokens/s (median of \(repeats); 1-token prompt, \(newTokens) new) = "
              + "\(fixed(100 * decode * Double(weightBytes) / bandwidth, 1)) % of the bandwidth bound")
        if let torch = try torchDecode(threads: device.threads) {
            print("batch-1 decode, PyTorch eager with KV cache: \(fixed(torch, 1)) tokens/s (best of default and tuned malloc) "
                  + "→ ours \(fixed(decode / torch, 2))×")
        } else {
            print("batch-1 decode, PyTorch: skipped (no Python with torch at --torch-python, or no \(torchBench))")
        }

        let cache = try PagedKeyValueCache(for: model, blockSize: 16, blockCount: (1 << 30) / PagedKeyValueCache.bytesPerBlock(config, blockSize: 16))
        let engine = try DynamicInferenceEngine(model: model, cache: cache, vocabularySize: vocabulary)
        let server = TextGenerationServer(engine: engine, tokenizer: try NullTokenizer(vocabSize: vocabulary), settings: .init(port: 0))
        let (listening, announce) = AsyncStream<Int>.makeStream()
        let (stop, finish) = AsyncStream<Void>.makeStream()
        async let served: Void = server.run(shutdown: { for await _ in stop {} }) { _, port in announce.yield(port) }
        var iterator = listening.makeAsyncIterator()
        guard let port = await iterator.next() else { throw ValidationError("the server did not start") }
        print("served over HTTP on loopback (streamed /v1/completions, \(promptTokens)-token prompts, \(maxTokens) tokens each, greedy):")
        print("  clients  requests  tokens   seconds  tokens/s  per-token latency p50 / p99 ms  first token p50 ms")
        for count in clients {
            let load = LoadRun(port: port, clients: count, requestsPerClient: requestsPerClient, promptTokens: promptTokens,
                               maxTokens: maxTokens, vocabulary: vocabulary, timeLimit: timeLimit).run()
            print("  \(pad(count, 7))  \(pad(load.requests, 8))  \(pad(load.tokens, 6))  \(pad(fixed(load.seconds, 2), 8))  "
                  + "\(pad(fixed(Double(load.tokens) / load.seconds, 1), 8))  \(pad(fixed(load.percentile(0.5) * 1e3, 1), 14)) / "
                  + "\(pad(fixed(load.percentile(0.99) * 1e3, 1), 6))  \(pad(fixed(load.firstTokenMedian * 1e3, 1), 18))"
                  + (load.errors > 0 ? "  (\(load.errors) failed)" : ""))
        }
        finish.finish()
        try await served
        print("peak RSS \(fixed(Double(peakResidentBytes()) / Double(1 << 30), 2)) GiB")
    }

    /// Where decode steps' time goes at batch 1, 4 and 16 (the engine in this thread, a kernel timer on the device).
    private func profileSteps(_ config: TransformerConfig) throws {
        let timer = KernelTimer()
        let device = try self.device.makeDevice(timer: timer)
        let model = try GPTModel(config: config, seed: 1, on: device)
        for batch in [1, 4, 16] {
            let engine = try DynamicInferenceEngine.single(model: model, vocabularySize: 50257, positions: batch * (16 + newTokens))
            let requests = (0 ..< batch).map { i in InferenceRequest(prompt: (0 ..< 16).map { Int32(($0 * 31 + i * 7) % 50000) }, sampling: .greedy(newTokens)) }
            for request in requests { try engine.add(request) { _ in } }
            engine.step()  // the prefill
            timer.reset()
            let start = Timing.now()
            var steps = 0
            while engine.step() { steps += 1 }
            let seconds = Timing.now() - start
            print("batch \(batch): \(steps) decode steps, \(fixed(seconds / Double(steps) * 1e3, 1)) ms per step, "
                  + "\(fixed(Double(batch * steps) / seconds, 1)) tokens/s")
            print(BenchGPT.profileTable(timer.snapshot, stepSeconds: seconds, steps: steps))
        }
    }

    /// Decode tokens/s of one request (1-token prompt): the tokens after the first over the time from the first to the last.
    private func decodeTokensPerSecond(_ model: GPTModel, vocabulary: Int) throws -> Double {
        let engine = try DynamicInferenceEngine.single(model: model, vocabularySize: vocabulary, positions: 1 + newTokens)
        final class Times: @unchecked Sendable { var values: [Double] = [] }
        let times = Times()
        try engine.add(InferenceRequest(prompt: [464], sampling: .greedy(newTokens))) { event in
            if case .token = event { times.values.append(Timing.now()) }
        }
        while engine.step() {}
        return Double(newTokens - 1) / (times.values.last! - times.values.first!)
    }

    /// PyTorch's batch-1 decode tokens/s from the reference script, best of the default and the tuned allocator.
    private func torchDecode(threads: Int) throws -> Double? {
        let python = torchPython ?? "/tmp/torch-venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python), FileManager.default.fileExists(atPath: torchBench) else { return nil }
        var best: Double?
        for tuned in [false, true] {
            let process = Process(), pipe = Pipe()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [torchBench, "generate", "--config", config, "--new", String(newTokens), "--kv", "1", "--prompt", "1",
                                 "--threads", String(threads), "--reps", String(repeats)]
            var environment = ProcessInfo.processInfo.environment
            environment["OMP_NUM_THREADS"] = String(threads)
            if tuned { environment["GLIBC_TUNABLES"] = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736" }
            process.environment = environment
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("RESULT ") }),
                  let json = try JSONSerialization.jsonObject(with: Data(line.dropFirst(7).utf8)) as? [String: Any],
                  let value = (json["decode_tokens_per_s"] as? NSNumber)?.doubleValue else { continue }
            best = max(best ?? 0, value)
        }
        return best
    }

    /// Bytes per second of summing 1 GiB of floats, best of 5 passes, on the device's threads.
    static func readBandwidth(on device: CPUDevice) throws -> Double {
        let count = 1 << 28
        let buffer = try Tensor(shape: [count], on: device)
        let sums = try Tensor(shape: [device.threads * 16], on: device)
        let passes = Timing.measure(repeats: 5) {
            device.parallelFor(count / 64, minimumPerTask: 1 << 14) { blocks, task in
                var a = SIMD16<Float>(), b = SIMD16<Float>(), c = SIMD16<Float>(), d = SIMD16<Float>()
                let base = UnsafeRawPointer(buffer.floats)
                for block in blocks {
                    let p = base + block * 256
                    a += p.load(as: SIMD16<Float>.self)
                    b += p.load(fromByteOffset: 64, as: SIMD16<Float>.self)
                    c += p.load(fromByteOffset: 128, as: SIMD16<Float>.self)
                    d += p.load(fromByteOffset: 192, as: SIMD16<Float>.self)
                }
                sums.floats[task * 16] = (a + b + c + d).sum()
            }
        }
        return Double(count * 4) / passes.best
    }
}

private func pad(_ value: Any, _ width: Int) -> String {
    let text = "\(value)"
    return String(repeating: " ", count: max(0, width - text.count)) + text
}

/// One load run: `clients` threads, each sending streamed completions one after another, recording
/// when each token's chunk arrives.
struct LoadRun {
    let port: Int, clients: Int, requestsPerClient: Int, promptTokens: Int, maxTokens: Int, vocabulary: Int, timeLimit: Double

    struct Result {
        var requests = 0, tokens = 0, errors = 0
        var seconds = 0.0
        /// Gaps between consecutive tokens of a response, sorted.
        var gaps: [Double] = []
        var firstTokens: [Double] = []

        func percentile(_ p: Double) -> Double { gaps.isEmpty ? .nan : gaps[min(gaps.count - 1, Int(p * Double(gaps.count)))] }
        var firstTokenMedian: Double { firstTokens.isEmpty ? .nan : firstTokens.sorted()[firstTokens.count / 2] }
    }

    func run() -> Result {
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var result = Result()
        }
        let shared = Shared(), start = Timing.now()
        // A thread per client: concurrentPerform would run only as many clients at once as there are cores.
        let finished = DispatchGroup()
        for client in 0 ..< clients {
            finished.enter()
            Thread { defer { finished.leave() }; oneClient(client) }.start()
        }
        finished.wait()
        var result = shared.result
        result.seconds = Timing.now() - start
        result.gaps.sort()
        return result

        @Sendable func oneClient(_ client: Int) {
            var state = UInt64(client + 1) &* 0x9E37_79B9_7F4A_7C15
            for _ in 0 ..< requestsPerClient where Timing.now() - start < timeLimit {
                let prompt = (0 ..< promptTokens).map { _ -> String in
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    return String((state >> 33) % UInt64(vocabulary - 1))
                }
                let body = #"{"prompt": [\#(prompt.joined(separator: ","))], "max_tokens": \#(maxTokens), "temperature": 0, "stream": true}"#
                let sent = Timing.now()
                var arrivals: [Double] = [], received = ""
                do {
                    let connection = try LoopbackHTTPClient(port: port)
                    try connection.send(LoopbackHTTPClient.request("POST", "/v1/completions", body: Data(body.utf8)))
                    let (status, headers) = try connection.readHead()
                    guard status == 200 else { throw LoopbackHTTPClient.ClientError(description: "status \(status)") }
                    try connection.readBody(headers: headers) { data in
                        received += String(decoding: data, as: UTF8.self)
                        while let end = received.range(of: "\n\n") {
                            let event = received[..<end.lowerBound]
                            if event.contains(#""finish_reason":null"#) { arrivals.append(Timing.now()) }
                            received.removeSubrange(..<end.upperBound)
                        }
                        return true
                    }
                } catch {
                    shared.lock.withLock { shared.result.errors += 1 }
                    continue
                }
                shared.lock.withLock {
                    shared.result.requests += 1
                    shared.result.tokens += arrivals.count
                    if let first = arrivals.first { shared.result.firstTokens.append(first - sent) }
                    shared.result.gaps += zip(arrivals.dropFirst(), arrivals).map { $0 - $1 }
                }
            }
        }
    }
}
