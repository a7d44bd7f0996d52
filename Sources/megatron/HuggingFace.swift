import ArgumentParser
import Foundation
import MegatronModels
import MegatronTraining

/// `megatron import-hf`: a Hugging Face GPT-2 model directory as a checkpoint `pretrain --load` starts from.
struct ImportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-hf",
        abstract: "Convert a Hugging Face GPT-2 model (config.json, model.safetensors) into a checkpoint at iteration 0.",
        discussion: "Training from it (megatron pretrain --load DIR with the printed flags) starts a fresh optimizer.")

    @Option(name: .customLong("hf-dir"), help: "The Hugging Face model directory (GPT2LMHeadModel.save_pretrained).")
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
        let hf = try HuggingFaceGPT2.readConfig(source)
        let config = try hf.gptConfig(makeVocabSizeDivisibleBy: makeVocabSizeDivisibleBy)
        let parameters = UnsafeMutablePointer<Float>.allocate(capacity: ParameterLayout(config).totalCount)
        defer { parameters.deallocate() }
        try HuggingFaceGPT2.importWeights(from: source, config: config, into: parameters)
        let progress = Checkpoint.Progress(iteration: 0, consumedTrainSamples: 0, consumedValidSamples: 0, optimizer: nil,
                                           optimizerStep: 0, scheduler: nil, model: config)
        try Checkpoint.save(to: URL(fileURLWithPath: save), progress: progress, parameters: parameters, optimizerState: [])
        print("> imported \(hfDir) (\(ParameterLayout(config).totalCount) parameters, vocabulary \(hf.vocabSize) padded to "
              + "\(config.paddedVocabSize)) as \(Checkpoint.iterationDirectory(URL(fileURLWithPath: save), iteration: 0).path)")
        print("> train from it: megatron pretrain --load \(save) \(hf.flags) --make-vocab-size-divisible-by "
              + "\(makeVocabSizeDivisibleBy) (and GPT-2's tokenizer, or --vocab-size \(hf.vocabSize)) …")
    }
}

/// `megatron export-hf`: the latest checkpoint of a directory as a Hugging Face GPT-2 model directory.
struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Write the latest checkpoint in --load as a Hugging Face GPT-2 model (config.json, model.safetensors).")

    @Option(name: .customLong("load"), help: "The checkpoint directory.") var load: String
    @Option(name: .customLong("hf-dir"), help: "The Hugging Face model directory to write.") var hfDir: String
    @Option(name: .customLong("vocab-size"), help: "The tokenizer's vocabulary (50257 for GPT-2's); the padding rows beyond it are dropped.")
    var vocabSize: Int

    func run() throws {
        let directory = URL(fileURLWithPath: load)
        guard let iteration = try Checkpoint.latestIteration(in: directory) else {
            throw ValidationError("--load \(load): no checkpoint there (no latest_checkpointed_iteration.txt)")
        }
        let config = try Checkpoint.progress(in: directory, iteration: iteration).model
        let layout = ParameterLayout(config)
        let parameters = UnsafeMutablePointer<Float>.allocate(capacity: layout.totalCount)
        defer { parameters.deallocate() }
        try Checkpoint.readParameters(from: directory, iteration: iteration, layout: layout, into: parameters)
        try HuggingFaceGPT2.exportWeights(parameters, config: config, vocabSize: vocabSize, to: URL(fileURLWithPath: hfDir))
        print("> exported \(Checkpoint.iterationDirectory(directory, iteration: iteration).path) to \(hfDir)")
    }
}
