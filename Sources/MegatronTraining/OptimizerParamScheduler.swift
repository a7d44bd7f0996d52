import Foundation

/// Megatron's learning-rate schedule, counted in samples: linear warm-up from `initLR` to `maxLR`
/// over `warmupSteps` samples, then decay to `minLR` by `decaySteps` samples (constant, linear,
/// cosine, inverse square root, or warmup-stable-decay), then `minLR`; and, when set, its weight
/// decay schedule (`--weight-decay-incr-style`).
public struct OptimizerParamScheduler: Sendable, Equatable, Codable {
    public enum DecayStyle: String, Sendable, CaseIterable, Codable {
        case constant, linear, cosine
        case inverseSquareRoot = "inverse-square-root"
        case wsd = "WSD"
    }

    public enum WSDDecayStyle: String, Sendable, CaseIterable, Codable { case linear, cosine, exponential, minusSqrt = "minus_sqrt" }

    /// Megatron's weight decay from `start` to `end` over `steps` samples (`--start-weight-decay`,
    /// `--end-weight-decay`, the run's samples), then `end`: constant (start = end), linear, or along
    /// a half cosine, start + (end − start)·½(cos(π(1 − t)) + 1) at fraction t of the way.
    public struct WeightDecayIncrement: Sendable, Equatable, Codable {
        public enum Style: String, Sendable, CaseIterable, Codable { case constant, linear, cosine }

        public var start: Double
        public var end: Double
        public var steps: Int
        public var style: Style

        public init(start: Double, end: Double, steps: Int, style: Style) {
            self.start = start
            self.end = end
            self.steps = steps
            self.style = style
        }

        /// The weight decay after `numSteps` samples.
        public func weightDecay(at numSteps: Int) -> Double {
            if numSteps > steps || style == .constant { return end }
            let t = Double(numSteps) / Double(steps)
            let coefficient = style == .linear ? t : 0.5 * (cos(Double.pi * (1 - t)) + 1)
            return start + coefficient * (end - start)
        }
    }

    public var maxLR: Double
    public var minLR: Double
    public var initLR: Double
    /// Samples of warm-up: not always whole, as `--lr-warmup-fraction` × decay samples in Megatron.
    public var warmupSteps: Double
    public var decaySteps: Int
    public var decayStyle: DecayStyle
    /// Samples of the final annealing phase under WSD (`--lr-wsd-decay-samples`).
    public var wsdDecaySteps: Int
    public var wsdDecayStyle: WSDDecayStyle
    /// The weight decay schedule; nil leaves the optimizer's own constant weight decay.
    public var weightDecayIncrement: WeightDecayIncrement?
    /// Samples consumed so far.
    public internal(set) var numSteps = 0

    public init(maxLR: Double, minLR: Double = 0, initLR: Double = 0, warmupSteps: Double, decaySteps: Int,
                decayStyle: DecayStyle, wsdDecaySteps: Int = 0, wsdDecayStyle: WSDDecayStyle = .exponential,
                weightDecayIncrement: WeightDecayIncrement? = nil) {
        self.maxLR = maxLR
        self.minLR = minLR
        self.initLR = initLR
        self.warmupSteps = warmupSteps
        self.decaySteps = decaySteps
        self.decayStyle = decayStyle
        self.wsdDecaySteps = wsdDecaySteps
        self.wsdDecayStyle = wsdDecayStyle
        self.weightDecayIncrement = weightDecayIncrement
    }

    /// The weight decay at the current sample count, when the schedule sets it.
    public var weightDecay: Double? { weightDecayIncrement?.weightDecay(at: numSteps) }

    /// Advances by `increment` samples (the global batch size after each iteration).
    public mutating func step(_ increment: Int) { numSteps += increment }

    /// The learning rate at the current sample count.
    public var learningRate: Double {
        let numSteps = Double(self.numSteps)
        if warmupSteps > 0 && numSteps <= warmupSteps {
            return initLR + (maxLR - initLR) * numSteps / warmupSteps
        }
        if decayStyle == .constant { return maxLR }
        if numSteps > Double(decaySteps) { return minLR }
        if decayStyle == .inverseSquareRoot {
            let lr = maxLR * max(warmupSteps, 1).squareRoot() / max(numSteps, 1).squareRoot()
            return max(minLR, lr)
        }
        let ratio = (numSteps - warmupSteps) / max(Double(decaySteps) - warmupSteps, 1)
        let coefficient: Double
        switch decayStyle {
        case .linear: coefficient = 1 - ratio
        case .cosine: coefficient = 0.5 * (cos(Double.pi * ratio) + 1)
        case .wsd:
            let annealStart = Double(decaySteps - wsdDecaySteps)
            if numSteps <= annealStart {
                coefficient = 1
            } else {
                let r = (numSteps - annealStart) / Double(max(wsdDecaySteps, 1))
                switch wsdDecayStyle {
                case .linear: coefficient = 1 - r
                case .cosine: coefficient = 0.5 * (cos(Double.pi * r) + 1)
                case .exponential: coefficient = 2 * pow(0.5, r) - 1
                case .minusSqrt: coefficient = 1 - r.squareRoot()
                }
            }
        case .constant, .inverseSquareRoot: coefficient = 1
        }
        return minLR + coefficient * (maxLR - minLR)
    }
}

extension OptimizerParamScheduler {
    /// Megatron's checks when a checkpoint's schedule is loaded (OptimizerParamScheduler.load_state_dict):
    /// the settings in which `saved` differs from this schedule, as "name: ours vs saved's" (the sample
    /// count and the warm-up's initial rate aside).
    public func settingDifferences(from saved: OptimizerParamScheduler) -> [String] {
        func field<T: Equatable>(_ name: String, _ path: KeyPath<OptimizerParamScheduler, T>) -> String? {
            self[keyPath: path] == saved[keyPath: path] ? nil : "\(name) \(self[keyPath: path]) vs \(saved[keyPath: path])"
        }
        // The weight decay schedule in words ("constant 0.01 over 4 samples"), or "none".
        let weightDecay = { (scheduler: OptimizerParamScheduler) in
            scheduler.weightDecayIncrement.map { w in
                w.style == .constant ? "constant \(w.end) over \(w.steps) samples" : "\(w.style.rawValue) \(w.start) → \(w.end) over \(w.steps) samples"
            } ?? "none"
        }
        let weightDecayDifference = weightDecay(self) == weightDecay(saved) ? nil : "weight decay schedule \(weightDecay(self)) vs \(weightDecay(saved))"
        return [field("learning rate", \.maxLR), field("minimum learning rate", \.minLR), field("warmup samples", \.warmupSteps),
                field("decay samples", \.decaySteps), field("decay style", \.decayStyle), field("WSD decay samples", \.wsdDecaySteps),
                field("WSD decay style", \.wsdDecayStyle), weightDecayDifference].compactMap { $0 }
    }
}
