import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// Tensor and pipeline parallelism, alone and with data parallelism, train as one rank does (dropout
/// on, the gradient clipped every step so the norm over the parts matters), and their checkpoints
/// hold the whole model: saved on 2 tensor-parallel ranks or 2 pipeline stages, they resume exactly
/// on the same layout and, to rounding, on another (one rank, or 2 tensor-parallel ranks).
struct ModelParallelTrainingTests {
    /// Layouts that train as one rank: data-, tensor- and pipeline-parallel sizes, sequence
    /// parallelism, and the distributed optimizer (with overlapped reduction in small buckets, and
    /// where the last field is true overlapped parameter all-gathers).
    static let layouts: [(dp: Int, tp: Int, pp: Int, sequenceParallel: Bool, distributedOptimizer: Bool, overlapParamGather: Bool)] = [
        (1, 2, 1, false, false, false), (2, 2, 1, false, true, false), (2, 2, 1, true, true, true),
        // One stage per layer: 8 micro-batches a step, 1F1B with warm-up and cool-down.
        (1, 1, 2, false, false, false), (2, 1, 2, false, true, true), (1, 2, 2, true, false, false),
    ]

    @Test(arguments: layouts.indices)
    func trainsAsOneRank(layout index: Int) throws {
        let l = Self.layouts[index]
        let ddp = Self.ddp(distributedOptimizer: l.distributedOptimizer, overlapParamGather: l.overlapParamGather)
        let name = "DP=\(l.dp) TP=\(l.tp) PP=\(l.pp)\(l.sequenceParallel ? " SP" : "")\(l.distributedOptimizer ? ", distributed optimizer" : "")"
        DataParallelTests.expectSame(try DataParallelTests.train(dataParallelSize: 1),
                                     try DataParallelTests.train(dataParallelSize: l.dp, tensorParallelSize: l.tp, pipelineParallelSize: l.pp,
                                                                 sequenceParallel: l.sequenceParallel, ddp: ddp),
                                     name, tolerance: 1e-4)
    }

    /// Data parallelism's settings: with the distributed optimizer, overlapped reduction in small
    /// buckets and, when `overlapParamGather`, overlapped parameter all-gathers.
    static func ddp(distributedOptimizer: Bool, overlapParamGather: Bool) -> DistributedDataParallel.Settings {
        var ddp = DistributedDataParallel.Settings()
        if distributedOptimizer {
            ddp.useDistributedOptimizer = true
            ddp.overlapGradReduce = true
            ddp.bucketSize = 3000
            ddp.overlapParamGather = overlapParamGather
        }
        return ddp
    }

    /// Layouts under the interleaved schedule that train as one rank: data-, tensor- and
    /// pipeline-parallel sizes, model chunks per stage (one layer each), sequence parallelism and
    /// the distributed optimizer with overlapped reduction and gathers. 8 micro-batches a step over
    /// DP=1, so warm-up, steady state and cool-down; 2 over DP=4 and PP=2, so all forwards first.
    static let interleavedLayouts: [(dp: Int, tp: Int, pp: Int, chunks: Int, sequenceParallel: Bool, distributedOptimizer: Bool)] = [
        (1, 1, 2, 2, false, false), (1, 1, 4, 2, false, false), (1, 1, 2, 3, false, false), (4, 1, 2, 2, false, true),
        (2, 2, 2, 2, true, true),
    ]

    @Test(arguments: interleavedLayouts.indices)
    func interleavedPipelineTrainsAsOneRank(layout index: Int) throws {
        let l = Self.interleavedLayouts[index]
        let ddp = Self.ddp(distributedOptimizer: l.distributedOptimizer, overlapParamGather: true)
        let layers = l.pp * l.chunks
        let name = "DP=\(l.dp) TP=\(l.tp) PP=\(l.pp) × \(l.chunks) chunks\(l.sequenceParallel ? " SP" : "")"
            + (l.distributedOptimizer ? ", distributed optimizer" : "")
        var singleLog: [String] = [], interleavedLog: [String] = []
        DataParallelTests.expectSame(try DataParallelTests.train(dataParallelSize: 1, numLayers: layers, validationLog: &singleLog),
                                     try DataParallelTests.train(dataParallelSize: l.dp, tensorParallelSize: l.tp, pipelineParallelSize: l.pp,
                                                                 sequenceParallel: l.sequenceParallel, numLayers: layers,
                                                                 virtualPipelineStages: l.chunks, ddp: ddp, validationLog: &interleavedLog),
                                     name, tolerance: 1e-4)
        // Evaluation runs the interleaved schedule's forwards only.
        Self.expectSameValidation(singleLog, interleavedLog, name)
    }

    /// Context parallelism (each sequence of 16 tokens in 2·cp chunks, two per rank) alone and with
    /// tensor (sequence-parallel), data (the distributed optimizer sharded over dp·cp) and pipeline
    /// parallelism trains as one rank does, evaluation included, hidden dropout too (each row takes
    /// its mask of the whole micro-batch); its ring attention has no dropout.
    static let contextParallelLayouts: [(cp: Int, dp: Int, tp: Int, pp: Int, sequenceParallel: Bool, distributedOptimizer: Bool)] = [
        (2, 1, 1, 1, false, false), (4, 1, 1, 1, false, false), (2, 1, 2, 1, true, false), (2, 2, 1, 1, false, true),
        (2, 1, 1, 2, false, false),
    ]

    @Test(arguments: contextParallelLayouts.indices)
    func contextParallelTrainsAsOneRank(layout index: Int) throws {
        let l = Self.contextParallelLayouts[index]
        let ddp = Self.ddp(distributedOptimizer: l.distributedOptimizer, overlapParamGather: true)
        let name = "CP=\(l.cp) DP=\(l.dp) TP=\(l.tp) PP=\(l.pp)\(l.sequenceParallel ? " SP" : "")"
            + (l.distributedOptimizer ? ", distributed optimizer" : "")
        var singleLog: [String] = [], splitLog: [String] = []
        DataParallelTests.expectSame(try DataParallelTests.train(dataParallelSize: 1, dropout: (0.1, 0), validationLog: &singleLog),
                                     try DataParallelTests.train(dataParallelSize: l.dp, tensorParallelSize: l.tp, pipelineParallelSize: l.pp,
                                                                 contextParallelSize: l.cp, sequenceParallel: l.sequenceParallel,
                                                                 dropout: (0.1, 0), ddp: ddp, validationLog: &splitLog),
                                     name, tolerance: 1e-4)
        Self.expectSameValidation(singleLog, splitLog, name)
    }

    /// The same validation lines, their lm losses to 1e-4 relative.
    static func expectSameValidation(_ a: [String], _ b: [String], _ what: String) {
        let loss = { (line: String) in
            line.split(separator: "|").first { $0.contains("lm loss value:") }
                .flatMap { Double($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) }
        }
        #expect(!a.isEmpty && a.count == b.count, "\(what): validation lines \(a) vs \(b)")
        for (x, y) in zip(a.map(loss), b.map(loss)) {
            #expect(x != nil && y != nil && abs(x! - y!) <= 1e-4 * x!, "\(what): validation loss \(x ?? .nan) vs \(y ?? .nan)")
        }
    }

    /// Uneven pipeline stages (three layers: one on the first stage, two on the last) train as one
    /// rank does, and their checkpoint, gathered from stages of different sizes, resumes on one rank.
    @Test func unevenPipelineStagesTrainAndResumeAsOneRank() throws {
        var uneven = CheckpointTests.config
        uneven.numLayers = 3
        uneven.numLayersInFirstPipelineStage = 1
        let directory = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let single = try CheckpointTests.run(config: uneven)
        let staged = try CheckpointTests.run(pp: 2, save: directory, exitInterval: 3, config: uneven)
        let resumed = try CheckpointTests.run(modelSeed: 99, load: directory, config: uneven)
        #expect(resumed.loaded == 3)
        for (step, (a, b)) in zip(single.steps, staged.steps + resumed.steps).enumerated() {
            #expect(abs(a.loss - b.loss) <= 1e-5 * a.loss && abs(a.gradNorm - b.gradNorm) <= 1e-4 * a.gradNorm,
                    "iteration \(step + 1): one rank \(a) vs uneven stages, then one rank \(b)")
        }
    }

    /// A model-parallel layout (tp, pp) and its name.
    typealias Layout = (tp: Int, pp: Int, name: String)

    /// Saves at iteration 3 on `saved`, resumes on the same layout (bit for bit the run that never
    /// stopped) and on `other` (the same to rounding), the model `config`, split on `other` as
    /// `otherConfig` says when given.
    static func expectResumes(savedOn saved: Layout, andOn other: Layout, config: TransformerConfig = CheckpointTests.config,
                              otherConfig: TransformerConfig? = nil) throws {
        let directory = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try CheckpointTests.run(tp: saved.tp, pp: saved.pp, config: config)
        _ = try CheckpointTests.run(tp: saved.tp, pp: saved.pp, save: directory, exitInterval: 3, config: config)
        let resumed = try CheckpointTests.run(tp: saved.tp, pp: saved.pp, modelSeed: 99, load: directory, config: config)
        #expect(resumed.loaded == 3)
        for (step, (a, b)) in zip(straight.steps.dropFirst(3), resumed.steps).enumerated() {
            #expect(a.loss == b.loss && a.gradNorm == b.gradNorm, "\(saved.name) resumed on itself, iteration \(step + 4): \(a) vs \(b)")
        }
        #expect(CheckpointTests.differing(straight.parameters, resumed.parameters) == 0)
        let moved = try CheckpointTests.run(tp: other.tp, pp: other.pp, modelSeed: 99, load: directory, config: otherConfig ?? config)
        #expect(moved.loaded == 3 && moved.steps.count == 3)
        for (step, (a, b)) in zip(straight.steps.dropFirst(3), moved.steps).enumerated() {
            #expect(abs(a.loss - b.loss) <= 1e-5 * a.loss && abs(a.gradNorm - b.gradNorm) <= 1e-4 * a.gradNorm,
                    "\(saved.name) resumed on \(other.name), iteration \(step + 4): \(a) vs \(b)")
        }
    }

    @Test func aPipelineParallelCheckpointResumesOnTwoStagesAndOnTwoTensorParallelRanks() throws {
        try Self.expectResumes(savedOn: (1, 2, "PP=2"), andOn: (2, 1, "TP=2"))
    }

    /// Saved by 2 stages of 2 model chunks each (interleaved), a checkpoint resumes on them bit for bit
    /// and on 4 stages of one chunk each (1F1B) to rounding: each layer is stored under its own name.
    @Test func anInterleavedPipelineCheckpointResumesOnItselfAndOnFourStages() throws {
        var interleaved = CheckpointTests.config
        interleaved.numLayers = 4
        interleaved.virtualPipelineModelParallelSize = 2
        var fourStages = interleaved
        fourStages.virtualPipelineModelParallelSize = nil
        try Self.expectResumes(savedOn: (1, 2, "PP=2 × 2 chunks"), andOn: (1, 4, "PP=4"), config: interleaved, otherConfig: fourStages)
    }

    @Test func aTensorParallelCheckpointResumesOnTwoRanksAndOnOne() throws {
        try Self.expectResumes(savedOn: (2, 1, "TP=2"), andOn: (1, 1, "one rank"))
    }
}
