import Foundation
import Hummingbird
import Logging
import MegatronData
import MegatronModels
import NIOCore
import ServiceLifecycle

/// `megatron serve`: Megatron's text generation API (`PUT /api`), OpenAI's completions API
/// (`POST /v1/completions`, streamed as server-sent events when asked) and `GET /health`, over one
/// continuously batched engine. SIGTERM or SIGINT shuts it down gracefully: no new connections, the
/// running responses finished, then the engine stopped.
public struct TextGenerationServer: Sendable {
    public struct Settings: Sendable {
        public var host: String
        public var port: Int
        /// The name the OpenAI API answers with when a request names none.
        public var modelName: String
        public var maxBodyBytes: Int

        public init(host: String = "127.0.0.1", port: Int = 5000, modelName: String = "megatron", maxBodyBytes: Int = 1 << 20) {
            self.host = host
            self.port = port
            self.modelName = modelName
            self.maxBodyBytes = maxBodyBytes
        }
    }

    let engine: ServingEngine
    let tokenizer: any TextTokenizer
    let settings: Settings

    public init(engine: DynamicInferenceEngine, tokenizer: any TextTokenizer, settings: Settings) {
        self.engine = ServingEngine(engine)
        self.tokenizer = tokenizer
        self.settings = settings
    }

    /// Serves until SIGTERM or SIGINT, or until `shutdown` returns (then shuts down as gracefully);
    /// `onListening` gets the bound address (the port chosen when 0 was asked for).
    public func run(shutdown: (@Sendable () async -> Void)? = nil, onListening: @escaping @Sendable (String, Int) -> Void) async throws {
        var logger = Logger(label: "megatron-serve")
        logger.logLevel = .warning
        let app = Application(router: router(), configuration: .init(address: .hostname(settings.host, port: settings.port)),
                              onServerRunning: { [settings] channel in onListening(settings.host, channel.localAddress?.port ?? settings.port) },
                              logger: logger)
        // Shut down in reverse order: the HTTP server finishes its responses while the engine still runs.
        let group = ServiceGroup(configuration: .init(services: [engine, app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            if let shutdown {
                tasks.addTask {
                    await shutdown()
                    await group.triggerGracefulShutdown()
                }
            }
            try await tasks.waitForAll()
        }
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let megatron = MegatronGenerateAPI(tokenizer: tokenizer, maxSequenceLength: engine.engine.maxSequenceLength)
        let completions = CompletionsAPI(tokenizer: tokenizer, maxSequenceLength: engine.engine.maxSequenceLength,
                                         modelName: settings.modelName)
        let engine = engine, tokenizer = tokenizer, maxBodyBytes = settings.maxBodyBytes, modelName = settings.modelName
        router.get("/health") { _, _ in
            let status = engine.engine.status
            return Self.json(.ok, .object(["status": .string("ok"), "model": .string(modelName),
                                           "pending_requests": .int(status.pendingRequests), "free_blocks": .int(status.freeBlocks),
                                           "generated_tokens": .int(status.generatedTokens),
                                           "total_blocks": .int(engine.engine.cache.blockCount)]))
        }
        // A client that hangs up cancels its requests: while the answer is computed, by the inbound
        // stream closing; while it is streamed, by the failing write of its next token.
        router.put("/api") { request, _ -> Response in
            try await request.body.consumeWithCancellationOnInboundClose { body in
                let parsed: MegatronGenerateAPI.Parsed
                do {
                    parsed = try megatron.parse(try await Self.json(body, upTo: maxBodyBytes), seed: Self.randomSeed())
                } catch let error as APIError {
                    return Self.json(.init(code: error.status), .object(["message": .string(error.description)]))
                }
                if parsed.log {
                    let line = "> PUT /api: \(parsed.requests.count) prompt(s), \(parsed.requests[0].sampling.numTokensToGenerate) tokens each\n"
                    FileHandle.standardOutput.write(Data(line.utf8))
                }
                return Self.json(.ok, megatron.respond(try await engine.results(parsed.requests), logprobs: parsed.logprobs))
            }
        }
        router.post("/v1/completions") { request, _ -> Response in
            try await request.body.consumeWithCancellationOnInboundClose { body in
                let parsed: CompletionsAPI.Parsed
                do {
                    parsed = try completions.parse(try await Self.json(body, upTo: maxBodyBytes), seed: Self.randomSeed())
                } catch let error as APIError {
                    return Self.json(.init(code: error.status), .object(["error": .object([
                        "message": .string(error.description), "type": .string("invalid_request_error"), "param": .null, "code": .null,
                    ])]))
                }
                let run = CompletionRun(parsed: parsed, tokenizer: tokenizer)
                guard parsed.stream else { return Self.json(.ok, try await run.complete(on: engine) { _ in }) }
                return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                                body: ResponseBody { writer in
                                    _ = try await run.complete(on: engine) { chunk in
                                        try await writer.write(ByteBuffer(string: "data: \(chunk.text)\n\n"))
                                    }
                                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                                    try await writer.finish(nil)
                                })
            }
        }
        return router
    }

    /// The request's body as JSON (nil when it is not JSON); a body past the limit is a 413.
    static func json(_ body: RequestBody, upTo limit: Int) async throws -> JSONValue? {
        do {
            return JSONValue.parse(Data(buffer: try await body.collect(upTo: limit)))
        } catch is NIOTooManyBytesError {
            throw APIError("the request body exceeds \(limit) bytes", status: 413)
        }
    }

    static func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: value.text)))
    }

    /// A seed for a request that names none.
    static func randomSeed() -> UInt64 { UInt64.random(in: 0 ... UInt64(UInt32.max)) }
}
