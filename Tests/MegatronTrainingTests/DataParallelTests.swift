import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// Data parallelism computes what one rank computes: the same loss and gradient norm at every step
/// for the same global batch, with dropout on (each micro-batch keeps its masks).
struct DataParallelTests {
    static let steps = 20

    /// Trains the tiny model on dp × tp in-process ranks; returns the losses and grad norms rank 0 saw.
    static func train(dataParallelSize dp: Int, tensorParallelSize tp: Int = 1, pipelineParallelSize pp: Int = 1, contextParallelSize cp: Int = 1,
                      sequenceParallel: Bool = false, numLayers: Int = 2, virtualPipelineStages: Int? = nil, dropout: (hidden: Float, attention: Float) = (0.1, 0.1),
                      ddp: DistributedDataParallel.Settings = .init(),
                      optimizerStateBytes: UnsafeMutablePointer<Int>? = nil,
                      validationLog: UnsafeMutablePointer<[String]>? = nil,
                      precision: @escaping @Sendable (inout Optimizer.Settings) -> Void = { _ in }) throws -> [(loss: Float, gradNorm: Double)] {
        var config = TransformerConfig(numLayers: numLayers, hiddenSize: 32, numAttentionHeads: 4, paddedVocabSize: 128, maxPositionEmbeddings: 16)
        config.virtualPipelineModelParallelSize = virtualPipelineStages
        (config.hiddenDropout, config.attentionDropout) = dropout
        let modelConfig = config
        let data = try MockData(vocabSize: 128, sequenceLength: 16, seed: 5)
        let results = Results()
        try InProcessWorld(size: dp * tp * pp * cp).run { world in
            let state = try ParallelState(worldSize: dp * tp * pp * cp, tensorModelParallelSize: tp, pipelineModelParallelSize: pp,
                                          contextParallelSize: cp)
            let groups = try ProcessGroups(world: world, state: state)
            let model = try GPTModel(config: modelConfig, seed: 3, groups: groups, on: CPUDevice(threads: 1))
            model.sequenceParallel = sequenceParallel
            let dataParallel = try DistributedDataParallel(model: model, settings: ddp)
            var optimizerSettings = Optimizer.Settings()
            optimizerSettings.clipGrad = 0.3
            precision(&optimizerSettings)
            let optimizer = try Optimizer(model: model, settings: optimizerSettings, dataParallel: dataParallel)
            var settings = TrainingSettings(trainIters: steps, microBatchSize: 1, globalBatchSize: 8, sequenceLength: 16)
            settings.logInterval = steps
            var lines: [String] = []
            let trainer = try Trainer(model: model, optimizer: optimizer,
                                  scheduler: .init(maxLR: 3e-3, warmupSteps: 32, decaySteps: 320, decayStyle: .cosine),  // in samples
                                  settings: settings, dataParallel: dataParallel, sample: data.sample,
                                  log: { line in if line.contains("validation loss") { lines.append(line) } })
            let heldOut = try MockData(vocabSize: 128, sequenceLength: 16, seed: 77)
            trainer.evaluation = .init(interval: 10, iterations: 2, validation: heldOut.sample, test: nil)
            let trained = try trainer.train()
            if world.rank == 0 {
                results.set(trained.map { ($0.loss, $0.gradNorm) }, stateBytes: optimizer.stateBytes)
                results.validationLog = lines
            }
        }
        optimizerStateBytes?.pointee = results.stateBytes
        validationLog?.pointee = results.validationLog
        return results.values
    }

    final class Results: @unchecked Sendable {
        var values: [(loss: Float, gradNorm: Double)] = []
        var stateBytes = 0
        var validationLog: [String] = []
        func set(_ v: [(loss: Float, gradNorm: Double)], stateBytes: Int) { values = v; self.stateBytes = stateBytes }
    }

    /// The same losses (to `tolerance` relative) and gradient norms (to 10 × `tolerance`) at every step.
    static func expectSame(_ a: [(loss: Float, gradNorm: Double)], _ b: [(loss: Float, gradNorm: Double)], _ what: String,
                           tolerance: Float = 1e-5) {
        #expect(a.count == steps && b.count == steps)
        for (step, (x, y)) in zip(a, b).enumerated() {
            #expect(abs(x.loss - y.loss) <= tolerance * abs(x.loss), "\(what): step \(step + 1) loss \(x.loss) vs \(y.loss)")
            #expect(abs(x.gradNorm - y.gradNorm) <= 10 * Double(tolerance) * x.gradNorm,
                    "\(what): step \(step + 1) grad norm \(x.gradNorm) vs \(y.gradNorm)")
        }
    }

    @Test func dataParallelTwoAndFourMatchOneRank() throws {
        var singleLog: [String] = [], dpLog: [String] = []
        let single = try Self.train(dataParallelSize: 1, validationLog: &singleLog)
        #expect(single.last!.loss < single.first!.loss - 0.2, "the run must learn for the comparison to mean anything")
        Self.expectSame(single, try Self.train(dataParallelSize: 2, validationLog: &dpLog), "DP=2")
        Self.expectSame(single, try Self.train(dataParallelSize: 4), "DP=4")
        // Evaluation at iterations 10 and 20 and at the end, each the same on any DP size.
        let values = { (log: [String]) in log.map { $0.split(separator: "|")[1].split(separator: ":")[1].trimmingCharacters(in: .whitespaces) } }
        #expect(singleLog.count == 3 && singleLog.last!.contains("iteration 20 on validation set"), "\(singleLog)")
        #expect(zip(values(singleLog), values(dpLog)).allSatisfy { abs(Double($0)! - Double($1)!) <= 1e-5 * Double($0)! },
                "\(singleLog) vs \(dpLog)")
        // (Mock documents count modulo the vocabulary, so the end-of-run evaluation's samples repeat the
        // iteration-20 ones: only the first two must differ, the weights having changed.)
        #expect(values(singleLog)[0] != values(singleLog)[1], "\(singleLog)")
    }

    @Test func overlappedBucketsMatchOneRank() throws {
        var ddp = DistributedDataParallel.Settings()
        ddp.overlapGradReduce = true
        ddp.bucketSize = 3000
        Self.expectSame(try Self.train(dataParallelSize: 1), try Self.train(dataParallelSize: 4, ddp: ddp), "DP=4 overlapped")
    }

    @Test func distributedOptimizerMatchesThePlainOneAndShardsItsState() throws {
        var plainBytes = 0, shardedBytes = 0
        let plain = try Self.train(dataParallelSize: 4, optimizerStateBytes: &plainBytes)
        var ddp = DistributedDataParallel.Settings()
        ddp.useDistributedOptimizer = true
        ddp.overlapGradReduce = true
        ddp.bucketSize = 3000
        Self.expectSame(plain, try Self.train(dataParallelSize: 4, ddp: ddp, optimizerStateBytes: &shardedBytes), "distributed optimizer")
        #expect(abs(shardedBytes * 4 - plainBytes) <= 4 * 8 * 16, "Adam state \(shardedBytes) B per rank vs \(plainBytes) B unsharded")
    }

    /// --overlap-param-gather moves the same all-gathers onto the communication thread, each waited
    /// for when the forward reaches its bucket (validation included): the same bits.
    @Test func overlappedParameterGatherChangesNoBit() throws {
        var ddp = DistributedDataParallel.Settings()
        ddp.useDistributedOptimizer = true
        ddp.overlapGradReduce = true
        ddp.bucketSize = 3000
        var plainLog: [String] = [], overlappedLog: [String] = []
        let plain = try Self.train(dataParallelSize: 4, ddp: ddp, validationLog: &plainLog)
        ddp.overlapParamGather = true
        let overlapped = try Self.train(dataParallelSize: 4, ddp: ddp, validationLog: &overlappedLog)
        Self.expectSame(plain, overlapped, "overlapped parameter all-gather", tolerance: 0)
        #expect(plainLog == overlappedLog && plainLog.count == 3, "\(plainLog) vs \(overlappedLog)")
    }

    @Test func overlappedParameterGatherNeedsTheDistributedOptimizerAndOverlappedReduction() throws {
        let config = TransformerConfig(numLayers: 1, hiddenSize: 32, numAttentionHeads: 4, paddedVocabSize: 128, maxPositionEmbeddings: 16)
        let model = try GPTModel(config: config, seed: 1, on: CPUDevice(threads: 1))
        var settings = DistributedDataParallel.Settings()
        settings.overlapParamGather = true
        settings.overlapGradReduce = true
        #expect(throws: ConfigError.self) { try DistributedDataParallel(model: model, settings: settings) }
        settings.useDistributedOptimizer = true
        settings.overlapGradReduce = false
        #expect(throws: ConfigError.self) { try DistributedDataParallel(model: model, settings: settings) }
    }

    /// Over pipeline stages with tied embeddings, the word embedding each end stage holds is a bucket
    /// of its own, so both stages reduce (and under the distributed optimizer shard) it alike.
    @Test func theSharedWordEmbeddingIsABucketOfItsOwn() throws {
        let config = TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, paddedVocabSize: 128, maxPositionEmbeddings: 16)
        let failures = Failures()
        try InProcessWorld(size: 2).run { pipeline in
            let groups = try ProcessGroups(world: pipeline, state: ParallelState(worldSize: 2, pipelineModelParallelSize: 2))
            let model = try GPTModel(config: config, seed: 1, groups: groups, on: CPUDevice(threads: 1))
            let ddp = try DistributedDataParallel(model: model)
            guard let shared = model.sharedEmbeddingRange, ddp.buckets.contains(shared), ddp.buckets.count == 2
            else { return failures.add("stage \(pipeline.rank): buckets \(ddp.buckets), shared \(String(describing: model.sharedEmbeddingRange))") }
            if ddp.buckets.reduce(0, { $0 + $1.count }) != model.layout.totalCount { failures.add("stage \(pipeline.rank): buckets miss parameters") }
        }
        #expect(failures.messages.isEmpty, "\(failures.messages)")
    }

    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var messages: [String] = []
        func add(_ message: String) { lock.lock(); messages.append(message); lock.unlock() }
    }

    @Test func bucketsRunInReverseParameterOrderAndCoverTheBuffer() throws {
        let config = TransformerConfig(numLayers: 3, hiddenSize: 32, numAttentionHeads: 4, paddedVocabSize: 128, maxPositionEmbeddings: 16)
        let model = try GPTModel(config: config, seed: 1, on: CPUDevice(threads: 1))
        var settings = DistributedDataParallel.Settings()
        settings.overlapGradReduce = true
        settings.bucketSize = 5000
        let ddp = try DistributedDataParallel(model: model, settings: settings)
        #expect(ddp.buckets.count > 2)
        #expect(ddp.buckets.first!.upperBound == model.layout.totalCount && ddp.buckets.last!.lowerBound == 0)
        for (a, b) in zip(ddp.buckets, ddp.buckets.dropFirst()) { #expect(b.upperBound == a.lowerBound) }
        for bucket in ddp.buckets.dropLast() { #expect(bucket.count >= 5000) }
        let starts = Set(model.layout.entries.map(\.offset))
        #expect(ddp.buckets.allSatisfy { starts.contains($0.lowerBound) }, "buckets cut at parameter boundaries")
    }
}

/// The distributed optimizer's gradient norm covers every rank's shard: all ranks clip by the
/// whole model's norm, and a non-finite gradient on one rank's shard skips the step everywhere.
struct ShardedGradientNormTests {
    final class Outcomes: @unchecked Sendable {
        var values: [Int: (norm: Double, skipped: Bool)] = [:]
        let lock = NSLock()
        func record(_ rank: Int, _ value: (Double, Bool)) { lock.lock(); values[rank] = value; lock.unlock() }
    }

    static func step(poisonRank: Int?) throws -> (outcomes: [Int: (norm: Double, skipped: Bool)], fullNorm: Double) {
        let config = TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, paddedVocabSize: 64, maxPositionEmbeddings: 8)
        let outcomes = Outcomes()
        let n = ParameterLayout(config).totalCount
        let gradient: @Sendable (Int) -> Float = { Float($0 % 13) * 1e-3 - 5e-3 }
        try InProcessWorld(size: 3).run { world in
            let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: 3))
            let model = try GPTModel(config: config, seed: 1, groups: groups, on: CPUDevice(threads: 1))
            var settings = DistributedDataParallel.Settings()
            settings.useDistributedOptimizer = true
            let ddp = try DistributedDataParallel(model: model, settings: settings)
            for i in 0 ..< n { model.gradients.floats[i] = gradient(i) }
            if world.rank == poisonRank { model.gradients.floats[ddp.ownedRanges[0].lowerBound] = .nan }
            let optimizer = try Optimizer(model: model, settings: .init(), dataParallel: ddp)
            let (norm, skipped) = try optimizer.step(learningRate: 0)
            outcomes.record(world.rank, (norm ?? .nan, skipped))
        }
        let fullNorm = (0 ..< n).reduce(0.0) { $0 + Double(gradient($1)) * Double(gradient($1)) }.squareRoot()
        return (outcomes.values, fullNorm)
    }

    @Test func everyRankSeesTheWholeModelsNorm() throws {
        let (outcomes, fullNorm) = try Self.step(poisonRank: nil)
        #expect(outcomes.count == 3)
        for (rank, outcome) in outcomes {
            #expect(!outcome.skipped)
            #expect(abs(outcome.norm - fullNorm) <= 1e-6 * fullNorm, "rank \(rank): \(outcome.norm) vs \(fullNorm)")
        }
    }

    @Test func aNaNOnOneRanksShardSkipsTheStepOnEveryRank() throws {
        let (outcomes, _) = try Self.step(poisonRank: 1)
        #expect(outcomes.count == 3)
        #expect(outcomes.values.allSatisfy { $0.skipped && !$0.norm.isFinite })
    }
}
