import MegatronCore
import MegatronModels

/// The optimizer over a model's flat fp32 buffers: AdamW or SGD with Megatron's parameter groups
/// (no weight decay on biases and one-dimensional parameters), gradient clipping by the global L2
/// norm, and the state (moments, step count) it keeps.
public final class Optimizer {
    public enum Kind: String, Sendable, CaseIterable { case adam, sgd }

    public struct Settings: Sendable {
        public var kind: Kind = .adam
        public var weightDecay: Float = 0.01
        public var adamBeta1: Float = 0.9
        public var adamBeta2: Float = 0.999
        public var adamEpsilon: Float = 1e-8
        public var sgdMomentum: Float = 0.9
        /// Clip gradients to this global L2 norm; 0 disables clipping.
        public var clipGrad: Float = 1

        public init() {}
    }

    public let settings: Settings
    let model: GPTModel
    /// Adam's first moment, or SGD's momentum buffer.
    let firstMoment: Tensor
    let secondMoment: Tensor?
    /// Contiguous runs of the flat buffer with one weight-decay setting: (range, decays).
    let groups: [(range: Range<Int>, decays: Bool)]
    public private(set) var step = 0

    public init(model: GPTModel, settings: Settings) {
        self.model = model
        self.settings = settings
        let n = model.layout.totalCount
        firstMoment = Tensor(shape: [n], on: model.device)
        secondMoment = settings.kind == .adam ? Tensor(shape: [n], on: model.device) : nil
        var groups: [(Range<Int>, Bool)] = []
        for entry in model.layout.entries {
            let range = entry.offset ..< entry.offset + entry.count
            if let last = groups.last, last.1 == entry.decays, last.0.upperBound == range.lowerBound {
                groups[groups.count - 1].0 = last.0.lowerBound ..< range.upperBound
            } else {
                groups.append((range, entry.decays))
            }
        }
        self.groups = groups
    }

    /// Clips the gradients and updates the parameters at `learningRate`. Returns the gradient norm
    /// before clipping; a non-finite norm skips the update (Megatron counts it as a nan iteration).
    @discardableResult
    public func step(learningRate: Float) throws -> (gradNorm: Double, skipped: Bool) {
        let device = model.device
        let norm = try Elementwise.globalL2Norm([model.gradients], on: device)
        guard norm.isFinite else { return (norm, true) }
        var gradScale: Float = 1
        if settings.clipGrad > 0 {
            let coefficient = Double(settings.clipGrad) / (norm + 1e-6)
            if coefficient < 1 { gradScale = Float(coefficient) }
        }
        step += 1
        for (range, decays) in groups {
            let view = { (t: Tensor) in try t.view(offset: range.lowerBound, shape: [range.count]) }
            let wd = decays ? settings.weightDecay : 0
            switch settings.kind {
            case .adam:
                try AdamW.update(param: view(model.parameters), grad: view(model.gradients), expAvg: view(firstMoment),
                                 expAvgSq: view(secondMoment!), step: step,
                                 .init(learningRate: learningRate, beta1: settings.adamBeta1, beta2: settings.adamBeta2,
                                       epsilon: settings.adamEpsilon, weightDecay: wd),
                                 gradScale: gradScale, on: device)
            case .sgd:
                try SGD.update(param: view(model.parameters), grad: view(model.gradients), momentumBuffer: view(firstMoment),
                               firstStep: step == 1, learningRate: learningRate, momentum: settings.sgdMomentum,
                               weightDecay: wd, gradScale: gradScale, on: device)
            }
        }
        return (norm, false)
    }
}
