import ArgumentParser
import Foundation
import MegatronCommandLine
import MegatronCore
import MegatronModels
import MegatronServing
import MegatronTraining

/// `megatron serve`: the model of the latest checkpoint in --load behind Megatron's text generation
/// API (PUT /api), OpenAI's completions API (POST /v1/completions) and GET /health, its requests
/// continuously batched over a paged key/value cache.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model of a checkpoint over HTTP: Megatron's PUT /api, OpenAI's POST /v1/completions, GET /health.",
        discussion: "SIGTERM or SIGINT stops taking connections, finishes the running requests, and exits.")

    @Option(name: .customLong("load"), help: "The checkpoint directory (its latest checkpoint is served).") var load: String
    @Option(name: .customLong("host"), help: "The address to listen on.") var host = "127.0.0.1"
    @Option(name: .customLong("port"), help: "The port to listen on (0: any free port, printed when listening).") var port = 5000
    @Option(name: .customLong("served-model-name"), help: "The model name the OpenAI API reports (ours; default: the --load directory's name).")
    var servedModelName: String?
    @Option(name: .customLong("inference-max-requests"), help: "Requests running in one batch at most; more wait.")
    var inferenceMaxRequests = 64
    @Option(name: .customLong("inference-max-tokens-per-step"),
            help: "Prompt tokens a step prefills at most (a longer prompt runs alone in its step) (ours).")
    var inferenceMaxTokensPerStep = 2048
    @Option(name: .customLong("inference-dynamic-batching-block-size"), help: "Positions per block of the paged key/value cache.")
    var blockSize = 16
    @Option(name: .customLong("inference-dynamic-batching-buffer-size-gb"), help: "GiB of memory for the paged key/value cache.")
    var bufferSizeGB = 1.0
    @OptionGroup var tokenizerOptions: TokenizerOptions
    @OptionGroup(title: "Device") var device: DeviceOptions

    func validate() throws {
        guard (0 ... 65535).contains(port) else { throw ValidationError("--port \(port): expected 0 ... 65535") }
        guard blockSize >= 1 else { throw ValidationError("--inference-dynamic-batching-block-size \(blockSize): expected at least 1") }
        guard bufferSizeGB > 0 else { throw ValidationError("--inference-dynamic-batching-buffer-size-gb \(bufferSizeGB): expected more than 0") }
    }

    func run() async throws {
        let directory = URL(fileURLWithPath: load)
        let (model, iteration) = try GPTModel.latestCheckpoint(in: directory, on: device.makeDevice())
        let tokenizer = try tokenizerOptions.makeTokenizer()
        let config = model.config
        let blockCount = Int(bufferSizeGB * Double(1 << 30)) / PagedKeyValueCache.bytesPerBlock(config, blockSize: blockSize)
        let wholeContext = (config.maxPositionEmbeddings + blockSize - 1) / blockSize
        guard blockCount >= wholeContext else {
            throw ConfigError(flag: "--inference-dynamic-batching-buffer-size-gb",
                              "--inference-dynamic-batching-buffer-size-gb \(bufferSizeGB) holds \(blockCount) blocks; one sequence of the "
                              + "model's \(config.maxPositionEmbeddings) positions needs \(wholeContext)")
        }
        let cache = try PagedKeyValueCache(for: model, blockSize: blockSize, blockCount: blockCount)
        let engine = try DynamicInferenceEngine(model: model, cache: cache, vocabularySize: tokenizer.vocabSize,
                                                maxRequests: inferenceMaxRequests, maxTokensPerStep: inferenceMaxTokensPerStep)
        let name = servedModelName ?? directory.standardizedFileURL.lastPathComponent
        let server = TextGenerationServer(engine: engine, tokenizer: tokenizer, settings: .init(host: host, port: port, modelName: name))
        try await server.run { host, port in
            print("> serving \(load) (iteration \(iteration), \(ParameterLayout(config).totalCount) parameters, key/value cache of "
                  + "\(blockCount) blocks × \(blockSize) positions) on http://\(host):\(port)")
            fflush(nil)
        }
        print("> server stopped")
    }
}
