import ArgumentParser
import Foundation
import MegatronTraining

/// Megatron-LM's TensorBoard flags (see `TensorBoardLog` for the scalars).
public struct TensorBoardArguments: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("tensorboard-dir"), help: "Write TensorBoard event files here (from the rank that prints the log).")
    public var tensorboardDir: String?
    @Option(name: .customLong("tensorboard-log-interval"), help: "Write the training scalars every this many iterations.")
    public var tensorboardLogInterval = 1
    @Flag(name: .customLong("log-validation-ppl-to-tensorboard"), help: "Also write the validation perplexity.")
    public var logValidationPPLToTensorboard = false
    @Flag(name: .customLong("no-log-loss-scale-to-tensorboard"), help: "Do not write the loss scale.")
    public var noLogLossScaleToTensorboard = false
    @Flag(name: .customLong("log-timers-to-tensorboard"), help: "Also write the time per iteration (and the throughput under --log-throughput).")
    public var logTimersToTensorboard = false
    @Flag(name: .customLong("log-world-size-to-tensorboard"), help: "Also write the number of ranks.")
    public var logWorldSizeToTensorboard = false

    public func validate() throws {
        guard tensorboardLogInterval >= 1 else {
            throw ValidationError("--tensorboard-log-interval \(tensorboardLogInterval): expected at least 1")
        }
    }

    /// The log for this run, or nil without --tensorboard-dir.
    public func makeLog(worldSize: Int) throws -> TensorBoardLog? {
        guard let tensorboardDir else { return nil }
        var log = TensorBoardLog(writer: try TensorBoardWriter(directory: URL(fileURLWithPath: tensorboardDir)))
        log.interval = tensorboardLogInterval
        log.logLossScale = !noLogLossScaleToTensorboard
        log.logValidationPPL = logValidationPPLToTensorboard
        log.logTimers = logTimersToTensorboard
        log.logWorldSize = logWorldSizeToTensorboard
        log.worldSize = worldSize
        return log
    }
}
