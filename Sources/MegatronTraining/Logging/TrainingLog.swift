import Foundation
import MegatronModels

/// Megatron's per-iteration log line, averaged over the iterations since the last one (the
/// throughput only with --log-throughput, the grad norm only when the optimizer computed one, the
/// params norm only with --log-params-norm):
///  [2026-11-28 09:00:00.000000] iteration       10/     100 | consumed samples:          640 |
/// elapsed time per iteration (ms): 1234.5 | throughput per GPU (TFLOP/s/GPU): 1.2 |
/// learning rate: 1.000000E-04 | global batch size:    64 | lm loss: 1.234567E+00 | loss scale: 1.0 |
/// grad norm: 1.234 | number of skipped iterations:   0 | number of nan iterations:   0 |
/// (on one line; a model reporting more losses, as BERT's "sop loss", shows each after the lm
/// loss). The learning rate and loss scale shown are those after this iteration's step, as Megatron's.
public struct TrainingLog {
    var iterations = 0, skipped = 0, nan = 0
    var seconds = 0.0
    /// Σ of each reported loss over the updating iterations, in the model's order. A loss stays in
    /// Megatron's line once an iteration reported it, at 0 through an interval whose iterations were
    /// all skipped (a loss-scale overflow).
    var lossSums: [(name: String, sum: Double)]
    var lossCount = 0

    /// An interval that shows `lossNames` (those of earlier intervals) whether or not it updates.
    public init(lossNames: [String] = []) { lossSums = lossNames.map { ($0, 0) } }

    /// The interval after this one: the same losses shown, from zero.
    public func next() -> TrainingLog { TrainingLog(lossNames: lossSums.map(\.name)) }

    public mutating func add(_ r: IterationResult) {
        iterations += 1
        seconds += r.seconds
        if r.skipped {
            // Megatron's nan iterations: skipped ones whose loss was not finite.
            skipped += 1
            if !r.loss.isFinite { nan += 1 }
        } else {
            for loss in r.losses {
                if let i = lossSums.firstIndex(where: { $0.name == loss.name }) {
                    lossSums[i].sum += loss.value
                } else {
                    lossSums.append((loss.name, loss.value))
                }
            }
            lossCount += 1
        }
    }

    var secondsPerIteration: Double { seconds / Double(max(iterations, 1)) }

    public func line(iteration: Int, trainIters: Int, consumedSamples: Int, flopsPerIteration: Double?, learningRate: Double,
              globalBatchSize: Int, lossScale: Float = 1, gradNorm: Double?, paramsNorm: Double? = nil) -> String {
        let perIteration = secondsPerIteration
        var line = " [\(Self.timestamp())]"
        line += " iteration \(pad(iteration, 8))/\(pad(trainIters, 8)) |"
        line += " consumed samples: \(pad(consumedSamples, 12)) |"
        line += " elapsed time per iteration (ms): \(String(format: "%.1f", perIteration * 1000)) |"
        if let flopsPerIteration {
            line += " throughput per GPU (TFLOP/s/GPU): \(String(format: "%.1f", flopsPerIteration / perIteration / 1e12)) |"
        }
        line += " learning rate: \(String(format: "%.6E", learningRate)) |"
        line += " global batch size: \(pad(globalBatchSize, 5)) |"
        for (name, sum) in lossSums { line += " \(name): \(String(format: "%.6E", sum / Double(max(lossCount, 1)))) |" }
        line += " loss scale: \(String(format: "%.1f", Double(lossScale))) |"
        if let gradNorm, gradNorm.isFinite { line += " grad norm: \(String(format: "%.3f", gradNorm)) |" }
        if let paramsNorm { line += " params norm: \(String(format: "%.3f", paramsNorm)) |" }
        line += " number of skipped iterations: \(pad(skipped, 3)) |"
        line += " number of nan iterations: \(pad(nan, 3)) |"
        return line
    }

    private func pad(_ n: Int, _ width: Int) -> String {
        let text = String(n)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec, parts = tm()
        localtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d.%06d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1000)
    }
}
