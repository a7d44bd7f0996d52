import ArgumentParser
import MegatronCommandLine
import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining

/// `megatron pretrain`: GPT pretraining with the flags of Megatron-LM's pretrain_gpt.py.
struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pretrain a GPT model (Megatron-LM's pretrain_gpt.py flags).",
        discussion: """
            Throughput is model TFLOP/s per rank by Megatron's formula (num_floating_point_operations in \
            megatron/training/training.py: every GEMM three times, the attention core's causal half).

            Several ranks: `mpirun -np 4 megatron pretrain …` (one process per rank, on one machine or \
            several), or `megatron pretrain --distributed-backend in-process --in-process-ranks 4 …` \
            (threads of one process). Ranks share the cores of a machine: each uses cores ÷ ranks there \
            unless --threads says otherwise. The last rank prints the training log, as Megatron's.
            """)

    @OptionGroup(title: "Model") var model: ModelArguments
    @OptionGroup(title: "Training") var training: TrainingArguments
    @OptionGroup(title: "Mixed precision") var precision: MixedPrecisionArguments
    @OptionGroup(title: "Activation recomputation") var recomputation: RecomputeArguments
    @OptionGroup(title: "Checkpointing") var checkpointing: CheckpointArguments
    @OptionGroup(title: "TensorBoard") var tensorboard: TensorBoardArguments
    @OptionGroup(title: "Distributed") var distributed: DistributedArguments
    @OptionGroup(title: "Device") var device: DeviceOptions
    @OptionGroup(title: "Kernel implementations (Megatron's CUDA choices: one CPU implementation each)")
    var kernelChoices: KernelChoiceArguments

    @Flag(name: .customLong("mock-data"), help: "Train on synthetic documents (Megatron's --mock-data).")
    var mockData = false
    @Option(name: .customLong("data-path"), parsing: .upToNextOption,
            help: "A Megatron dataset prefix (PREFIX.bin/.idx), or a blend: weight prefix weight prefix …; sampled in Megatron's GPTDataset / BlendedDataset order.")
    var dataPath: [String] = []
    @Option(name: .customLong("split"),
            help: "Train, validation and test weights over the dataset's documents; training reads the first split.")
    var split = "969,30,1"
    @Option(name: .customLong("data-cache-path"),
            help: "Keep GPTDataset's document, sample and shuffle indices here (.npy) and reuse them in later runs.")
    var dataCachePath: String?
    @Option(name: .customLong("eval-iters"), help: "Global batches per evaluation on the validation (and test) split; 0: none.")
    var evalIters = 100
    @Option(name: .customLong("eval-interval"),
            help: "Evaluate on the validation split every this many iterations (default: only at the end; Megatron's older default was 1000).")
    var evalInterval: Int?
    @Flag(name: .customLong("eod-mask-loss"), help: "No loss on end-of-document input tokens.") var eodMaskLoss = false
    @Flag(name: .customLong("reset-position-ids"), help: "Positions restart at 0 after each end-of-document token.")
    var resetPositionIDs = false
    @Flag(name: .customLong("reset-attention-mask"), help: "Tokens attend only within their document (after the last end-of-document token).")
    var resetAttentionMask = false
    @OptionGroup var tokenizerOptions: TokenizerOptions
    @Option(name: .customLong("sample-tokens"),
            help: "After training, extend a prompt by this many generated tokens and print the result (ours).")
    var sampleTokens = 0
    @Option(name: .customLong("sample-prompt"),
            help: "The prompt for --sample-tokens (GPT-2 tokenizer); default: the first 16 tokens of the data.")
    var samplePrompt: String?
    @Option(name: .customLong("top-k"), help: "Sampling for --sample-tokens: draw from the k likeliest tokens (1: greedy, 0: all).")
    var topK = 1
    @Option(name: .customLong("temperature"), help: "Sampling for --sample-tokens: logits are divided by this.")
    var temperature: Float = 1

    func validate() throws {
        guard mockData != !dataPath.isEmpty else { throw ValidationError("give exactly one of --mock-data and --data-path") }
        if !dataPath.isEmpty {
            do { _ = try DataBlend(dataPath: dataPath) } catch { throw ValidationError("\(error)") }
        }
        guard evalIters >= 0 else { throw ValidationError("--eval-iters \(evalIters): expected 0 or more") }
        if let evalInterval, evalInterval < 1 { throw ValidationError("--eval-interval \(evalInterval): expected at least 1") }
        guard training.microBatchSize >= 1, training.seqLength >= 1 else {
            throw ValidationError("--micro-batch-size and --seq-length must be positive")
        }
        let dp = try distributed.parallelState().dataParallelSize
        let gbs = globalBatchSize(dataParallelSize: dp)
        guard gbs % (training.microBatchSize * dp) == 0 else {
            throw ValidationError("--global-batch-size \(gbs) is not divisible by --micro-batch-size \(training.microBatchSize) "
                                  + "× data-parallel size \(dp)")
        }
        guard training.logInterval >= 1 else { throw ValidationError("--log-interval must be at least 1") }
        guard (0 ... Int(UInt32.max)).contains(training.seed) else {
            throw ValidationError("--seed \(training.seed): expected 0 ... 2^32 − 1 (NumPy's RandomState seeds the data order)")
        }
        do { _ = try GPTDataset.splitRanges(split, count: 1) } catch { throw ValidationError("\(error)") }
        guard sampleTokens >= 0 else { throw ValidationError("--sample-tokens \(sampleTokens): expected 0 or more") }
        guard topK >= 0 else { throw ValidationError("--top-k \(topK): expected 0 or more") }
        guard temperature > 0 else { throw ValidationError("--temperature \(temperature): expected more than 0") }
        if samplePrompt != nil && !tokenizerOptions.isGPT2BPE {
            throw ValidationError("--sample-prompt needs --tokenizer-type GPT2BPETokenizer")
        }
        _ = try model.config(vocabSize: tokenizerOptions.vocabSize ?? 50257, seqLength: training.seqLength,
                             tensorParallelSize: distributed.tensorModelParallelSize,
                             pipelineParallelSize: distributed.pipelineModelParallelSize, pipelineEnds: distributed.pipelineEnds)
        _ = try training.batchSizeSchedule()
        _ = try training.iterations(globalBatchSize: gbs)
        _ = try training.scheduler(globalBatchSize: gbs)
        _ = try optimizerSettings()
        _ = try recomputation.recompute(layers: model.numLayers)
        let tp = distributed.tensorModelParallelSize
        if distributed.sequenceParallel && tp > 1 && training.seqLength % tp != 0 {
            throw ValidationError("--sequence-parallel: --seq-length \(training.seqLength) is not divisible by --tensor-model-parallel-size \(tp)")
        }
    }

    /// Samples of split `split` (0 train, 1 validation, 2 test) of the --data-path blend (its datasets
    /// opened once, by `sources`), built as Megatron's BlendedMegatronDatasetBuilder builds them (see
    /// DataBlend); nil when the split is empty.
    func splitSamples(_ blend: DataBlend, sources: [any LowLevelDataset], split index: Int, numSamples: Int,
                      log: Bool) throws -> (@Sendable (Int) -> [Int32])? {
        let name = ["training", "validation", "test"][index]
        var datasets: [GPTDataset] = []
        for ((prefix, indexed), samples) in zip(zip(blend.prefixes, sources), blend.samplesToBuild(size: numSamples)) {
            guard let documents = try GPTDataset.splitRanges(split, count: indexed.sequenceCount)[index], !documents.isEmpty else {
                if index > 0 && log { print("> dataset \(prefix): no \(name) documents under --split \(split)") }
                return nil
            }
            let dataset = try GPTDataset(indexed, documents: documents, numSamples: samples,
                                         sequenceLength: training.seqLength, seed: UInt32(training.seed), cacheDirectory: dataCachePath)
            if log {
                let weight = blend.weights.map { " (weight \($0[datasets.count]))" } ?? ""
                print("> dataset \(prefix)\(weight): \(name) split documents "
                      + "\(documents.lowerBound) ..< \(documents.upperBound) of \(indexed.sequenceCount); \(dataset.count) samples of "
                      + "\(training.seqLength + 1) tokens over \(dataset.epochs) epoch(s)"
                      + (dataset.separateFinalEpoch ? ", the last shuffled apart" : ""))
            }
            datasets.append(dataset)
        }
        if let blended = try blend.blend(datasets, size: numSamples, split: name) { return { blended.sample($0) } }
        let dataset = datasets[0]
        return { dataset.sample($0) }
    }

    /// --global-batch-size, by default one micro-batch per data-parallel rank.
    /// The optimizer the training and mixed-precision flags ask for.
    func optimizerSettings() throws -> Optimizer.Settings {
        var settings = try training.optimizerSettings()
        try precision.apply(to: &settings, useDistributedOptimizer: distributed.useDistributedOptimizer)
        return settings
    }

    func globalBatchSize(dataParallelSize: Int) -> Int { training.globalBatchSize ?? training.microBatchSize * dataParallelSize }

    func run() throws {
        let start = Date()
        // One handler for the process, whose ranks (threads, in-process) all see it.
        let exitSignal = checkpointing.exitSignalHandler ? ExitSignal(checkpointing.exitSignal) : nil
        try distributed.launch { world in try train(world: world, startTime: start, exitSignal: exitSignal) }
    }

    /// One rank's run: its model replica (or tensor-parallel shard of one), its share of every global
    /// batch, and the generated sample at the end (by the tensor-parallel group of rank 0, which prints it).
    func train(world: any Communicator, startTime: Date, exitSignal: ExitSignal?) throws {
        let groups = try ProcessGroups(world: world, state: distributed.parallelState())
        let isFirst = world.rank == 0, isLast = groups.isLastRank
        let device = try device.makeDevice(ranksSharingCores: distributed.ranksPerMachine)
        // Text in and out only with the GPT-2 tokenizer; NullTokenizer runs print token ids.
        let tokenizer = tokenizerOptions.isGPT2BPE ? try tokenizerOptions.makeTokenizer() : nil
        let vocab = tokenizer?.vocabSize ?? tokenizerOptions.vocabSize!
        let config = try model.config(vocabSize: vocab, seqLength: training.seqLength, tensorParallelSize: groups.state.tensorModelParallelSize,
                                      pipelineParallelSize: groups.state.pipelineModelParallelSize, pipelineEnds: distributed.pipelineEnds)
        let gbs = globalBatchSize(dataParallelSize: groups.state.dataParallelSize)
        var settings = Trainer.Settings(trainIters: try training.iterations(globalBatchSize: gbs), microBatchSize: training.microBatchSize,
                                        globalBatchSize: gbs, sequenceLength: training.seqLength)
        settings.logInterval = training.logInterval
        settings.logThroughput = training.logThroughput
        settings.logParamsNorm = training.logParamsNorm
        settings.checkForNaNInLossAndGrad = !training.noCheckForNaNInLossAndGrad
        settings.seed = UInt64(training.seed)
        settings.save = checkpointing.save.map { URL(fileURLWithPath: $0) }
        settings.saveInterval = checkpointing.saveInterval
        settings.exitInterval = checkpointing.exitInterval
        settings.exitDurationInMinutes = checkpointing.exitDurationInMins
        settings.startTime = startTime
        settings.exitSignal = exitSignal
        settings.skipTrain = training.skipTrain
        settings.batchSizeSchedule = try training.batchSizeSchedule()
        // The end of document: GPT-2's <|endoftext|>, or the NullTokenizer's last id (as mock data's).
        let endOfDocument = tokenizer?.eod ?? Int32(vocab - 1)
        if eodMaskLoss || resetPositionIDs || resetAttentionMask {
            var boundaries = MicroBatch.DocumentBoundaries(endOfDocument: endOfDocument)
            boundaries.eodMaskLoss = eodMaskLoss
            boundaries.resetPositionIDs = resetPositionIDs
            boundaries.resetAttentionMask = resetAttentionMask
            settings.documentBoundaries = boundaries
        }
        let gpt = try GPTModel(config: config, seed: UInt64(training.seed), groups: groups, on: device)
        gpt.recompute = try recomputation.recompute(layers: config.numLayers)
        // As Megatron: sequence parallelism only over tensor-parallel ranks.
        gpt.sequenceParallel = distributed.sequenceParallel && groups.state.tensorModelParallelSize > 1
        if distributed.sequenceParallel && !gpt.sequenceParallel && isFirst {
            print("WARNING: Disabling sequence parallelism because tensor model parallelism is disabled")
        }
        let dataParallel = try DistributedDataParallel(model: gpt, settings: distributed.ddpSettings)
        let optimizer = try Optimizer(model: gpt, settings: try optimizerSettings(), dataParallel: dataParallel)
        if isFirst {
            if optimizer.usesDynamicLossScaling && !training.noCheckForNaNInLossAndGrad { print(MixedPrecisionArguments.checkTurnedOffWarning) }
            print("> building GPT model: \(config.numLayers) layers, hidden \(config.hiddenSize), \(config.numAttentionHeads) heads, "
                  + "padded vocab \(config.paddedVocabSize), \(config.parameterCount) parameters"
                  + (gpt.layout.totalCount < config.parameterCount ? " (\(gpt.layout.totalCount) on rank 0)" : ""))
            print("> \(world.size) rank(s) (\(distributed.effectiveBackend.rawValue)), tensor-parallel size "
                  + "\(groups.state.tensorModelParallelSize)\(gpt.sequenceParallel ? " (sequence parallel)" : ""), "
                  + "pipeline-parallel size \(groups.state.pipelineModelParallelSize), data-parallel size \(groups.state.dataParallelSize), "
                  + "\(device.threads) thread(s) each; \(dataParallel.buckets.count) gradient bucket(s)"
                  + (distributed.useDistributedOptimizer ? ", distributed optimizer (\(optimizer.stateBytes) bytes of state per rank)" : ""))
        }
        let sample: @Sendable (Int) -> [Int32]
        let firstSample: [Int32]
        var evaluation: Trainer.Evaluation?
        do {
            // --mock-data: Megatron's mock documents, split, packed and shuffled as a corpus.
            let blend = mockData ? DataBlend(prefixes: ["mock data"], weights: nil) : try DataBlend(dataPath: dataPath)
            // With a cache, rank 0 builds and saves the indices first and the others then load them,
            // as Megatron does (one build, not one per rank).
            let rank0BuildsFirst = dataCachePath != nil && world.size > 1
            if rank0BuildsFirst && !isFirst { try world.barrier() }
            // Megatron builds --train-samples samples, though its train_samples // gbs iterations use fewer.
            let numSamples = training.trainSamples
                ?? settings.batchSizeSchedule.map { $0.samples(in: settings.trainIters) } ?? settings.trainIters * gbs
            let sources: [any LowLevelDataset] = mockData ? [MockGPTLowLevelDataset(vocabSize: vocab, endOfDocument: endOfDocument)]
                : try blend.prefixes.map { try IndexedDataset(prefix: $0) }
            guard let train = try splitSamples(blend, sources: sources, split: 0, numSamples: numSamples, log: isFirst) else {
                throw ValidationError("--split \(split): the training split is empty")
            }
            sample = train
            firstSample = sources[0].sequence(0)
            if evalIters > 0 {
                var plan = Trainer.Evaluation(interval: evalInterval, iterations: evalIters, validation: nil, test: nil)
                let validationSamples = plan.validationSamples(trainIters: settings.trainIters, globalBatchSize: gbs)
                plan.validation = try splitSamples(blend, sources: sources, split: 1, numSamples: validationSamples, log: isFirst)
                plan.test = try splitSamples(blend, sources: sources, split: 2, numSamples: evalIters * gbs, log: isFirst)
                evaluation = plan
            }
            if rank0BuildsFirst && isFirst { try world.barrier() }
        }
        fflush(nil)
        let trainer = try Trainer(model: gpt, optimizer: optimizer, scheduler: try training.scheduler(globalBatchSize: gbs), settings: settings,
                              dataParallel: dataParallel, sample: sample,
                              log: { line in if isLast { print(line); fflush(nil) } })
        trainer.evaluation = evaluation
        if isLast {
            trainer.tensorboard = try tensorboard.makeLog(worldSize: world.size)
            if let file = trainer.tensorboard?.writer.file { print("> writing TensorBoard events to \(file.path)") }
        }
        if let load = checkpointing.load {
            try trainer.loadCheckpoint(from: URL(fileURLWithPath: load), loadOptimizer: !checkpointing.noLoadOptim,
                                       finetune: checkpointing.finetune, schedulerSettings: checkpointing.schedulerSettingsOnLoad)
        }
        try trainer.train()
        guard sampleTokens > 0 && !trainer.exited else { return }
        // The tensor-parallel group of rank 0 generates together (each rank holds part of every layer);
        // over pipeline stages, rank 0 gathers the whole model and generates alone.
        var generator: GPTModel? = groups.dataParallel.rank == 0 && gpt.pipeline.count == 1 ? gpt : nil
        if gpt.pipeline.count > 1 {
            try trainer.withWholeParameters { parameters in
                let whole = try GPTModel(config: config, seed: nil, on: device)
                whole.parameters.floats.update(from: parameters, count: whole.layout.totalCount)
                generator = whole
            }
        }
        if let generator {
            let encoded = try samplePrompt.flatMap { try tokenizer?.encode($0) } ?? []
            let prompt = encoded.isEmpty ? Array(firstSample.prefix(16)) : encoded
            let generation = TextGeneration(topK: topK, temperature: temperature, seed: UInt64(training.seed))
            let tokens = try generation.continuation(of: prompt, count: sampleTokens, model: generator, vocabularySize: vocab,
                                                     maxLength: training.seqLength)
            if isFirst {
                let how = topK == 1 ? "greedy" : "top-k \(topK == 0 ? "off" : String(topK)), temperature \(temperature)"
                if let tokenizer {
                    print("> sample (\(how)):\n\(tokenizer.decode(prompt))⟪\(tokenizer.decode(tokens))⟫")
                } else {
                    print("> sample (\(how), token ids): \(prompt.map(String.init).joined(separator: " ")) ⟶ "
                          + tokens.map(String.init).joined(separator: " "))
                }
                fflush(nil)
            }
        }
    }
}

// Parsed once and read-only afterwards: every rank reads the same options.
extension Pretrain: @unchecked Sendable {}
