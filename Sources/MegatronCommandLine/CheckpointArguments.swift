import ArgumentParser
import Foundation
import MegatronTraining

/// Checkpointing flags of Megatron-LM (see `Checkpoint` for what a checkpoint holds).
public struct CheckpointArguments: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("save"), help: "Directory to save checkpoints to.") public var save: String?
    @Option(name: .customLong("save-interval"), help: "Save a checkpoint every this many iterations (and always at the end).")
    public var saveInterval: Int?
    @Option(name: .customLong("ckpt-format"),
            help: "torch_dist: every rank writes what it owns, loadable on any layout (default); torch: the whole model gathered into one file.")
    public var ckptFormat = CheckpointFormat.torchDist
    @Flag(name: .customLong("async-save"), help: "With --ckpt-format torch_dist: write checkpoints in the background while training goes on.")
    public var asyncSave = false
    @Option(name: .customLong("load"), help: "Resume from the latest checkpoint in this directory (none there: train from the start).")
    public var load: String?
    @Flag(name: .customLong("no-load-optim"), help: "With --load: keep the saved model and progress, start a fresh optimizer.")
    public var noLoadOptim = false
    @Flag(name: .customLong("finetune"), help: "With --load: take only the saved model; iteration, samples and optimizer start anew.")
    public var finetune = false
    @Flag(name: .customLong("override-opt_param-scheduler"),
          help: "With --load: keep this run's learning-rate schedule settings where the checkpoint's differ.")
    public var overrideOptParamScheduler = false
    @Flag(name: .customLong("use-checkpoint-opt_param-scheduler"),
          help: "With --load: take the checkpoint's learning-rate schedule settings.")
    public var useCheckpointOptParamScheduler = false
    @Option(name: .customLong("exit-interval"), help: "Stop after the first iteration divisible by this (saving first under --save).")
    public var exitInterval: Int?
    @Option(name: .customLong("exit-duration-in-mins"),
            help: "Stop after the first iteration that ends this many minutes after the program started (saving first under --save; fractions allowed, 0: no limit).")
    public var exitDurationInMins: Double?
    @Flag(name: .customLong("exit-signal-handler"),
          help: "On --exit-signal (default SIGTERM), save a checkpoint under --save after the iteration and exit.")
    public var exitSignalHandler = false
    @Option(name: .customLong("exit-signal"), help: "The signal --exit-signal-handler waits for: SIGTERM, SIGINT, SIGHUP, SIGUSR1 or SIGUSR2.")
    public var exitSignal = "SIGTERM"

    public func validate() throws {
        if ExitSignal.names[exitSignal] == nil {
            throw ValidationError("--exit-signal \(exitSignal): expected \(ExitSignal.names.keys.sorted().joined(separator: ", "))")
        }
        if let exitDurationInMins, !(exitDurationInMins >= 0) {
            throw ValidationError("--exit-duration-in-mins \(exitDurationInMins): expected 0 or more")
        }
        if asyncSave && ckptFormat != .torchDist {
            throw ValidationError("--async-save needs --ckpt-format torch_dist (the whole-model format gathers onto one rank as it saves)")
        }
        if let saveInterval, saveInterval < 1 { throw ValidationError("--save-interval \(saveInterval): expected at least 1") }
        if let exitInterval, exitInterval < 1 { throw ValidationError("--exit-interval \(exitInterval): expected at least 1") }
        if overrideOptParamScheduler && useCheckpointOptParamScheduler {
            throw ValidationError("give only one of --override-opt_param-scheduler and --use-checkpoint-opt_param-scheduler")
        }
        if (noLoadOptim || finetune) && load == nil { throw ValidationError("--no-load-optim and --finetune need --load") }
        var directory: ObjCBool = false
        if let save, FileManager.default.fileExists(atPath: save, isDirectory: &directory), !directory.boolValue {
            throw ValidationError("--save \(save): exists and is not a directory")
        }
    }

    public var schedulerSettingsOnLoad: SchedulerSettingsOnLoad {
        overrideOptParamScheduler ? .override : useCheckpointOptParamScheduler ? .useCheckpoint : .mustMatch
    }
}
