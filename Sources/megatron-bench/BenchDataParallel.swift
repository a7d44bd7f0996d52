import ArgumentParser
import MegatronCommandLine
import Foundation
import MegatronCore
import MegatronData
import MegatronModels
import MegatronParallel
import MegatronTraining

/// `megatron-bench data-parallel`: training throughput of a GPT-2-shaped model with data
/// parallelism, and how much of the gradient reduction backward hides. Run it alone for DP=1 and
/// under `mpirun -np N` (or with the in-process backend) for DP=N; same global batch, mock data,
/// no dropout.
struct BenchDataParallel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data-parallel",
        abstract: "Data-parallel training throughput and the share of gradient communication hidden behind backward.")

    @OptionGroup(title: "Distributed") var distributed: DistributedArguments
    @OptionGroup var device: DeviceOptions
    @Option(help: "tiny (L4 h256 s256), small (L6 h512 s512) or 124m (L12 h768 s1024); vocab 50304.")
    var config = "124m"
    @Option(name: .customLong("global-batch-size"), help: "Sequences per step over all ranks (micro-batch 1).")
    var globalBatchSize = 2
    @Option(help: "Untimed steps first.") var warmup = 1
    @Option(help: "Timed steps.") var steps = 4

    func validate() throws {
        guard globalBatchSize >= 1 else { throw ValidationError("--global-batch-size \(globalBatchSize): expected at least 1") }
        guard steps >= 1 else { throw ValidationError("--steps \(steps): expected at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup \(warmup): expected 0 or more") }
    }

    func run() throws {
        let (modelConfig, seq) = try BenchGPT.benchmarkModel(config)
        let options = self
        try distributed.launch { world in try options.measure(modelConfig, sequenceLength: seq, world: world) }
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
        let data = try GPTDataset(MockGPTLowLevelDataset(vocabSize: 50257, endOfDocument: 50256), documents: 0 ..< 1000,
                                  numSamples: (warmup + steps) * globalBatchSize, sequenceLength: seq, seed: 1)
        let trainer = try Trainer(model: model, optimizer: optimizer, scheduler: .init(maxLR: 1e-4, warmupSteps: 0, decaySteps: 100, decayStyle: .constant),
                              settings: settings, dataParallel: ddp, sample: data.sample, log: { _ in })
        let timed = Array(try trainer.train().dropFirst(warmup))
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        let step = median(timed.map(\.seconds))
        let communication = median(timed.map(\.gradSyncSeconds)), wait = median(timed.map(\.gradSyncWaitSeconds))
        let gather = median(timed.map(\.paramGatherSeconds)), gatherWait = median(timed.map(\.paramGatherWaitSeconds))
        let tokens = Double(globalBatchSize * seq)
        let flops = modelFLOPsPerIteration(c, globalBatchSize: globalBatchSize, sequenceLength: seq)
        guard groups.isLastRank else { return }
        let dp = groups.state.dataParallelSize
        var lines = ["megatron-bench data-parallel — \(config), global batch \(globalBatchSize) × \(seq), DP=\(dp) "
                     + "(\(distributed.effectiveBackend.rawValue)), \(device.threads) thread(s) per rank, "
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
        lines.append("  peak RSS of the last rank \(fixed(Double(peakResidentBytes()) / 1_073_741_824, 2)) GiB; optimizer state "
                     + "\(fixed(Double(optimizer.stateBytes) / 1_048_576)) MiB per rank")
        print(lines.joined(separator: "\n"))
    }
}

// Parsed once and read-only afterwards: every rank reads the same options.
extension BenchDataParallel: @unchecked Sendable {}
