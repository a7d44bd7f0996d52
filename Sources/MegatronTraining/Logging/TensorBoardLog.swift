import MegatronModels

/// Megatron's TensorBoard scalars (training.py `training_log` and `evaluate_and_print_results`),
/// written by the rank that prints the log:
/// - every `interval` iterations: `learning-rate`, `batch-size`, `lm loss` (that iteration's; each
///   loss the model reports, under its name),
///   `loss-scale` (unless `logLossScale` is off), `world-size` (with `logWorldSize`), `grad-norm` (when
///   the optimizer computed one) and `params-norm` (under --log-params-norm), each at the iteration and
///   again as "… vs samples" at the consumed samples;
/// - with `logTimers`, at each log line: `iteration-time` (seconds per iteration over the interval; not
///   at the first line) and, under --log-throughput, `throughput` (model TFLOP/s);
/// - at each evaluation: `lm loss validation` (and with `logValidationPPL` its perplexity; likewise
///   for each loss the model reports), at the iteration and vs samples. Megatron writes the test set's loss under the same tag.
public struct TensorBoardLog {
    public let writer: TensorBoardWriter
    public var interval = 1
    public var logLossScale = true
    public var logValidationPPL = false
    public var logTimers = false
    public var logWorldSize = false
    public var worldSize = 1

    public init(writer: TensorBoardWriter) { self.writer = writer }

    private func pair(_ tag: String, _ value: Double, iteration: Int, samples: Int) {
        writer.addScalar(tag, value, step: iteration)
        writer.addScalar(tag + " vs samples", value, step: samples)
    }

    func iteration(_ iteration: Int, consumedSamples samples: Int, learningRate: Double, batchSize: Int, losses: [ReportedLoss],
                   lossScale: Float, gradNorm: Double?, paramsNorm: Double?) {
        pair("learning-rate", learningRate, iteration: iteration, samples: samples)
        pair("batch-size", Double(batchSize), iteration: iteration, samples: samples)
        for loss in losses { pair(loss.name, loss.value, iteration: iteration, samples: samples) }
        if logLossScale { pair("loss-scale", Double(lossScale), iteration: iteration, samples: samples) }
        if logWorldSize { pair("world-size", Double(worldSize), iteration: iteration, samples: samples) }
        if let gradNorm { pair("grad-norm", gradNorm, iteration: iteration, samples: samples) }
        if let paramsNorm { pair("params-norm", paramsNorm, iteration: iteration, samples: samples) }
    }

    func timers(_ iteration: Int, secondsPerIteration: Double?, throughput: Double?) {
        guard logTimers else { return }
        if let secondsPerIteration { writer.addScalar("iteration-time", secondsPerIteration, step: iteration) }
        if let throughput { writer.addScalar("throughput", throughput, step: iteration) }
    }

    func validation(_ losses: [ReportedLoss], iteration: Int, consumedSamples samples: Int) {
        for loss in losses {
            pair("\(loss.name) validation", loss.value, iteration: iteration, samples: samples)
            if logValidationPPL { pair("\(loss.name) validation ppl", loss.perplexity, iteration: iteration, samples: samples) }
        }
    }
}
