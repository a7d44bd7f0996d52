import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining

/// Runs a `PretrainPlan` on every rank of its world: each builds its part of the model, its data
/// parallelism, optimizer and share of the data, trains, and the first rank prints a sample.
public struct Pretraining: Sendable {
    public let plan: PretrainPlan
    /// The flags that say how to launch the ranks and what to log; the plan holds the rest.
    public let options: PretrainOptions
    /// Text in and out with a text tokenizer; NullTokenizer runs print token ids (nil).
    public let tokenizer: (any TextTokenizer)?

    public init(plan: PretrainPlan, options: PretrainOptions, tokenizer: (any TextTokenizer)?) {
        self.plan = plan
        self.options = options
        self.tokenizer = tokenizer
    }

    /// Launches the ranks (mpirun's processes, or in-process threads) and trains on each.
    public func run(startTime: Date) throws {
        // One handler for the process, whose ranks (threads, in-process) all see it.
        let checkpointing = options.checkpointing
        let exitSignal = checkpointing.exitSignalHandler ? ExitSignal(checkpointing.exitSignal) : nil
        try options.distributed.launch { world in try train(world: world, startTime: startTime, exitSignal: exitSignal) }
    }

    /// One rank's run: its model replica (or shard of one), its share of every global batch, and
    /// (GPT's) the generated sample at the end.
    func train(world: any Communicator, startTime: Date, exitSignal: ExitSignal?) throws {
        let groups = try ProcessGroups(world: world, state: plan.parallelState)
        let device = try options.device.makeDevice(ranksSharingCores: options.distributed.ranksPerMachine)
        let log = world.rank == 0
        switch plan.family {
        case .gpt:
            let gpt = try GPTModel(config: plan.model, seed: plan.trainer.seed, groups: groups, storage: plan.storage, on: device)
            gpt.recompute = plan.recompute
            gpt.savedActivationPrecision = plan.optimizer.paramsDType
            gpt.sequenceParallel = plan.sequenceParallel
            gpt.documentBoundaries = plan.documentBoundaries
            let (trainer, data) = try train(gpt, data: { try PretrainingData<GPTModel>(gpt: plan, world: world, log: log) },
                                            world: world, startTime: startTime, exitSignal: exitSignal)
            if let sample = plan.sample, !trainer.exited {
                try generateSample(sample, trainer: trainer, firstSample: data.firstDocument, isFirst: log)
            }
        case .bert(let bert):
            guard let tokenizer = tokenizer as? BertWordPieceTokenizer else {
                throw ConfigError(flag: "--tokenizer-type", "--tokenizer-type: BERT's dataset needs BertWordPieceLowerCase or BertWordPieceCase")
            }
            let model = try BertModel(config: BertConfig(transformer: plan.model, bertBinaryHead: bert.binaryHead), seed: plan.trainer.seed,
                                      groups: groups, storage: plan.storage, on: device)
            model.sequenceParallel = plan.sequenceParallel
            model.recompute = plan.recompute
            model.savedActivationPrecision = plan.optimizer.paramsDType
            try train(model, data: { try PretrainingData<BertModel>(bert: bert, plan: plan, tokenizer: tokenizer, world: world, log: log) },
                      world: world, startTime: startTime, exitSignal: exitSignal)
        case .t5(let t5):
            guard let tokenizer = tokenizer as? BertWordPieceTokenizer else {
                throw ConfigError(flag: "--tokenizer-type", "--tokenizer-type: T5's dataset needs BertWordPieceLowerCase or BertWordPieceCase "
                                  + "with --vocab-extra-ids (its sentinels)")
            }
            let model = try T5Model(config: plan.t5Config(t5), seed: plan.trainer.seed, groups: groups, storage: plan.storage, on: device)
            model.decoderSequenceLength = t5.decoderSequenceLength
            model.recompute = plan.recompute
            model.savedActivationPrecision = plan.optimizer.paramsDType
            try train(model, data: { try PretrainingData<T5Model>(t5: t5, plan: plan, tokenizer: tokenizer, world: world, log: log) },
                      world: world, startTime: startTime, exitSignal: exitSignal)
        }
    }

    /// Trains `model` on the samples `data` builds (after the start is printed): its data
    /// parallelism, optimizer, log, TensorBoard and checkpoint.
    @discardableResult
    private func train<Model: PretrainingModel>(_ model: Model, data: () throws -> PretrainingData<Model>, world: any Communicator,
                                                 startTime: Date, exitSignal: ExitSignal?) throws
        -> (trainer: Trainer<Model>, data: PretrainingData<Model>) {
        let isLast = model.groups.isLastRank
        let dataParallel = try DistributedDataParallel(model: model, settings: plan.dataParallel)
        let optimizer = try Optimizer(model: model, settings: plan.optimizer, dataParallel: dataParallel)
        if world.rank == 0 { printStart(world: world, model: model, dataParallel: dataParallel, optimizer: optimizer) }
        let data = try data()
        fflush(nil)
        var settings = plan.trainer
        settings.startTime = startTime
        settings.exitSignal = exitSignal
        let trainer = try Trainer(model: model, optimizer: optimizer, scheduler: plan.scheduler, settings: settings,
                                  dataParallel: dataParallel, sample: data.training,
                                  log: { line in if isLast { print(line); fflush(nil) } })
        trainer.evaluation = data.evaluation
        if isLast {
            trainer.tensorboard = try options.tensorboard.makeLog(worldSize: world.size)
            if let file = trainer.tensorboard?.writer.file { print("> writing TensorBoard events to \(file.path)") }
        }
        if let load = plan.load {
            try trainer.loadCheckpoint(from: load.directory, loadOptimizer: load.loadOptimizer, finetune: load.finetune,
                                       schedulerSettings: load.schedulerSettings)
        }
        try trainer.train()
        return (trainer, data)
    }

    /// Megatron's warnings and what was built, from the first rank.
    private func printStart<Model: PretrainingModel>(world: any Communicator, model: Model, dataParallel: DistributedDataParallel,
                                                     optimizer: Optimizer) {
        let config = plan.model, state = plan.parallelState
        let parameterCount = model.config.wholeLayout.totalCount
        for warning in plan.warnings { print(warning) }
        print("> building \(plan.family.name) model: \(config.numLayers) layers, hidden \(config.hiddenSize), \(config.numAttentionHeads) heads, "
              + "padded vocab \(config.paddedVocabSize), \(parameterCount) parameters"
              + (model.layout.totalCount < parameterCount ? " (\(model.layout.totalCount) on rank 0)" : ""))
        print("> \(world.size) rank(s) (\(options.distributed.effectiveBackend.rawValue)), tensor-parallel size "
              + "\(state.tensorModelParallelSize)\(plan.sequenceParallel ? " (sequence parallel)" : ""), "
              + "pipeline-parallel size \(state.pipelineModelParallelSize)"
              + (plan.model.virtualPipelineModelParallelSize.map { " (\($0) model chunks each, interleaved)" } ?? "")
              + (state.contextParallelSize > 1 ? ", context-parallel size \(state.contextParallelSize)" : "")
              + ", data-parallel size \(state.dataParallelSize), "
              + "\(model.device.threads) thread(s) each; \(dataParallel.buckets.count) gradient bucket(s)"
              + (plan.dataParallel.useDistributedOptimizer ? ", distributed optimizer (\(optimizer.stateBytes) bytes of state per rank)" : ""))
    }

    /// The continuation of the prompt (default: the data's first 16 tokens), generated by the
    /// tensor-parallel group of rank 0 (each rank holds part of every layer); over pipeline stages
    /// or context-parallel ranks (which hold parts of each sequence), rank 0 gathers the whole model
    /// and generates alone. Rank 0 prints it.
    private func generateSample(_ sample: PretrainPlan.Sample, trainer: Trainer<GPTModel>, firstSample: [Int32], isFirst: Bool) throws {
        let gpt = trainer.model
        let gathers = gpt.pipeline.count > 1 || gpt.contextParallel.size > 1
        var generator: GPTModel? = gpt.groups.dataParallel.rank == 0 && !gathers ? gpt : nil
        if gathers {
            try trainer.withWholeParameters { parameters in
                let whole = try GPTModel(config: plan.model, seed: nil, on: gpt.device)
                whole.parameters.floats.update(from: parameters, count: whole.layout.totalCount)
                generator = whole
            }
        }
        guard let generator else { return }
        let encoded = try sample.prompt.flatMap { try tokenizer?.encode($0) } ?? []
        // The prompt's last tokens, as many as the context leaves room for.
        let prompt = Array((encoded.isEmpty ? Array(firstSample.prefix(16)) : encoded).suffix(plan.model.maxPositionEmbeddings - sample.tokens))
        let sampling = SamplingParams(temperature: sample.temperature, topK: sample.topK, numTokensToGenerate: sample.tokens,
                                      seed: plan.trainer.seed)
        let engine = try DynamicInferenceEngine.single(model: generator, vocabularySize: plan.vocabularySize,
                                                       positions: prompt.count + sample.tokens)
        let tokens = try engine.generate([InferenceRequest(prompt: prompt, sampling: sampling)])[0].tokens
        guard isFirst else { return }
        let how = sample.topK == 1 ? "greedy" : "top-k \(sample.topK == 0 ? "off" : String(sample.topK)), temperature \(sample.temperature)"
        if let tokenizer {
            print("> sample (\(how)):\n\(tokenizer.decode(prompt))⟪\(tokenizer.decode(tokens))⟫")
        } else {
            print("> sample (\(how), token ids): \(prompt.map(String.init).joined(separator: " ")) ⟶ "
                  + tokens.map(String.init).joined(separator: " "))
        }
        fflush(nil)
    }
}
