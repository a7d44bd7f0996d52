import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining

/// A `megatron pretrain` run, validated: everything the run builds, derived once from the parsed
/// flags with each of Megatron's rules checked in one place, before any rank starts. Building one
/// starts nothing, so a test can check a launch script's flags in-process.
public struct PretrainPlan: Sendable {
    /// The samples: Megatron's mock documents, or the --data-path blend.
    public struct Data: Sendable {
        public let mock: Bool
        public let blend: DataBlend
        /// --split
        public let split: String
        public let cachePath: String?
        /// Training samples to build (Megatron builds --train-samples, or what the iterations consume).
        public let trainingSamples: Int
        /// The end-of-document token id (the tokenizer's).
        public let endOfDocument: Int32
    }

    /// --eval-iters global batches every --eval-interval iterations (and at the end).
    public struct Evaluation: Sendable {
        public let iterations: Int
        public let interval: Int?
    }

    /// --load: where to resume from, and what to take.
    public struct Load: Sendable {
        public let directory: URL
        public let loadOptimizer: Bool
        public let finetune: Bool
        public let schedulerSettings: SchedulerSettingsOnLoad
    }

    /// --sample-tokens: a continuation generated after training.
    public struct Sample: Sendable {
        public let tokens: Int
        public let prompt: String?
        public let topK: Int
        public let temperature: Float
    }

    /// pretrain_bert.py's settings of `megatron pretrain-bert`.
    public struct Bert: Sendable, Equatable {
        /// Not --bert-no-binary-head.
        public let binaryHead: Bool
        /// --mask-prob
        public let maskProbability: Double
        /// --short-seq-prob
        public let shortSequenceProbability: Double
    }

    /// pretrain_t5.py's settings of `megatron pretrain-t5`.
    public struct T5: Sendable, Equatable {
        /// --decoder-num-layers (nil: the encoder's).
        public let decoderNumLayers: Int?
        /// --decoder-seq-length
        public let decoderSequenceLength: Int
        /// --mask-prob, --short-seq-prob
        public let maskProbability: Double, shortSequenceProbability: Double
        /// --translation: --data-path is a parallel corpus's source and target.
        public let translation: Bool
        /// Under --position-embedding-type relative.
        public let relativeAttention: T5Config.RelativeAttention?
    }

    /// The model trained: GPT (pretrain_gpt.py), BERT (pretrain_bert.py) or T5 (pretrain_t5.py).
    public enum Family: Sendable, Equatable {
        case gpt
        case bert(Bert)
        case t5(T5)

        public var name: String {
            switch self {
            case .gpt: "GPT"
            case .bert: "BERT"
            case .t5: "T5"
            }
        }
    }

    /// T5's architecture: `model` as its layers' settings (relative positions moved to
    /// `relativeAttention`), the encoder --num-layers deep.
    public func t5Config(_ t5: T5) -> T5Config {
        var transformer = model
        transformer.positionEmbedding = .learnedAbsolute
        return T5Config(transformer: transformer, encoderNumLayers: model.numLayers, decoderNumLayers: t5.decoderNumLayers ?? model.numLayers,
                        relativeAttention: t5.relativeAttention)
    }

    public let family: Family
    /// The tokenizer's ids (the model pads them to --make-vocab-size-divisible-by × tensor-parallel size).
    public let vocabularySize: Int
    public let parallelState: ParallelState
    /// --sequence-parallel, in effect only over more than one tensor-parallel rank (Megatron's).
    public let sequenceParallel: Bool
    public let dataParallel: DistributedDataParallel.Settings
    public let model: TransformerConfig
    public let recompute: ActivationRecompute
    public let optimizer: Optimizer.Settings
    /// What the model's buffers store: the parameters and gradients in the precisions the optimizer
    /// takes them in (16-bit parameters under --bf16 and --fp16, `MixedPrecisionArguments.storage`).
    public var storage: ParameterStorage { ParameterStorage(parameters: optimizer.paramsDType, gradients: optimizer.gradBufferDType) }
    public let scheduler: OptimizerParamScheduler
    /// The loop's settings (the program's start time and exit signal are the run's own).
    public let trainer: TrainingSettings
    /// How GPT's micro-batches treat end-of-document tokens (`GPTModel.documentBoundaries`).
    public let documentBoundaries: MicroBatch.DocumentBoundaries?
    public let data: Data
    /// nil under --eval-iters 0.
    public let evaluation: Evaluation?
    public let load: Load?
    public let sample: Sample?
    /// Warnings Megatron prints for flags it adjusts (printed once, by the first rank).
    public let warnings: [String]

    /// The plan of `options` for a `family` model on `worldSize` ranks and a tokenizer of
    /// `vocabularySize` ids whose end of document is `endOfDocument`; a `ConfigError` (or the option
    /// group's own error) names the flag at fault.
    public init(_ options: PretrainOptions, family: Family = .gpt, worldSize: Int, vocabularySize: Int, endOfDocument: Int32) throws {
        let training = options.training, data = options.data, distributed = options.distributed
        self.family = family
        self.vocabularySize = vocabularySize
        parallelState = try ParallelState(worldSize: worldSize, tensorModelParallelSize: distributed.tensorModelParallelSize,
                                          pipelineModelParallelSize: distributed.pipelineModelParallelSize,
                                          contextParallelSize: distributed.contextParallelSize)
        let tp = parallelState.tensorModelParallelSize, dp = parallelState.dataParallelSize
        sequenceParallel = distributed.sequenceParallel && tp > 1
        var warnings: [String] = []
        if distributed.sequenceParallel && !sequenceParallel {
            warnings.append("WARNING: Disabling sequence parallelism because tensor model parallelism is disabled")
        }
        guard training.microBatchSize >= 1, training.seqLength >= 1 else {
            throw ConfigError(flag: "--micro-batch-size", "--micro-batch-size and --seq-length must be positive")
        }
        if sequenceParallel && training.seqLength % tp != 0 {
            throw ConfigError(flag: "--sequence-parallel",
                              "--sequence-parallel: --seq-length \(training.seqLength) is not divisible by --tensor-model-parallel-size \(tp)")
        }
        dataParallel = distributed.ddpSettings
        model = try options.model.config(vocabSize: vocabularySize, seqLength: training.seqLength, tensorParallelSize: tp,
                                         pipelineParallelSize: parallelState.pipelineModelParallelSize, pipelineEnds: distributed.pipelineEnds,
                                         virtualPipelineStages: distributed.virtualPipelineModelParallelSize(numLayers: options.model.numLayers))
        recompute = try options.recomputation.recompute(layers: model.numLayers)
        var optimizer = try training.optimizerSettings()
        try options.precision.apply(to: &optimizer, useDistributedOptimizer: distributed.useDistributedOptimizer)
        self.optimizer = optimizer
        if optimizer.gradScaler?.isDynamic == true && !training.noCheckForNaNInLossAndGrad {
            warnings.append(MixedPrecisionArguments.checkTurnedOffWarning)
        }
        let globalBatchSize = training.globalBatchSize ?? training.microBatchSize * dp
        guard globalBatchSize >= 1 else {
            throw ConfigError(flag: "--global-batch-size", "--global-batch-size \(globalBatchSize): expected at least 1")
        }
        guard globalBatchSize % (training.microBatchSize * dp) == 0 else {
            throw ConfigError(flag: "--global-batch-size", "--global-batch-size \(globalBatchSize) is not divisible by --micro-batch-size "
                              + "\(training.microBatchSize) × data-parallel size \(dp)")
        }
        if model.virtualPipelineModelParallelSize != nil {
            // Every global batch size a run takes, each as micro-batches of micro-batch size × dp.
            let p = parallelState.pipelineModelParallelSize, perMicroBatch = training.microBatchSize * dp
            let sizes = try training.batchSizeSchedule()?.steps.map(\.batchSize) ?? [globalBatchSize]
            if let size = sizes.first(where: { $0 / perMicroBatch % p != 0 }) {
                let flag = training.stepBatchSizeSchedule == nil ? "--global-batch-size" : "--step-batch-size-schedule"
                throw ConfigError(flag: flag, "the interleaved pipeline schedule needs the micro-batches of an iteration "
                                  + "(\(flag == "--global-batch-size" ? flag + " " : "global batch ")\(size) / (--micro-batch-size "
                                  + "\(training.microBatchSize) × data-parallel size \(dp))) to be a multiple of --pipeline-model-parallel-size \(p)")
            }
        }
        scheduler = try training.scheduler(globalBatchSize: globalBatchSize)
        trainer = try Self.trainerSettings(options, globalBatchSize: globalBatchSize)
        if trainer.save != nil, trainer.checkpointFormat == .torch, optimizer.keepsSixteenBitState {
            throw ConfigError(flag: "--ckpt-format", "--ckpt-format torch writes fp32 optimizer state; this run keeps 16-bit moments or "
                              + "main-parameter remainders (--use-precision-aware-optimizer): save with --ckpt-format torch_dist")
        }
        documentBoundaries = Self.documentBoundaries(data, endOfDocument: endOfDocument)
        self.data = try Self.data(options, trainer: trainer, endOfDocument: endOfDocument)
        evaluation = try Self.evaluation(data)
        let checkpointing = options.checkpointing
        load = checkpointing.load.map {
            Load(directory: URL(fileURLWithPath: $0), loadOptimizer: !checkpointing.noLoadOptim, finetune: checkpointing.finetune,
                 schedulerSettings: checkpointing.schedulerSettingsOnLoad)
        }
        sample = try Self.sample(options.sample, readsText: options.tokenizer.readsText, context: model.maxPositionEmbeddings)
        self.warnings = warnings
        switch family {
        case .gpt:
            guard model.positionEmbedding != .relative else {
                throw ConfigError(flag: "--position-embedding-type", "--position-embedding-type relative is T5's (megatron pretrain-t5)")
            }
            try checkContextParallel(sequenceLength: training.seqLength)
        case .bert(let bert): try checkBERT(bert)
        case .t5(let t5): try checkT5(t5)
        }
    }

    /// What GPT's context parallelism needs (`ContextParallel.check`), and under sequence parallelism
    /// each rank's share of a sequence split over the tensor-parallel ranks.
    private func checkContextParallel(sequenceLength s: Int) throws {
        let cp = parallelState.contextParallelSize, t = parallelState.tensorModelParallelSize
        guard cp > 1 else { return }
        try ContextParallel.check(size: cp, sequenceLength: s, attentionDropout: model.attentionDropout,
                                  resetsAttentionMask: documentBoundaries?.resetAttentionMask == true)
        guard !sequenceParallel || (s / cp) % t == 0 else {
            throw ConfigError(flag: "--sequence-parallel", "--sequence-parallel: the \(s / cp) tokens of a sequence on each of "
                              + "--context-parallel-size \(cp) ranks do not split over --tensor-model-parallel-size \(t)")
        }
    }

    /// What T5 needs beyond GPT's checks, and what it does not have here.
    private func checkT5(_ t5: T5) throws {
        try t5Config(t5).validate(tensorParallelSize: parallelState.tensorModelParallelSize)
        guard t5.decoderSequenceLength <= model.maxPositionEmbeddings else {
            throw ConfigError(flag: "--decoder-seq-length", "--decoder-seq-length \(t5.decoderSequenceLength) exceeds "
                              + "--max-position-embeddings \(model.maxPositionEmbeddings)")
        }
        if sequenceParallel { throw ConfigError(flag: "--sequence-parallel", "--sequence-parallel: T5 has no sequence parallelism here") }
        try checkSentenceCorpusModel("T5", prefixes: t5.translation ? 2 : 1)
    }

    /// What BERT needs beyond GPT's checks, and what it does not have here.
    private func checkBERT(_ bert: Bert) throws {
        try BertConfig(transformer: model, bertBinaryHead: bert.binaryHead).validate(tensorParallelSize: parallelState.tensorModelParallelSize)
        try checkSentenceCorpusModel("BERT", prefixes: 1)
    }

    /// What BERT and T5 (`name`) share: one pipeline stage, no text generation, and data of `prefixes`
    /// unweighted prefixes (a sentence-split corpus, or T5's translation pair), whose sample
    /// mapping takes a positive int32 seed.
    private func checkSentenceCorpusModel(_ name: String, prefixes: Int) throws {
        let dataPath = prefixes == 1 ? "\(name) reads one dataset prefix here, not a blend"
            : "--translation reads two prefixes, the source's and the target's (megatron preprocess-data-nmt)"
        let refused: [(Bool, String, String)] = [
            (parallelState.pipelineModelParallelSize > 1, "--pipeline-model-parallel-size", "\(name) runs on one pipeline stage here"),
            (parallelState.contextParallelSize > 1, "--context-parallel-size", "\(name) has no context parallelism here"),
            (data.mock, "--mock-data", "\(name) trains on sentence-split documents; give --data-path (megatron preprocess-data --split-sentences)"),
            (data.blend.prefixes.count != prefixes || data.blend.weights != nil, "--data-path", dataPath),
            (documentBoundaries != nil, "--eod-mask-loss", "--eod-mask-loss, --reset-position-ids and --reset-attention-mask are GPT's"),
            (sample != nil, "--sample-tokens", "\(name) does not generate text here"),
            (!(1 ... Int(Int32.max)).contains(Int(trainer.seed)), "--seed",
             "\(name)'s sample mapping takes a --seed of 1 ... 2^31 − 1 (Megatron's build_mapping)"),
        ]
        if let (_, flag, message) = refused.first(where: { $0.0 }) { throw ConfigError(flag: flag, "\(flag): \(message)") }
    }

    /// The loop's settings: batch, schedule and the logging, checking and exit flags.
    private static func trainerSettings(_ options: PretrainOptions, globalBatchSize: Int) throws -> TrainingSettings {
        let training = options.training, checkpointing = options.checkpointing
        guard training.logInterval >= 1 else { throw ConfigError(flag: "--log-interval", "--log-interval must be at least 1") }
        guard (0 ... Int(UInt32.max)).contains(training.seed) else {
            throw ConfigError(flag: "--seed", "--seed \(training.seed): expected 0 ... 2^32 − 1 (NumPy's RandomState seeds the data order)")
        }
        var settings = TrainingSettings(trainIters: try training.iterations(globalBatchSize: globalBatchSize),
                                        microBatchSize: training.microBatchSize, globalBatchSize: globalBatchSize,
                                        sequenceLength: training.seqLength)
        settings.logInterval = training.logInterval
        settings.logThroughput = training.logThroughput
        settings.logParamsNorm = training.logParamsNorm
        settings.checkForNaNInLossAndGrad = !training.noCheckForNaNInLossAndGrad
        settings.seed = UInt64(training.seed)
        settings.save = checkpointing.save.map { URL(fileURLWithPath: $0) }
        settings.saveInterval = checkpointing.saveInterval
        settings.checkpointFormat = checkpointing.ckptFormat
        settings.asyncSave = checkpointing.asyncSave
        settings.exitInterval = checkpointing.exitInterval
        settings.exitDurationInMinutes = checkpointing.exitDurationInMins
        settings.skipTrain = training.skipTrain
        settings.batchSizeSchedule = try training.batchSizeSchedule()
        return settings
    }

    /// --eod-mask-loss, --reset-position-ids and --reset-attention-mask, nil when none is set.
    private static func documentBoundaries(_ data: DataArguments, endOfDocument: Int32) -> MicroBatch.DocumentBoundaries? {
        guard data.eodMaskLoss || data.resetPositionIDs || data.resetAttentionMask else { return nil }
        var boundaries = MicroBatch.DocumentBoundaries(endOfDocument: endOfDocument)
        boundaries.eodMaskLoss = data.eodMaskLoss
        boundaries.resetPositionIDs = data.resetPositionIDs
        boundaries.resetAttentionMask = data.resetAttentionMask
        return boundaries
    }

    private static func data(_ options: PretrainOptions, trainer: TrainingSettings, endOfDocument: Int32) throws -> Data {
        let data = options.data
        guard data.mockData != !data.dataPath.isEmpty else {
            throw ConfigError(flag: "--data-path", "give exactly one of --mock-data and --data-path")
        }
        let blend = data.mockData ? DataBlend(prefixes: ["mock data"], weights: nil)
            : try blaming("--data-path") { try DataBlend(dataPath: data.dataPath) }
        _ = try blaming("--split") { try GPTDataset.splitRanges(data.split, count: 1) }
        // Megatron builds --train-samples samples, though its train_samples // gbs iterations use fewer.
        let samples = options.training.trainSamples
            ?? trainer.batchSizeSchedule.map { $0.samples(in: trainer.trainIters) } ?? trainer.trainIters * trainer.globalBatchSize
        return Data(mock: data.mockData, blend: blend, split: data.split, cachePath: data.dataCachePath, trainingSamples: samples,
                    endOfDocument: endOfDocument)
    }

    /// `body`'s result, its error (a data library's own) reported as a `ConfigError` of `flag`.
    private static func blaming<T>(_ flag: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw ConfigError(flag: flag, "\(error)") }
    }

    private static func evaluation(_ data: DataArguments) throws -> Evaluation? {
        guard data.evalIters >= 0 else { throw ConfigError(flag: "--eval-iters", "--eval-iters \(data.evalIters): expected 0 or more") }
        if let interval = data.evalInterval, interval < 1 {
            throw ConfigError(flag: "--eval-interval", "--eval-interval \(interval): expected at least 1")
        }
        return data.evalIters > 0 ? Evaluation(iterations: data.evalIters, interval: data.evalInterval) : nil
    }

    private static func sample(_ sample: SampleArguments, readsText: Bool, context: Int) throws -> Sample? {
        guard (0 ..< context).contains(sample.sampleTokens) else {
            throw ConfigError(flag: "--sample-tokens", "--sample-tokens \(sample.sampleTokens): expected 0 or more, and fewer than "
                              + "--max-position-embeddings \(context) (the prompt needs a token)")
        }
        guard sample.topK >= 0 else { throw ConfigError(flag: "--top-k", "--top-k \(sample.topK): expected 0 or more") }
        guard sample.temperature > 0 else {
            throw ConfigError(flag: "--temperature", "--temperature \(sample.temperature): expected more than 0")
        }
        if sample.samplePrompt != nil && !readsText {
            throw ConfigError(flag: "--sample-prompt", "--sample-prompt needs a tokenizer of text, not NullTokenizer")
        }
        guard sample.sampleTokens > 0 else { return nil }
        return Sample(tokens: sample.sampleTokens, prompt: sample.samplePrompt, topK: sample.topK, temperature: sample.temperature)
    }
}
