import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining

/// A rank's samples of a plan's data, as Megatron's BlendedMegatronDatasetBuilder builds them:
/// each --data-path dataset (or the mock documents) split into training, validation and test
/// documents, and the model's dataset over each (GPT's blended by weight).
struct PretrainingData<Model: PretrainingModel> {
    /// Training sample i.
    let training: @Sendable (Int) throws -> Model.Sample
    /// The first document's tokens (GPT's default prompt of the sample after training).
    let firstDocument: [Int32]
    /// The validation and test samples, under --eval-iters.
    let evaluation: Trainer<Model>.Evaluation?

    /// The splits made by `split(index, count)`: `count` samples of split `index` (0 training, 1
    /// validation, 2 test), nil when it is empty. With --data-cache-path, rank 0 builds (and saves
    /// the indices) first and the others then load them, as Megatron does (one build, not one per rank).
    private init(_ plan: PretrainPlan, world: any Communicator, firstDocument: [Int32],
                 split: (Int, Int) throws -> (@Sendable (Int) throws -> Model.Sample)?) throws {
        let rank0BuildsFirst = plan.data.cachePath != nil && world.size > 1
        if rank0BuildsFirst && world.rank != 0 { try world.barrier() }
        guard let training = try split(0, plan.data.trainingSamples) else {
            throw ConfigError(flag: "--split", "--split \(plan.data.split): the training split is empty")
        }
        self.training = training
        self.firstDocument = firstDocument
        if let planned = plan.evaluation {
            var evaluation = Trainer<Model>.Evaluation(interval: planned.interval, iterations: planned.iterations, validation: nil, test: nil)
            let globalBatchSize = plan.trainer.globalBatchSize
            evaluation.validation = try split(1, evaluation.validationSamples(trainIters: plan.trainer.trainIters,
                                                                                globalBatchSize: globalBatchSize))
            evaluation.test = try split(2, planned.iterations * globalBatchSize)
            self.evaluation = evaluation
        } else {
            evaluation = nil
        }
        if rank0BuildsFirst && world.rank == 0 { try world.barrier() }
    }
}

extension PretrainingData where Model == GPTModel {
    /// GPTDatasets (sequence length + 1 tokens a sample) over the mock documents or the blend;
    /// `log` prints what was built.
    init(gpt plan: PretrainPlan, world: any Communicator, log: Bool) throws {
        let data = plan.data
        let sources: [any LowLevelDataset] = data.mock
            ? [MockGPTLowLevelDataset(vocabSize: plan.vocabularySize, endOfDocument: data.endOfDocument)]
            : try data.blend.prefixes.map { try IndexedDataset(prefix: $0) }
        try self.init(plan, world: world, firstDocument: sources[0].sequence(0)) { index, count in
            try Self.samples(plan, sources: sources, split: index, count: count, log: log)
        }
    }

    private static func samples(_ plan: PretrainPlan, sources: [any LowLevelDataset], split index: Int, count: Int,
                                log: Bool) throws -> (@Sendable (Int) -> [Int32])? {
        let data = plan.data, name = ["training", "validation", "test"][index]
        let sequenceLength = plan.trainer.sequenceLength
        var datasets: [GPTDataset] = []
        for ((prefix, indexed), samples) in zip(zip(data.blend.prefixes, sources), data.blend.samplesToBuild(size: count)) {
            guard let documents = try GPTDataset.splitRanges(data.split, count: indexed.sequenceCount)[index], !documents.isEmpty else {
                if index > 0 && log { print("> dataset \(prefix): no \(name) documents under --split \(data.split)") }
                return nil
            }
            let dataset = try GPTDataset(indexed, documents: documents, numSamples: samples, sequenceLength: sequenceLength,
                                         seed: UInt32(plan.trainer.seed), cacheDirectory: data.cachePath)
            if log {
                let weight = data.blend.weights.map { " (weight \($0[datasets.count]))" } ?? ""
                print("> dataset \(prefix)\(weight): \(name) split documents "
                      + "\(documents.lowerBound) ..< \(documents.upperBound) of \(indexed.sequenceCount); \(dataset.count) samples of "
                      + "\(sequenceLength + 1) tokens over \(dataset.epochs) epoch(s)"
                      + (dataset.separateFinalEpoch ? ", the last shuffled apart" : ""))
            }
            datasets.append(dataset)
        }
        if let blended = try data.blend.blend(datasets, size: count, split: name) { return { blended.sample($0) } }
        let dataset = datasets[0]
        return { dataset.sample($0) }
    }
}

extension PretrainingData {
    /// Splits of the one --data-path dataset's documents (its sentences the indexed sequences), each
    /// the samples `dataset(indexed, documents, count)` builds with the words that describe them.
    private init(sentenceSplitsOf plan: PretrainPlan, world: any Communicator, log: Bool,
                 dataset: @escaping (IndexedDataset, Range<Int>, Int) throws
                     -> (samples: @Sendable (Int) throws -> Model.Sample, description: String)) throws {
        let data = plan.data, prefix = data.blend.prefixes[0]
        let indexed = try IndexedDataset(prefix: prefix)
        try self.init(plan, world: world, firstDocument: indexed.sequence(0)) { index, count in
            let name = ["training", "validation", "test"][index]
            guard let documents = try GPTDataset.splitRanges(data.split, count: indexed.documentCount)[index], !documents.isEmpty else {
                if index > 0 && log { print("> dataset \(prefix): no \(name) documents under --split \(data.split)") }
                return nil
            }
            let (samples, description) = try dataset(indexed, documents, count)
            if log {
                print("> dataset \(prefix): \(name) split documents \(documents.lowerBound) ..< \(documents.upperBound) of "
                      + "\(indexed.documentCount); \(description)")
            }
            return samples
        }
    }
}

extension PretrainingData where Model == T5Model {
    /// T5Datasets over the sentence-split --data-path, spans corrupted by `t5`'s settings with
    /// `tokenizer`'s sentinels; under --translation, the pairs of the parallel corpus --data-path names.
    init(t5: PretrainPlan.T5, plan: PretrainPlan, tokenizer: BertWordPieceTokenizer, world: any Communicator, log: Bool) throws {
        if t5.translation {
            try self.init(translation: t5, plan: plan, tokenizer: tokenizer, world: world, log: log)
            return
        }
        try self.init(sentenceSplitsOf: plan, world: world, log: log) { indexed, documents, count in
            let dataset = try T5Dataset(indexed, documents: documents, numSamples: count, encoderSequenceLength: plan.trainer.sequenceLength,
                                        decoderSequenceLength: t5.decoderSequenceLength, tokenizer: tokenizer,
                                        maskProbability: t5.maskProbability, shortSequenceProbability: t5.shortSequenceProbability,
                                        seed: Int32(plan.trainer.seed))
            return ({ try dataset.sample($0).sample }, "\(dataset.count) samples of up to \(plan.trainer.sequenceLength) encoder tokens "
                    + "over \(dataset.base.sampleIndex.epochs) epoch(s)")
        }
    }
}

extension PretrainingData where Model == T5Model {
    /// TranslationDatasets over --data-path's source and target, split by --split over the pairs.
    private init(translation t5: PretrainPlan.T5, plan: PretrainPlan, tokenizer: BertWordPieceTokenizer, world: any Communicator,
                 log: Bool) throws {
        let data = plan.data
        let source = try IndexedDataset(prefix: data.blend.prefixes[0]), target = try IndexedDataset(prefix: data.blend.prefixes[1])
        try self.init(plan, world: world, firstDocument: source.sequence(0)) { index, count in
            let name = ["training", "validation", "test"][index]
            guard let pairs = try GPTDataset.splitRanges(data.split, count: source.sequenceCount)[index], !pairs.isEmpty else {
                if index > 0 && log { print("> translation data: no \(name) pairs under --split \(data.split)") }
                return nil
            }
            let dataset = try TranslationDataset(source: source, target: target, pairs: pairs, numSamples: count,
                                                 encoderSequenceLength: plan.trainer.sequenceLength,
                                                 decoderSequenceLength: t5.decoderSequenceLength, tokenizer: tokenizer,
                                                 seed: UInt32(plan.trainer.seed))
            if log {
                print("> translation data \(source.prefix) → \(target.prefix): \(name) pairs \(pairs.lowerBound) ..< \(pairs.upperBound) "
                      + "of \(source.sequenceCount); \(dataset.count) samples")
            }
            return { dataset.sample($0) }
        }
    }
}

extension PretrainingData where Model == BertModel {
    /// BertDatasets over the sentence-split --data-path, masked by `bert`'s settings with
    /// `tokenizer`'s vocabulary.
    init(bert: PretrainPlan.Bert, plan: PretrainPlan, tokenizer: BertWordPieceTokenizer, world: any Communicator, log: Bool) throws {
        try self.init(sentenceSplitsOf: plan, world: world, log: log) { indexed, documents, count in
            let dataset = try BertDataset(indexed, documents: documents, numSamples: count, sequenceLength: plan.trainer.sequenceLength,
                                          binaryHead: bert.binaryHead, tokenizer: tokenizer, maskProbability: bert.maskProbability,
                                          shortSequenceProbability: bert.shortSequenceProbability, seed: Int32(plan.trainer.seed))
            return ({ dataset.sample($0).sample }, "\(dataset.count) samples of up to \(plan.trainer.sequenceLength) tokens "
                    + "over \(dataset.base.sampleIndex.epochs) epoch(s)")
        }
    }
}
