import ArgumentParser
import MegatronCommandLine
import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining

/// `megatron-bench parallel` (or `data-parallel`): training throughput of a GPT-2-shaped model over
/// a parallel layout, how much of the gradient reduction backward hides and, under pipeline
/// parallelism, the bubble each stage measures against the schedule's (P − 1)/(v·M). Run it alone
/// for one rank and under `mpirun -np N` (or with the in-process backend) for N; same global batch,
/// mock data, no dropout.
struct BenchParallel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parallel",
        abstract: "Parallel training throughput: gradient communication hidden behind backward, the pipeline bubble.",
        aliases: ["data-parallel"])

    @OptionGroup(title: "Distributed") var distributed: DistributedArguments
    @OptionGroup var device: DeviceOptions
    @Option(help: "tiny (L4 h256 s256), small (L6 h512 s512) or 124m (L12 h768 s1024); vocab 50304.")
    var config = "124m"
    @Option(name: .customLong("num-layers"), help: "Transformer layers (default: the config's).")
    var numLayers: Int?
    @Option(name: .customLong("seq-length"), help: "Tokens per sequence (default: the config's).")
    var seqLength: Int?
    @Option(name: .customLong("vocab-size"), help: ArgumentHelp("Vocabulary of the mock data, padded to a multiple of 128 (default GPT-2's; a small one "
            + "balances the last pipeline stage, whose output layer is the vocabulary's width)."))
    var vocabSize = 50257
    @Option(name: .customLong("global-batch-size"), help: "Sequences per step over all ranks (micro-batch 1).")
    var globalBatchSize = 2
    @Option(help: "Untimed steps first.") var warmup = 1
    @Option(help: "Timed steps.") var steps = 4

    func validate() throws {
        guard numLayers.map({ $0 >= 1 }) ?? true, seqLength.map({ $0 >= 1 }) ?? true, vocabSize >= 1 else {
            throw ValidationError("--num-layers, --seq-length and --vocab-size: expected at least 1")
        }
        guard globalBatchSize >= 1 else { throw ValidationError("--global-batch-size \(globalBatchSize): expected at least 1") }
        guard steps >= 1 else { throw ValidationError("--steps \(steps): expected at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup \(warmup): expected 0 or more") }
    }

    func run() throws {
        var (modelConfig, seq) = try BenchGPT.benchmarkModel(config)
        if let numLayers { modelConfig.numLayers = numLayers }
        if let seqLength { (seq, modelConfig.maxPositionEmbeddings) = (seqLength, seqLength) }
        modelConfig.paddedVocabSize = TransformerConfig.paddedVocabSize(vocabSize, tensorParallelSize: distributed.tensorModelParallelSize)
        modelConfig.virtualPipelineModelParallelSize = try distributed.virtualPipelineModelParallelSize(numLayers: modelConfig.numLayers)
        let options = self, c = modelConfig, sequenceLength = seq
        try distributed.launch { world in try options.measure(c, sequenceLength: sequenceLength, world: world) }
    }

    func measure(_ c: TransformerConfig, sequenceLength seq: Int, world: any Communicator) throws {
        let groups = try ProcessGroups(world: world, state: distributed.parallelState())
        let device = try device.makeDevice(ranksSharingCores: distributed.ranksPerMachine)
        let model = try GPTModel(config: c, seed: 0, groups: groups, on: device)
        let ddp = try DistributedDataParallel(model: model, settings: distributed.ddpSettings)
        let optimizer = try Optimizer(model: model, settings: .init(), dataParallel: ddp)
        var settings = TrainingSettings(trainIters: warmup + steps, microBatchSize: 1, globalBatchSize: globalBatchSize,
                                        sequenceLength: seq)
        settings.logInterval = warmup + steps
        // Megatron's mock documents, the first thousand.
        let data = try GPTDataset(MockGPTLowLevelDataset(vocabSize: vocabSize, endOfDocument: Int32(vocabSize - 1)), documents: 0 ..< 1000,
                                  numSamples: (warmup + steps) * globalBatchSize, sequenceLength: seq, seed: 1)
        let trainer = try Trainer(model: model, optimizer: optimizer, scheduler: .init(maxLR: 1e-4, warmupSteps: 0, decaySteps: 100, decayStyle: .constant),
                              settings: settings, dataParallel: ddp, sample: data.sample, log: { _ in })
        let timed = Array(try trainer.train().dropFirst(warmup))
        let median = { (values: [Double]) in Timing(seconds: values.sorted()).median }
        let step = median(timed.map(\.seconds))
        let communication = median(timed.map(\.gradSyncSeconds)), wait = median(timed.map(\.gradSyncWaitSeconds))
        let gather = median(timed.map(\.paramGatherSeconds)), gatherWait = median(timed.map(\.paramGatherWaitSeconds))
        let pipeline = try stageBubbles(timed, groups: groups)
        let tokens = Double(globalBatchSize * seq)
        let flops = modelFLOPsPerIteration(c, globalBatchSize: globalBatchSize, sequenceLength: seq)
        guard groups.isLastRank else { return }
        let state = groups.state, dp = state.dataParallelSize, p = state.pipelineModelParallelSize
        let v = c.virtualPipelineModelParallelSize ?? 1
        var lines = ["megatron-bench parallel — \(config) (L\(c.numLayers), vocab \(c.paddedVocabSize)), global batch "
                     + "\(globalBatchSize) × \(seq), DP=\(dp) TP=\(state.tensorModelParallelSize) PP=\(p)"
                     + (state.contextParallelSize > 1 ? " CP=\(state.contextParallelSize)" : "")
                     + (v > 1 ? " × \(v) model chunks" : "") + " (\(distributed.effectiveBackend.rawValue)), \(device.threads) thread(s) per rank, "
                     + "\(ddp.buckets.count) bucket(s)\(distributed.overlapGradReduce ? ", overlapped" : "")"
                     + (distributed.useDistributedOptimizer ? ", distributed optimizer" : ""),
                     "  step: median \(fixed(step * 1e3)) ms over \(steps) steps; \(fixed(tokens / step)) tokens/s; "
                     + "\(fixed(flops / step / 1e9)) model GFLOP/s in all"]
        if dp > 1 {
            lines.append("  gradient reduction: \(fixed(communication * 1e3)) ms per step, training thread waited "
                         + "\(fixed(wait * 1e3)) ms after backward → \(percent(max(0, 1 - wait / max(communication, 1e-12)))) hidden")
            if distributed.useDistributedOptimizer {
                lines.append("  parameter all-gather: \(fixed(gather * 1e3)) ms per step, training thread waited \(fixed(gatherWait * 1e3)) ms"
                             + (distributed.overlapParamGather ? " in forward" : "") + " → \(percent(max(0, 1 - gatherWait / max(gather, 1e-12)))) hidden")
            }
        }
        if p > 1 {
            let m = globalBatchSize / dp
            lines.append("  pipeline bubble (forward-backward time over each stage's compute, less 1), by stage: "
                         + pipeline.map { percent($0) }.joined(separator: ", ") + "; the schedule's (P − 1)/(v·M) = "
                         + "\(p - 1)/(\(v)·\(m)) = \(percent(Double(p - 1) / Double(v * m)))")
        }
        lines.append("  peak RSS of the last rank \(fixed(Double(peakResidentBytes()) / 1_073_741_824, 2)) GiB; optimizer state "
                     + "\(fixed(Double(optimizer.stateBytes) / 1_048_576)) MiB per rank")
        print(lines.joined(separator: "\n"))
    }
}

extension BenchParallel {
    /// Each pipeline stage's bubble, on every rank: the forward-backward time of the whole pipeline
    /// (its slowest stage's) over the stage's own compute (its forward-backward less its exchanges
    /// with the other stages), less one; medians over `timed`, measured on the first tensor-, context- and
    /// data-parallel rank of each stage.
    func stageBubbles(_ timed: [IterationResult], groups: ProcessGroups) throws -> [Double] {
        let p = groups.state.pipelineModelParallelSize, stage = groups.pipelineModelParallel.rank
        let median = { (values: [Double]) in Timing(seconds: values.sorted()).median }
        var times = [Double](repeating: 0, count: 2 * p)  // forward-backward, compute; by stage
        if groups.tensorModelParallel.rank == 0 && groups.contextParallel.rank == 0 && groups.dataParallel.rank == 0 {
            times[2 * stage] = median(timed.map(\.forwardBackwardSeconds))
            times[2 * stage + 1] = median(timed.map { $0.forwardBackwardSeconds - $0.pipelineCommunicationSeconds })
        }
        try times.withUnsafeMutableBufferPointer { try groups.world.allReduce($0, op: .sum) }
        let pipeline = (0 ..< p).map { times[2 * $0] }.max()!
        return (0 ..< p).map { pipeline / max(times[2 * $0 + 1], 1e-12) - 1 }
    }
}

// Parsed once and read-only afterwards: every rank reads the same options.
extension BenchParallel: @unchecked Sendable {}
