import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// The sharded format (--ckpt-format torch_dist): a save of TP 2 × PP 2 × DP 2 with the distributed
/// optimizer resumes bit for bit on its own layout and, resharded, on one rank, TP 4 and PP 4 exactly
/// as from the whole-model format (so with the uninterrupted run's losses to rounding); each global
/// tensor is stored once, in chunks from the ranks that own them; asynchronous saves resume too.
struct ShardedCheckpointTests {
    static let config: TransformerConfig = {
        var config = CheckpointTests.config
        config.numLayers = 4
        return config
    }()

    /// 16-bit storage and Megatron's precision-aware optimizer (bf16 parameters and gradients, bf16
    /// moments, the main parameters as remainders): a TP 2 × PP 2 × DP 2 save holds every tensor in
    /// the precision training keeps it in, resumes bit for bit on its own layout, and resharded onto
    /// one rank continues the uninterrupted run's losses to bf16's rounding.
    @Test func sixteenBitStateIsSavedAsKeptAndResumes() throws {
        let directory = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        func run(tp: Int = 2, pp: Int = 2, dp: Int = 2, save: URL? = nil, exitInterval: Int? = nil, load: URL? = nil) throws -> CheckpointTests.Outcome {
            try CheckpointTests.run(dp: dp, tp: tp, pp: pp, distributedOptimizer: dp > 1, modelSeed: load == nil ? 3 : 99, save: save,
                                    exitInterval: exitInterval, load: load, precision: { settings in
                                        settings.paramsDType = .bfloat16
                                        settings.gradBufferDType = .bfloat16
                                        settings.expAvgDType = .bfloat16
                                        settings.expAvgSqDType = .bfloat16
                                        settings.storeParamRemainders = true
                                    }, storage: ParameterStorage(parameters: .bfloat16, gradients: .bfloat16), config: Self.config)
        }
        let straight = try run()
        _ = try run(save: directory, exitInterval: 3)
        let folder = Checkpoint.iterationDirectory(directory, iteration: 3)
        let metadata = try JSONDecoder().decode(ShardedCheckpoint.Metadata.self,
                                                from: Data(contentsOf: folder.appendingPathComponent(ShardedCheckpoint.metadataName)))
        #expect(Set(metadata.model.values.map(\.dtype)) == ["BF16"])
        let optimizerDTypes = Dictionary(grouping: metadata.optimizer, by: { String($0.key.split(separator: ".").last!) }).mapValues { Set($0.map(\.value.dtype)) }
        #expect(optimizerDTypes == ["exp_avg": ["BF16"], "exp_avg_sq": ["BF16"], "fp32_param_remainder": ["U16"]], "\(optimizerDTypes)")

        let resumed = try run(load: directory)
        #expect(resumed.loaded == 3 && resumed.steps.count == 3)
        #expect(zip(straight.steps.dropFirst(3), resumed.steps).allSatisfy { $0.loss == $1.loss && $0.gradNorm == $1.gradNorm },
                "\(straight.steps) vs \(resumed.steps)")
        #expect(CheckpointTests.differing(straight.parameters, resumed.parameters) == 0)

        let oneRank = try run(tp: 1, pp: 1, dp: 1, load: directory)
        #expect(oneRank.steps.count == 3)
        #expect(zip(straight.steps.dropFirst(3), oneRank.steps).allSatisfy { abs($0.loss - $1.loss) <= 1e-3 * $0.loss },
                "\(straight.steps) vs one rank \(oneRank.steps)")
    }

    @Test func aSaveOfEveryParallelismReshardsOntoOtherLayouts() throws {
        let sharded = CheckpointTests.temporaryDirectory(), whole = CheckpointTests.temporaryDirectory()
        defer { for d in [sharded, whole] { try? FileManager.default.removeItem(at: d) } }
        func run(tp: Int = 2, pp: Int = 2, dp: Int = 2, save: URL? = nil, format: CheckpointFormat = .torchDist, exitInterval: Int? = nil,
                 load: URL? = nil) throws -> CheckpointTests.Outcome {
            try CheckpointTests.run(dp: dp, tp: tp, pp: pp, distributedOptimizer: dp > 1, modelSeed: load == nil ? 3 : 99, save: save,
                                    format: format, exitInterval: exitInterval, load: load, config: Self.config)
        }
        let straight = try run()
        _ = try run(save: sharded, exitInterval: 3)
        _ = try run(save: whole, format: .torch, exitInterval: 3)

        let folder = Checkpoint.iterationDirectory(sharded, iteration: 3)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(files == ["checkpoint.json", "metadata.json"] + (0 ..< 8).map { ShardedCheckpoint.fileName(rank: $0) }, "\(files)")
        // Every element of every global tensor is stored exactly once (the reader checks coverage).
        let metadata = try JSONDecoder().decode(ShardedCheckpoint.Metadata.self,
                                                from: Data(contentsOf: folder.appendingPathComponent(ShardedCheckpoint.metadataName)))
        #expect(metadata.model.count == Self.config.wholeLayout.entries.count)
        #expect(metadata.optimizer.count == 2 * Self.config.wholeLayout.entries.count)
        for (name, tensor) in metadata.model.merging(metadata.optimizer, uniquingKeysWith: { a, _ in a }) {
            let stored = tensor.chunks.reduce(0) { $0 + $1.placement.end - $1.placement.start }
            #expect(stored == tensor.shape.reduce(1, *), "\(name): \(stored) elements stored of \(tensor.shape)")
        }

        // One process reads the same model from either format.
        let fromShards = try GPTModel.latestCheckpoint(in: sharded, on: CPUDevice(threads: 1)).model.parameters.toFloatArray()
        let fromWhole = try GPTModel.latestCheckpoint(in: whole, on: CPUDevice(threads: 1)).model.parameters.toFloatArray()
        #expect(CheckpointTests.differing(fromShards, fromWhole) == 0)

        let resumed = try run(load: sharded)
        #expect(resumed.loaded == 3 && resumed.steps.count == 3)
        #expect(zip(straight.steps.dropFirst(3), resumed.steps).allSatisfy { $0.loss == $1.loss && $0.gradNorm == $1.gradNorm },
                "\(straight.steps) vs \(resumed.steps)")
        #expect(CheckpointTests.differing(straight.parameters, resumed.parameters) == 0)

        for (tp, pp) in [(1, 1), (4, 1), (1, 4)] {
            let resharded = try run(tp: tp, pp: pp, dp: 1, load: sharded)
            let reference = try run(tp: tp, pp: pp, dp: 1, load: whole)
            #expect(resharded.steps.count == 3)
            #expect(zip(resharded.steps, reference.steps).allSatisfy { $0.loss == $1.loss && $0.gradNorm == $1.gradNorm },
                    "tp \(tp) pp \(pp): from shards \(resharded.steps), from the whole format \(reference.steps)")
            for (a, b) in zip(straight.steps.dropFirst(3), resharded.steps) {
                #expect(abs(a.loss - b.loss) <= 1e-5 * a.loss && abs(a.gradNorm - b.gradNorm) <= 1e-4 * a.gradNorm,
                        "tp \(tp) pp \(pp): \(a) vs \(b)")
            }
        }
    }

    /// With --async-save every iteration's save is written in the background and published after a
    /// later iteration (or at the end): the run resumes from its last one bit for bit.
    @Test func anAsynchronousSaveResumesBitForBit() throws {
        let directory = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try CheckpointTests.run(dp: 2, distributedOptimizer: true)
        let first = try CheckpointTests.run(dp: 2, distributedOptimizer: true, save: directory, asyncSave: true, saveInterval: 1,
                                            exitInterval: 3)
        #expect(first.exited && first.steps.count == 3)
        #expect(try Checkpoint.latestIteration(in: directory) == 3)
        let saved = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("iter_") }.sorted()
        #expect(saved == ["iter_0000001", "iter_0000002", "iter_0000003"])
        let resumed = try CheckpointTests.run(dp: 2, distributedOptimizer: true, modelSeed: 99, load: directory)
        #expect(zip(straight.steps.dropFirst(3), resumed.steps).allSatisfy { $0.loss == $1.loss && $0.gradNorm == $1.gradNorm },
                "\(straight.steps) vs \(resumed.steps)")
        #expect(CheckpointTests.differing(straight.parameters, resumed.parameters) == 0)
    }

    @Test func aMissingShardIsAClearError() throws {
        let directory = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try CheckpointTests.run(dp: 2, distributedOptimizer: true, save: directory, exitInterval: 3)
        let shard = Checkpoint.iterationDirectory(directory, iteration: 3).appendingPathComponent(ShardedCheckpoint.fileName(rank: 1))
        try FileManager.default.removeItem(at: shard)
        let missing = #expect(throws: (any Error).self) { try CheckpointTests.run(load: directory) }
        #expect(missing.map { "\($0)" }?.contains(shard.path) == true, "\(String(describing: missing))")
    }
}
