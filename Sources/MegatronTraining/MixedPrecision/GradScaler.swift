import MegatronCore

/// Megatron's loss scaler for mixed-precision training: the loss is multiplied by `scale` before the
/// backward, so that small gradients survive in fp16, and the optimizer divides the gradients by it
/// again before the update, skipping the update when they hold an inf or NaN.
///
/// Constant (`--loss-scale S`), the scale never moves. Dynamic (`--fp16` without `--loss-scale`), it
/// starts at `--initial-loss-scale` and, as Megatron's DynamicGradScaler:
/// - after an iteration whose gradients overflowed, the growth count restarts and the hysteresis count
///   falls by one; once it is at or below 0, the scale is halved (not below `--min-loss-scale`), and
///   halved again on each further overflow until a growth restores the count;
/// - after `--loss-scale-window` overflow-free iterations in a row, the scale doubles and the
///   hysteresis count is reset to `--hysteresis`.
public struct GradScaler: Codable, Equatable, Sendable {
    /// How the scale moves.
    public enum Rule: Equatable, Sendable {
        case constant
        case dynamic(minScale: Float, window: Int, hysteresis: Int)
    }

    public let rule: Rule
    /// The current loss scale.
    public private(set) var scale: Float
    /// Overflow-free iterations since the last growth or overflow.
    public private(set) var growthTracker = 0
    /// Overflows still tolerated before the scale falls.
    public private(set) var hysteresisTracker: Int

    static let growthFactor: Float = 2, backoffFactor: Float = 0.5

    /// `--loss-scale scale`.
    public static func constant(_ scale: Float) -> GradScaler { GradScaler(rule: .constant, scale: scale, hysteresis: 0) }

    /// Megatron's defaults: --initial-loss-scale 2³², --min-loss-scale 1, --loss-scale-window 1000, --hysteresis 2.
    public static func dynamic(initialScale: Float = 4_294_967_296, minScale: Float = 1, window: Int = 1000,
                               hysteresis: Int = 2) -> GradScaler {
        GradScaler(rule: .dynamic(minScale: minScale, window: window, hysteresis: hysteresis), scale: initialScale,
                   hysteresis: hysteresis)
    }

    private init(rule: Rule, scale: Float, hysteresis: Int) {
        self.rule = rule
        self.scale = scale
        hysteresisTracker = hysteresis
    }

    /// Whether the scale moves (Megatron's DynamicGradScaler).
    public var isDynamic: Bool { rule != .constant }

    /// Megatron's checks of the settings, naming the flag that is wrong.
    public func validate() throws {
        guard scale > 0, scale.isFinite else {
            let flag = isDynamic ? "--initial-loss-scale" : "--loss-scale"
            throw ConfigError(flag: flag, "\(flag) \(scale): expected a positive number")
        }
        guard case let .dynamic(minScale, window, hysteresis) = rule else { return }
        guard minScale > 0, minScale <= scale else {
            throw ConfigError(flag: "--min-loss-scale", "--min-loss-scale \(minScale): expected above 0 and at most --initial-loss-scale \(scale)")
        }
        guard window > 0 else { throw ConfigError(flag: "--loss-scale-window", "--loss-scale-window \(window): expected at least 1") }
        guard hysteresis > 0 else { throw ConfigError(flag: "--hysteresis", "--hysteresis \(hysteresis): expected at least 1") }
    }

    /// Moves the scale after an iteration whose unscaled gradients held an inf or NaN (`foundInf`) or not.
    public mutating func update(foundInf: Bool) {
        guard case let .dynamic(minScale, window, hysteresis) = rule else { return }
        if foundInf {
            growthTracker = 0
            hysteresisTracker -= 1
            if hysteresisTracker <= 0 { scale = max(scale * Self.backoffFactor, minScale) }
        } else {
            growthTracker += 1
            if growthTracker == window {
                growthTracker = 0
                hysteresisTracker = hysteresis
                scale *= Self.growthFactor
            }
        }
    }

    /// A checkpoint keeps a dynamic scaler's state under Megatron's names (a constant one has none); the
    /// rule comes from the flags, so a decoded scaler carries only the state, for `resuming(from:)`.
    enum CodingKeys: String, CodingKey {
        case scale, growthTracker = "growth_tracker", hysteresisTracker = "hysteresis_tracker"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        rule = .constant
        scale = try c.decode(Float.self, forKey: .scale)
        growthTracker = try c.decode(Int.self, forKey: .growthTracker)
        hysteresisTracker = try c.decode(Int.self, forKey: .hysteresisTracker)
    }

    /// This scaler with the state `saved` reached (Megatron's load_state_dict): the rule stays this
    /// run's, and a constant scaler keeps its scale (it has no state to load).
    public func resuming(from saved: GradScaler) -> GradScaler {
        guard isDynamic else { return self }
        var resumed = self
        resumed.scale = saved.scale
        resumed.growthTracker = saved.growthTracker
        resumed.hysteresisTracker = saved.hysteresisTracker
        return resumed
    }
}
