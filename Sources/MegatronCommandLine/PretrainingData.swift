import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining

/// A rank's samples of a plan's data, as Megatron's BlendedMegatronDatasetBuilder builds them:
/// each --data-path dataset (or the mock documents) split into training, validation and test
/// documents, a GPTDataset over each, blended by weight.
struct PretrainingData {
    /// Training sample i (sequence length + 1 tokens).
    let training: @Sendable (Int) -> [Int32]
    /// The first document's tokens (the default prompt of the sample after training).
    let firstSample: [Int32]
    /// The validation and test samples, under --eval-iters.
    let evaluation: Trainer<GPTModel>.Evaluation?

    /// With --data-cache-path, rank 0 builds and saves the indices first and the others then load
    /// them, as Megatron does (one build, not one per rank); `log` prints what was built.
    init(_ plan: PretrainPlan, world: any Communicator, log: Bool) throws {
        let data = plan.data
        let rank0BuildsFirst = data.cachePath != nil && world.size > 1
        if rank0BuildsFirst && world.rank != 0 { try world.barrier() }
        let sources: [any LowLevelDataset] = data.mock
            ? [MockGPTLowLevelDataset(vocabSize: plan.vocabularySize, endOfDocument: data.endOfDocument)]
            : try data.blend.prefixes.map { try IndexedDataset(prefix: $0) }
        let split = { (index: Int, samples: Int) in try Self.samples(plan, sources: sources, split: index, count: samples, log: log) }
        guard let training = try split(0, data.trainingSamples) else {
            throw ConfigError(flag: "--split", "--split \(data.split): the training split is empty")
        }
        self.training = training
        firstSample = sources[0].sequence(0)
        if let planned = plan.evaluation {
            var evaluation = Trainer<GPTModel>.Evaluation(interval: planned.interval, iterations: planned.iterations, validation: nil, test: nil)
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

    /// `count` samples of split `index` (0 train, 1 validation, 2 test) over `sources`, the blend's
    /// datasets; nil when the split is empty.
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
