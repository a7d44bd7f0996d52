import ArgumentParser
import Foundation
import MegatronParallel
import MegatronTraining

/// Megatron's parallelism and distributed flags, and how the ranks of a run come to be: processes
/// started by `mpirun` (MPI), or threads of this process (in-process).
public struct DistributedArguments: ParsableArguments, Sendable {
    public init() {}

    public enum Backend: String, Sendable { case mpi, inProcess = "in-process" }
    /// --distributed-backend's values: ours, and Megatron's nccl and gloo (its GPU and CPU
    /// collectives), which here mean the default (MPI under mpirun, else in-process).
    public enum BackendChoice: String, ExpressibleByArgument, CaseIterable, Sendable { case mpi, inProcess = "in-process", nccl, gloo }

    @Option(name: .customLong("tensor-model-parallel-size")) public var tensorModelParallelSize = 1
    @Option(name: .customLong("pipeline-model-parallel-size")) public var pipelineModelParallelSize = 1
    @Option(name: .customLong("decoder-first-pipeline-num-layers"),
            help: "Transformer layers on the first pipeline stage (default: an equal share).")
    public var decoderFirstPipelineNumLayers: Int?
    @Option(name: .customLong("decoder-last-pipeline-num-layers"),
            help: "Transformer layers on the last pipeline stage (default: an equal share).")
    public var decoderLastPipelineNumLayers: Int?
    @Option(name: .customLong("num-layers-per-virtual-pipeline-stage"),
            help: "Interleaved pipeline schedule: transformer layers per model chunk (each stage holds several, round robin).")
    public var numLayersPerVirtualPipelineStage: Int?
    @Option(name: .customLong("num-virtual-stages-per-pipeline-rank"),
            help: "Interleaved pipeline schedule: model chunks per pipeline stage.")
    public var numVirtualStagesPerPipelineRank: Int?
    @Option(name: .customLong("context-parallel-size")) public var contextParallelSize = 1
    /// --decoder-first/last-pipeline-num-layers.
    public var pipelineEnds: (first: Int?, last: Int?) { (decoderFirstPipelineNumLayers, decoderLastPipelineNumLayers) }
    @Flag(name: .customLong("sequence-parallel"),
          help: "Split the activations between tensor-parallel layers by rows over the tensor-parallel ranks (off when TP is 1).")
    public var sequenceParallel = false
    @Option(name: .customLong("distributed-backend"),
            help: ArgumentHelp("mpi (the default under mpirun: one rank per process) or in-process (ranks as threads of this "
                               + "process); Megatron's nccl and gloo mean the default."))
    public var backend: BackendChoice?
    @Option(name: .customLong("in-process-ranks"),
            help: "With the in-process backend: how many ranks to run as threads (default 1).")
    public var inProcessRanks = 1
    @Option(name: .customLong("distributed-timeout-minutes"),
            help: "In-process backend: how long a rank waits for its peers in a collective before the run fails.")
    public var timeoutMinutes: Double = 10
    @Option(name: .customLong("ddp-bucket-size"),
            help: "Gradient elements per data-parallel bucket (default with --overlap-grad-reduce: max(40M, 1M × dp)).")
    public var ddpBucketSize: Int?
    @Flag(name: .customLong("overlap-grad-reduce"), help: "Reduce each gradient bucket during backward, on a communication thread.")
    public var overlapGradReduce = false
    @Flag(name: .customLong("use-distributed-optimizer"),
          help: "Shard the optimizer state over data-parallel ranks (reduce-scatter gradients, all-gather parameters).")
    public var useDistributedOptimizer = false
    @Flag(name: .customLong("overlap-param-gather"),
          help: ArgumentHelp("With the distributed optimizer: all-gather the updated parameters on the communication thread, "
                             + "each bucket waited for only when the next forward reaches it (needs --overlap-grad-reduce)."))
    public var overlapParamGather = false

    /// The backend in effect: as given, else MPI when this process was started by mpirun.
    public var effectiveBackend: Backend {
        switch backend {
        case .mpi?: return .mpi
        case .inProcess?: return .inProcess
        case .nccl?, .gloo?, nil: return MPICommunicator.launchedByMPIRun ? .mpi : .inProcess
        }
    }

    /// The world size, known before any communicator exists: mpirun's, or the in-process rank count.
    public var worldSize: Int {
        guard effectiveBackend == .mpi else { return inProcessRanks }
        return ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) ?? 1
    }

    /// Ranks on this machine: the in-process ranks, or mpirun's ranks on this node.
    public var ranksPerMachine: Int {
        guard effectiveBackend == .mpi else { return inProcessRanks }
        return ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
    }

    public func validate() throws {
        guard inProcessRanks >= 1 else { throw ValidationError("--in-process-ranks \(inProcessRanks): expected at least 1") }
        if inProcessRanks > 1 && effectiveBackend == .mpi {
            throw ValidationError("--in-process-ranks needs --distributed-backend in-process (under mpirun, use mpirun -np)")
        }
        if effectiveBackend == .mpi && !MPICommunicator.launchedByMPIRun {
            throw ValidationError("--distributed-backend mpi: start the run with mpirun -np N megatron pretrain …")
        }
        if effectiveBackend == .inProcess, let launched = MPICommunicator.launcherWorldSize, launched > 1 {
            throw ValidationError("--distributed-backend in-process: this process is one of \(launched) started by a launcher; "
                                  + "each would train alone. Use the mpi backend (OpenMPI's mpirun), or run one process.")
        }
        guard timeoutMinutes > 0, timeoutMinutes <= 525_600 else {
            throw ValidationError("--distributed-timeout-minutes \(timeoutMinutes): expected more than 0 and at most a year (525600)")
        }
        if let ddpBucketSize, ddpBucketSize < 1 { throw ValidationError("--ddp-bucket-size \(ddpBucketSize): expected at least 1") }
        if overlapParamGather && !(useDistributedOptimizer && overlapGradReduce) {
            throw ValidationError("--overlap-param-gather needs --use-distributed-optimizer and --overlap-grad-reduce (as in Megatron)")
        }
    }

    /// Megatron's virtual_pipeline_model_parallel_size for a model of `numLayers` layers: the model
    /// chunks of each pipeline stage under the interleaved schedule, from either flag; nil (one
    /// chunk) when neither is given or they come to one.
    public func virtualPipelineModelParallelSize(numLayers: Int) throws -> Int? {
        let p = pipelineModelParallelSize
        guard p >= 1 else { throw ValidationError("--pipeline-model-parallel-size \(p): expected at least 1") }
        let chunks: Int
        switch (numLayersPerVirtualPipelineStage, numVirtualStagesPerPipelineRank) {
        case (nil, nil): return nil
        case (_?, _?):
            throw ValidationError("--num-layers-per-virtual-pipeline-stage and --num-virtual-stages-per-pipeline-rank: give one of them")
        case (let n?, nil):
            let flag = "--num-layers-per-virtual-pipeline-stage \(n)"
            guard n >= 1 else { throw ValidationError("\(flag): expected at least 1") }
            guard numLayers % p == 0, numLayers / p % n == 0 else {
                throw ValidationError("\(flag): the \(numLayers) layers of --num-layers over --pipeline-model-parallel-size \(p) "
                                      + "stages do not split into chunks of \(n) layers")
            }
            chunks = numLayers / p / n
        case (nil, let v?):
            guard v >= 1 else { throw ValidationError("--num-virtual-stages-per-pipeline-rank \(v): expected at least 1") }
            chunks = v
        }
        guard chunks > 1 else { return nil }
        guard p > 1 else {
            throw ValidationError("the interleaved pipeline schedule (--num-layers-per-virtual-pipeline-stage, "
                                  + "--num-virtual-stages-per-pipeline-rank) needs --pipeline-model-parallel-size above 1")
        }
        return chunks
    }

    public func parallelState() throws -> ParallelState {
        try ParallelState(worldSize: worldSize, tensorModelParallelSize: tensorModelParallelSize,
                          pipelineModelParallelSize: pipelineModelParallelSize, contextParallelSize: contextParallelSize)
    }

    public var ddpSettings: DistributedDataParallel.Settings {
        var settings = DistributedDataParallel.Settings()
        settings.bucketSize = ddpBucketSize
        settings.overlapGradReduce = overlapGradReduce
        settings.useDistributedOptimizer = useDistributedOptimizer
        settings.overlapParamGather = overlapParamGather
        return settings
    }

    /// Runs `body` once per rank of the world: in this process under mpirun (a failing rank ends
    /// the whole job through MPI_Abort, naming itself), or on one thread per in-process rank (a
    /// failing rank releases the others; the run then fails with its error).
    public func launch(_ body: @escaping @Sendable (any Communicator) throws -> Void) throws {
        switch effectiveBackend {
        case .mpi:
            let world = try MPICommunicator.world()
            // The gradient thread and the training thread both call MPI when --overlap-grad-reduce is on,
            // and a failing rank may abort while the other is inside MPI.
            if overlapGradReduce && !world.providesThreadMultiple {
                throw ValidationError("--overlap-grad-reduce under MPI needs MPI_THREAD_MULTIPLE, which this MPI library does not provide")
            }
            do {
                try body(world)
                MPICommunicator.finalize()
            } catch {
                FileHandle.standardError.write(Data("megatron: rank \(world.rank) failed: \(error)\n".utf8))
                MPICommunicator.abort(code: 1)
            }
        case .inProcess:
            try InProcessWorld(size: inProcessRanks, timeoutSeconds: timeoutMinutes * 60).run { try body($0) }
        }
    }
}
