import MegatronCore

/// Megatron's step-wise global batch size schedule (--step-batch-size-schedule "0:16 2.4B:320 …",
/// which replaced --rampup-batch-size): each entry THRESHOLD:BATCH sets the global batch size once
/// THRESHOLD tokens have been consumed (thresholds and sizes take K, M, B, T suffixes; tokens count
/// as samples × sequence length, rounded down). The first threshold must be 0, the thresholds
/// strictly increasing, the batch sizes positive.
public struct BatchSizeSchedule: Sendable {
    /// (consumed samples from which it applies, global batch size), ascending.
    public let steps: [(samples: Int, batchSize: Int)]

    /// Parses `text` (entries separated by spaces or commas) with token thresholds converted to
    /// samples of `sequenceLength` tokens; an error names the flag and the entry at fault.
    public init(parsing text: String, sequenceLength: Int) throws {
        let flag = "--step-batch-size-schedule"
        var steps: [(Int, Int)] = []
        for entry in text.split(whereSeparator: { $0 == " " || $0 == "," }) {
            let parts = entry.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let threshold = Self.number(parts[0]), let size = Self.number(parts[1]) else {
                throw ConfigError(flag: flag, "\(flag): \"\(entry)\" is not THRESHOLD:BATCH_SIZE (numbers, optionally with K, M, B or T)")
            }
            guard size > 0 else { throw ConfigError(flag: flag, "\(flag): \"\(entry)\": the batch size must be positive") }
            steps.append((threshold / sequenceLength, size))
        }
        steps.sort { $0.0 < $1.0 }
        guard let first = steps.first else { throw ConfigError(flag: flag, "\(flag): the schedule has no entries") }
        guard first.0 == 0 else { throw ConfigError(flag: flag, "\(flag): the first threshold must be 0, got \(first.0 * sequenceLength) tokens") }
        for (a, b) in zip(steps, steps.dropFirst()) where b.0 <= a.0 {
            throw ConfigError(flag: flag, "\(flag): thresholds must be strictly increasing (in samples of \(sequenceLength) tokens): "
                                + "\(a.0) then \(b.0)")
        }
        self.steps = steps
    }

    /// The global batch size once `consumedSamples` samples have been consumed.
    public func globalBatchSize(consumedSamples: Int) -> Int {
        steps.last { $0.samples <= consumedSamples }!.batchSize
    }

    /// Iterations until `samples` have been consumed (Megatron's update_train_iters).
    public func iterations(toConsume samples: Int) -> Int {
        var consumed = 0, iterations = 0
        while consumed < samples {
            consumed += globalBatchSize(consumedSamples: consumed)
            iterations += 1
        }
        return iterations
    }

    /// Samples consumed by `iterations` iterations from the start.
    public func samples(in iterations: Int) -> Int {
        (0 ..< iterations).reduce(0) { consumed, _ in consumed + globalBatchSize(consumedSamples: consumed) }
    }

    /// A number with an optional K, M, B or T suffix ("2.4B"), whole.
    private static func number(_ text: Substring) -> Int? {
        let upper = text.uppercased()
        let multipliers: [Character: Double] = ["K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12]
        let (digits, multiplier) = upper.last.flatMap { multipliers[$0] }.map { (upper.dropLast(), $0) } ?? (Substring(upper), 1)
        guard let value = Double(digits), value >= 0, value.isFinite else { return nil }
        return Int(value * multiplier)
    }
}
