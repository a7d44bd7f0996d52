import ArgumentParser
import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining

/// `megatron import-hf`: a Hugging Face model directory (GPT-2 or the Llama family) as a checkpoint
/// `pretrain --load` starts from.
struct ImportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-hf",
        abstract: "Convert a Hugging Face GPT-2, Llama, Mistral or Qwen2 model (config.json, model.safetensors or its shards) "
            + "into a checkpoint at iteration 0.",
        discussion: "Training from it (megatron pretrain --load DIR with the printed flags) starts a fresh optimizer.")

    @Option(name: .customLong("hf-dir"), help: "The Hugging Face model directory (save_pretrained's).")
    var hfDir: String
    @Option(name: .customLong("save"), help: "The checkpoint directory to write.") var save: String
    @Option(name: .customLong("make-vocab-size-divisible-by"), help: "Pad the vocabulary to a multiple of this, as pretrain will.")
    var makeVocabSizeDivisibleBy = 128

    func validate() throws {
        guard makeVocabSizeDivisibleBy >= 1 else {
            throw ValidationError("--make-vocab-size-divisible-by \(makeVocabSizeDivisibleBy): expected a positive integer")
        }
    }

    func run() throws {
        let source = URL(fileURLWithPath: hfDir)
        let modelType = try HuggingFaceGPT2.modelType(source)
        let (config, vocabSize, flags): (TransformerConfig, Int, String)
        if modelType == "gpt2" {
            let hf = try HuggingFaceGPT2.readConfig(source)
            (config, vocabSize, flags) = (try hf.gptConfig(makeVocabSizeDivisibleBy: makeVocabSizeDivisibleBy), hf.vocabSize, hf.flags)
        } else {
            let hf = try HuggingFaceLlama.readConfig(source)
            (config, vocabSize, flags) = (try hf.gptConfig(makeVocabSizeDivisibleBy: makeVocabSizeDivisibleBy), hf.vocabSize, hf.flags)
        }
        let parameters = UnsafeMutablePointer<Float>.allocate(capacity: ParameterLayout(config).totalCount)
        defer { parameters.deallocate() }
        if modelType == "gpt2" {
            try HuggingFaceGPT2.importWeights(from: source, config: config, into: parameters)
        } else {
            try HuggingFaceLlama.importWeights(from: source, config: config, into: parameters)
        }
        let progress = Checkpoint.Progress(iteration: 0, consumedTrainSamples: 0, consumedValidSamples: 0, optimizer: nil,
                                           optimizerStep: 0, scheduler: nil, model: config)
        try Checkpoint.save(to: URL(fileURLWithPath: save), progress: progress, parameters: parameters, optimizerState: [])
        print("> imported \(hfDir) (\(modelType), \(ParameterLayout(config).totalCount) parameters, vocabulary \(vocabSize) padded to "
              + "\(config.paddedVocabSize)) as \(Checkpoint.iterationDirectory(URL(fileURLWithPath: save), iteration: 0).path)")
        print("> train from it: megatron pretrain --load \(save) \(flags) --make-vocab-size-divisible-by "
              + "\(makeVocabSizeDivisibleBy) (and the model's tokenizer, or --vocab-size \(vocabSize)) …")
    }
}

/// `megatron export-hf`: the latest checkpoint of a directory as a Hugging Face model directory.
struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Write the latest checkpoint in --load as a Hugging Face GPT-2, Llama, Mistral or Qwen2 model "
            + "(config.json, model.safetensors).")

    @Option(name: .customLong("load"), help: "The checkpoint directory.") var load: String
    @Option(name: .customLong("hf-dir"), help: "The Hugging Face model directory to write.") var hfDir: String
    @Option(name: .customLong("vocab-size"), help: "The tokenizer's vocabulary (50257 for GPT-2's); the padding rows beyond it are dropped.")
    var vocabSize: Int
    @Option(name: .customLong("hf-model-type"),
             help: "gpt2, llama, mistral or qwen2 (default: gpt2 for learned positions, qwen2 for biases on QKV only, else llama).")
    var hfModelType: String?

    func validate() throws {
        guard hfModelType.map({ $0 == "gpt2" || HuggingFaceLlama.Family(rawValue: $0) != nil }) ?? true else {
            throw ValidationError("--hf-model-type \(hfModelType!): expected gpt2, llama, mistral or qwen2")
        }
    }

    func run() throws {
        let directory = URL(fileURLWithPath: load)
        guard let iteration = try Checkpoint.latestIteration(in: directory) else {
            throw ValidationError("--load \(load): no checkpoint there (no latest_checkpointed_iteration.txt)")
        }
        let config = try Checkpoint.progress(in: directory, iteration: iteration).model
        let layout = ParameterLayout(config)
        let parameters = try Tensor(shape: [layout.totalCount], on: CPUDevice(threads: 1), zeroed: false)
        try Checkpoint.readParameters(from: directory, iteration: iteration, layout: layout, into: parameters)
        let modelType = hfModelType ?? (config.positionEmbedding == .learnedAbsolute ? "gpt2" : HuggingFaceLlama.family(of: config).rawValue)
        try withExtendedLifetime(parameters) {
            if let family = HuggingFaceLlama.Family(rawValue: modelType) {
                try HuggingFaceLlama.exportWeights(parameters.floats, config: config, family: family, vocabSize: vocabSize, to: URL(fileURLWithPath: hfDir))
            } else {
                try HuggingFaceGPT2.exportWeights(parameters.floats, config: config, vocabSize: vocabSize, to: URL(fileURLWithPath: hfDir))
            }
        }
        print("> exported \(Checkpoint.iterationDirectory(directory, iteration: iteration).path) to \(hfDir) as \(modelType)")
    }
}
