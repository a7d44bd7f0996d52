import Foundation

/// The training loop's settings (`Trainer`): the batch, the schedule of iterations, and the logging,
/// checking, saving and exit flags.
public struct TrainingSettings: Sendable {
    public var trainIters: Int
    public var microBatchSize: Int
    public var globalBatchSize: Int
    public var sequenceLength: Int
    public var logInterval = 100
    public var seed: UInt64 = 1234
    /// --log-throughput: the log line shows model TFLOP/s.
    public var logThroughput = false
    /// --log-params-norm: the log line shows the L2 norm of the parameters after the step.
    public var logParamsNorm = false
    /// Megatron's --check-for-nan-in-loss-and-grad (on by default): a non-finite lm loss or gradient
    /// norm, or gradients that overflow a constant loss scale, end the run with an error. Off, such
    /// an iteration is skipped (no update) and counted. Under dynamic loss scaling the check is off
    /// whatever this says, as Megatron turns it off there: overflows are the scaler's signal.
    public var checkForNaNInLossAndGrad = true
    /// --save and --save-interval: write a checkpoint there every this many iterations (nil: only
    /// at the end), and at the end of training if the last iteration was not saved.
    public var save: URL?
    public var saveInterval: Int?
    /// --ckpt-format: how checkpoints are written (either is read).
    public var checkpointFormat = CheckpointFormat.torchDist
    /// --async-save: a sharded save is written by a background thread while training goes on, and
    /// becomes the latest checkpoint after the first iteration that ends with every rank's file written.
    public var asyncSave = false
    /// --exit-interval: stop after the first iteration divisible by this, saving a checkpoint first
    /// under --save (no final evaluation: Megatron exits the program there).
    public var exitInterval: Int?
    /// --exit-duration-in-mins: stop after the first iteration that ends this many minutes after
    /// `startTime` (the program's start; on any rank, all agree), saving a checkpoint first under
    /// --save. 0, as in Megatron, sets no limit.
    public var exitDurationInMinutes: Double?
    public var startTime = Date()
    /// --exit-signal-handler: once this signal has reached any rank, stop after the iteration, saving
    /// a checkpoint first under --save.
    public var exitSignal: ExitSignal?
    /// --skip-train: run no iterations, only the final evaluation (of a loaded checkpoint), which
    /// then writes nothing to TensorBoard (Megatron's).
    public var skipTrain = false
    /// --step-batch-size-schedule: each iteration's global batch size by the samples consumed
    /// before it (`globalBatchSize` then serves evaluation, as Megatron's default batch does).
    public var batchSizeSchedule: BatchSizeSchedule?

    public init(trainIters: Int, microBatchSize: Int, globalBatchSize: Int, sequenceLength: Int) {
        self.trainIters = trainIters
        self.microBatchSize = microBatchSize
        self.globalBatchSize = globalBatchSize
        self.sequenceLength = sequenceLength
    }
}

/// --ckpt-format, under Megatron's names: `torch_dist` (its default), the sharded format in which
/// every rank writes what it owns (`ShardedCheckpoint`); `torch`, the whole model and state gathered
/// onto one rank and written as one model and one optimizer file. Both are safetensors.
public enum CheckpointFormat: String, Sendable, CaseIterable {
    case torchDist = "torch_dist"
    case torch
}
