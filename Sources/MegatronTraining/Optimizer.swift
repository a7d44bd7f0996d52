import MegatronCore
import MegatronModels
import MegatronParallel

/// The optimizer over a model's flat fp32 buffers: AdamW or SGD with Megatron's parameter groups
/// (no weight decay on biases and one-dimensional parameters), gradient clipping by the global L2
/// norm, and the state (moments, step count) it keeps.
///
/// It updates the spans of the flat buffer it owns: all of it, or under the distributed optimizer
/// this data-parallel rank's shard, whose Adam state alone it stores (memory falls as 1/dp). The
/// gradient norm sums squares over the ranks that hold one copy of the model (tensor- and
/// pipeline-parallel, each replicated parameter counted once), and under the distributed optimizer
/// over every data-parallel shard too (`gradStatsGroup`), so all ranks clip by, and skip non-finite
/// steps on, the same global norm.
///
/// Mixed precision (`paramsDType` fp16 or bf16, Megatron's --fp16 / --bf16): the model's parameters
/// are rounded to that precision (stored in 16 bits, or kept in fp32 buffers by a model built with
/// fp32 `ParameterStorage`), and the optimizer keeps fp32 main parameters for its spans: it updates
/// those and writes their rounded values back into the model. With a `gradScaler` the gradients
/// arrive multiplied by the loss scale; the step first rounds them to `gradBufferDType` (an fp16
/// buffer overflows to inf there, as on a GPU), divides them by the scale and skips the update when
/// any rank found an inf or NaN.
///
/// Megatron's precision-aware optimizer (--use-precision-aware-optimizer): Adam's moments stored in
/// `expAvgDType` / `expAvgSqDType` (computed in fp32), and with `storeParamRemainders` over bf16
/// parameter storage the main parameters kept as the 16 bits the bf16 parameters lack (2 bytes a
/// parameter instead of 4). Whatever is stored in 16 bits (gradients, moments, main parameters) is
/// converted to fp32 `blockSize` elements at a time for the update.
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
        /// The model's parameter precision (--fp16, --bf16); fp32 main parameters are kept for other than fp32.
        public var paramsDType: DType = .float32
        /// The gradients' precision before they are unscaled: fp16 under --fp16 unless
        /// --accumulate-allreduce-grads-in-fp32.
        public var gradBufferDType: DType = .float32
        /// The loss scaler, or nil for none (fp32, and bf16 without --loss-scale).
        public var gradScaler: GradScaler?
        /// What Adam's moments are stored in (--exp-avg-dtype, --exp-avg-sq-dtype): fp32, bf16 or fp16.
        public var expAvgDType: DType = .float32
        public var expAvgSqDType: DType = .float32
        /// Keep the fp32 main parameters as remainders next to bf16 parameter storage (Transformer
        /// Engine's store_param_remainders, on under the precision-aware optimizer).
        public var storeParamRemainders = false

        /// Whether the optimizer's state is partly 16-bit (moments or main-parameter remainders),
        /// which the whole-model checkpoint format, writing fp32, cannot hold.
        public var keepsSixteenBitState: Bool {
            (kind == .adam && (expAvgDType != .float32 || expAvgSqDType != .float32)) || storeParamRemainders
        }

        public init() {}
    }

    public let settings: Settings
    let model: any MegatronModule
    /// Adam's first moment, or SGD's momentum buffer.
    let firstMoment: Tensor
    let secondMoment: Tensor?
    /// The fp32 main parameters of the owned spans under mixed precision (Megatron's fp32_param), or
    /// under `storeParamRemainders` their low 16 bits (uint16 holding int16 remainders).
    let mainParameters: Tensor?
    /// fp32 blocks for what is stored in 16 bits (gradient, moments, main parameters), by operand.
    private let scratch: [Tensor]
    /// Elements the update and the norm take at once: `blockSize` where something stored in 16 bits
    /// goes through `scratch`; nil for a whole range (all fp32, nothing to convert).
    private let blockElements: Int?
    /// The loss scaler's current state.
    public internal(set) var gradScaler: GradScaler?
    /// Contiguous runs of the owned spans with one weight-decay setting: where they lie in the flat
    /// buffer, where their state lies in the moment tensors, and whether they decay.
    let groups: [(range: Range<Int>, stateOffset: Int, decays: Bool)]
    /// The spans of the flat buffer this rank updates.
    public let ownedRanges: [Range<Int>]
    /// The owned spans that count toward the gradient norm (`ParameterLayout.normSpans`).
    let normSpans: [Range<Int>]
    /// The ranks whose gradients make up the norm and the overflow check (Megatron's grad stats
    /// parallel group): the model-parallel group, or every rank under the distributed optimizer.
    let gradStatsGroup: any Communicator
    /// Updates applied so far (Adam's bias correction counts them).
    public internal(set) var step = 0

    /// An optimizer over the model's flat buffer, or under `dataParallel`'s distributed optimizer
    /// over this rank's shard of it.
    public init(model: any MegatronModule, settings: Settings, dataParallel: DistributedDataParallel? = nil) throws {
        try Self.validate(settings, parameters: model.parameters.dtype)
        self.model = model
        self.settings = settings
        ownedRanges = dataParallel?.ownedRanges ?? [0 ..< model.layout.totalCount]
        gradStatsGroup = dataParallel?.settings.useDistributedOptimizer == true ? model.groups.world : model.groups.modelParallel
        let counted = model.layout.normSpans
        normSpans = self.ownedRanges.flatMap { owned in counted.map { $0.clamped(to: owned) }.filter { !$0.isEmpty } }
        let n = self.ownedRanges.reduce(0) { $0 + $1.count }
        firstMoment = try Tensor(shape: [n], dtype: settings.kind == .adam ? settings.expAvgDType : .float32, on: model.device)
        secondMoment = settings.kind == .adam ? try Tensor(shape: [n], dtype: settings.expAvgSqDType, on: model.device) : nil
        mainParameters = settings.paramsDType == .float32 ? nil
            : try Tensor(shape: [n], dtype: settings.storeParamRemainders ? .uint16 : .float32, on: model.device, zeroed: false)
        var scratch: [Tensor] = []
        for _ in 0 ..< 4 { scratch.append(try Tensor(shape: [Self.blockSize], on: model.device, zeroed: false)) }
        self.scratch = scratch
        let converts = model.gradients.dtype != .float32 || settings.storeParamRemainders
            || [firstMoment, secondMoment].contains { $0.map { $0.dtype != .float32 } ?? false }
        blockElements = converts ? Self.blockSize : nil
        gradScaler = settings.gradScaler
        var groups: [(Range<Int>, Int, Bool)] = []
        var stateOffset = 0
        for owned in self.ownedRanges {
            for entry in model.layout.entries {
                let entryRange = entry.offset ..< entry.offset + entry.count
                guard entryRange.overlaps(owned) else { continue }
                let range = entryRange.clamped(to: owned)
                if let last = groups.last, last.2 == entry.decays, last.0.upperBound == range.lowerBound {
                    groups[groups.count - 1].0 = last.0.lowerBound ..< range.upperBound
                } else {
                    groups.append((range, stateOffset, entry.decays))
                }
                stateOffset += range.count
            }
        }
        self.groups = groups
        try castModelParameters(mainParametersRestored: false)
    }

    /// Elements per block of the update.
    static let blockSize = 1 << 16

    /// Throws unless the settings fit a model whose parameters are stored in `parameters`.
    private static func validate(_ settings: Settings, parameters: DType) throws {
        guard parameters == .float32 || parameters == settings.paramsDType else {
            throw TensorError("optimizer: the model stores \(parameters) parameters, the settings say \(settings.paramsDType)")
        }
        for (flag, dtype) in [("--exp-avg-dtype", settings.expAvgDType), ("--exp-avg-sq-dtype", settings.expAvgSqDType)] {
            guard [.float32, .bfloat16, .float16].contains(dtype) else { throw ConfigError(flag: flag, "\(flag) \(dtype): expected fp32, bf16 or fp16") }
        }
        guard !settings.storeParamRemainders || parameters == .bfloat16 else {
            throw TensorError("optimizer: parameter remainders need bf16 parameter storage, not \(parameters)")
        }
    }

    /// Bytes of optimizer state (moments, main parameters) this rank keeps.
    public var stateBytes: Int { stateTensors.reduce(0) { $0 + $1.values.byteCount } }

    /// The loss scale the backward multiplies the loss by (1 without a scaler).
    public var lossScale: Float { gradScaler?.scale ?? 1 }

    /// Under mixed precision, makes the model's parameters those of `paramsDType`, as Megatron's
    /// Float16Module casts the model (16-bit storage holds them already); unless
    /// `mainParametersRestored` (a checkpoint supplied them), the main parameters then take the
    /// model's rounded values, as Megatron's copy them from the 16-bit model. Called at construction
    /// and after a checkpoint is loaded.
    func castModelParameters(mainParametersRestored: Bool) throws {
        guard let mainParameters else { return }
        if model.parameters.dtype == .float32 { try model.parameters.round(to: settings.paramsDType, on: model.device) }
        guard !mainParametersRestored else { return }
        // The model's values are the main parameters: kept as remainders, every remainder is 0.
        if settings.storeParamRemainders { return mainParameters.zero() }
        for (range, main) in try ownedSpans(of: mainParameters) {
            try main.assign(converting: model.parameters.view(offset: range.lowerBound, shape: [range.count]), on: model.device)
        }
    }

    /// The other form a checkpoint may hold this run's main parameters in: fp32 `fp32_param` for a
    /// run keeping remainders, the 16-bit `fp32_param_remainder` for a bf16 run keeping fp32; nil
    /// without main parameters or under fp16 (which has no remainders).
    var otherMainParametersForm: (name: String, dtype: DType)? {
        guard mainParameters != nil else { return nil }
        if settings.storeParamRemainders { return (Self.mainParametersName, .float32) }
        return settings.paramsDType == .bfloat16 ? (Self.mainParameterRemaindersName, .uint16) : nil
    }

    /// Sets the main parameters from `other`, this rank's owned spans one after the other in
    /// `otherMainParametersForm`, as a checkpoint that keeps them the other way holds them: fp32
    /// main parameters split into the bf16 parameters and their remainders, or remainders joined
    /// with the bf16 parameters into fp32. Both are exact.
    func adoptMainParameters(from other: Tensor) throws {
        guard let mainParameters else { return }
        for ((range, main), (_, loaded)) in zip(try ownedSpans(of: mainParameters), try ownedSpans(of: other)) {
            let values = try model.parameters.view(offset: range.lowerBound, shape: [range.count])
            if settings.storeParamRemainders {
                try ParamRemainders.split(loaded, into: values, remainders: main, on: model.device)
            } else {
                try ParamRemainders.join(values.stored(as: .bfloat16, on: model.device), remainders: loaded, into: main, on: model.device)
            }
        }
    }

    /// Whether the loss scale moves with overflows (--fp16 without --loss-scale): its overflows are
    /// signals, not errors.
    public var usesDynamicLossScaling: Bool { gradScaler?.isDynamic ?? false }

    /// Calls `body` with each block of `range` of `tensor` (at most `blockElements`) in fp32: a view
    /// of an fp32 tensor, or a conversion into `scratch[operand]`.
    private func forEachBlock(of tensor: Tensor, _ range: Range<Int>, operand: Int,
                              _ body: (Range<Int>, Tensor) throws -> Void) throws {
        let size = blockElements ?? max(range.count, 1)
        for start in stride(from: range.lowerBound, to: range.upperBound, by: size) {
            let block = start ..< min(range.upperBound, start + size)
            try body(block, fp32(tensor, block, operand: operand))
        }
    }

    /// Elements `block` of `tensor` in fp32: a view, or a conversion into `scratch[operand]`.
    private func fp32(_ tensor: Tensor, _ block: Range<Int>, operand: Int) throws -> Tensor {
        let view = try tensor.view(offset: block.lowerBound, shape: [block.count])
        guard tensor.dtype != .float32 else { return view }
        let converted = try scratch[operand].view(offset: 0, shape: [block.count])
        try converted.assign(converting: view, on: model.device)
        return converted
    }

    /// The L2 norm of the gradients times `gradientScale` over every counted span, summed over
    /// `gradStatsGroup` (fp32 gradients are unscaled in place, so their scale is 1).
    func gradientNorm(gradientScale: Float) throws -> Double {
        var local = 0.0
        if model.gradients.dtype == .float32 {
            let shards = try normSpans.map { try model.gradients.view(offset: $0.lowerBound, shape: [$0.count]) }
            local = try Elementwise.globalL2Norm(shards, on: model.device)
            local *= local
        } else {
            for span in normSpans {
                try forEachBlock(of: model.gradients, span, operand: 0) { _, g in
                    if gradientScale != 1 { try Elementwise.scale(g, by: gradientScale, on: model.device) }
                    let norm = try Elementwise.globalL2Norm([g], on: model.device)
                    local += norm * norm
                }
            }
        }
        return try gradStatsGroup.allReduce(local, op: .sum).squareRoot()
    }

    /// Under a loss scaler: rounds the owned gradients to `gradBufferDType`, checks them for an inf
    /// or NaN and divides them by the scale (Megatron's _unscale_main_grads_and_check_for_nan, the
    /// flag reduced by max over `gradStatsGroup`); 16-bit gradients, which cannot hold the unscaled
    /// values, are checked and the division left to the norm and the update. Then moves the scale
    /// and returns whether any rank found one, and the scale the gradients still need.
    private func unscaleGradients() throws -> (foundInf: Bool, gradientScale: Float) {
        guard var scaler = gradScaler else { return (false, 1) }
        let inverse = Float(1 / Double(scaler.scale))
        var found: Int32 = 0
        for range in ownedRanges {
            if model.gradients.dtype == .float32 {
                let grads = try model.gradients.view(offset: range.lowerBound, shape: [range.count])
                if try LossScaling.unscale(grads, by: inverse, roundingTo: settings.gradBufferDType, on: model.device) { found = 1 }
            } else {
                try forEachBlock(of: model.gradients, range, operand: 0) { _, g in
                    if try LossScaling.unscale(g, by: 1, roundingTo: .float32, on: model.device) { found = 1 }
                }
            }
        }
        let foundInf = try gradStatsGroup.allReduce(found, op: .max) > 0
        scaler.update(foundInf: foundInf)
        gradScaler = scaler
        return (foundInf, model.gradients.dtype == .float32 ? 1 : inverse)
    }

    /// Clips the gradients and updates the parameters at `learningRate`, decaying the parameters
    /// that decay by `weightDecay` (default: the settings'). Returns the gradient norm before
    /// clipping; a non-finite norm skips the update, and so does a loss-scaled gradient that
    /// overflowed, with no norm computed (nil).
    @discardableResult
    public func step(learningRate: Float, weightDecay: Float? = nil) throws -> (gradNorm: Double?, skipped: Bool) {
        let device = model.device
        let (foundInf, gradientScale) = try unscaleGradients()
        if foundInf { return (nil, true) }
        let norm = try gradientNorm(gradientScale: gradientScale)
        guard norm.isFinite else { return (norm, true) }
        var gradScale = gradientScale
        if settings.clipGrad > 0 {
            let coefficient = Double(settings.clipGrad) / (norm + 1e-6)
            if coefficient < 1 { gradScale *= Float(coefficient) }
        }
        step += 1
        for (range, stateOffset, decays) in groups {
            let wd = decays ? weightDecay ?? settings.weightDecay : 0
            try forEachBlock(of: model.gradients, range, operand: 0) { block, grad in
                let state = stateOffset + block.lowerBound - range.lowerBound ..< stateOffset + block.upperBound - range.lowerBound
                // Under mixed precision the update goes to the main parameters, rounded into the model below.
                let param = try mainParameters.map { try mainBlock($0, state, model: block) }
                    ?? model.parameters.view(offset: block.lowerBound, shape: [block.count])
                let expAvg = try fp32(firstMoment, state, operand: 1)
                switch settings.kind {
                case .adam:
                    let expAvgSq = try fp32(secondMoment!, state, operand: 2)
                    try AdamW.update(param: param, grad: grad, expAvg: expAvg, expAvgSq: expAvgSq, step: step,
                                     .init(learningRate: learningRate, beta1: settings.adamBeta1, beta2: settings.adamBeta2,
                                           epsilon: settings.adamEpsilon, weightDecay: wd),
                                     gradScale: gradScale, on: device)
                    try store(expAvgSq, into: secondMoment!, state)
                case .sgd:
                    try SGD.update(param: param, grad: grad, momentumBuffer: expAvg, firstStep: step == 1, learningRate: learningRate,
                                   momentum: settings.sgdMomentum, weightDecay: wd, gradScale: gradScale, on: device)
                }
                try store(expAvg, into: firstMoment, state)
                if settings.storeParamRemainders {
                    try ParamRemainders.split(param, into: model.parameters.view(offset: block.lowerBound, shape: [block.count]),
                                              remainders: mainParameters!.view(offset: state.lowerBound, shape: [state.count]), on: device)
                }
            }
        }
        if !settings.storeParamRemainders { try copyMainParametersToModel() }
        return (norm, false)
    }

    /// The fp32 main parameters `state` of the owned elements `block` of the model: a view, or joined
    /// from the model's bf16 values and their remainders into a scratch block.
    private func mainBlock(_ main: Tensor, _ state: Range<Int>, model block: Range<Int>) throws -> Tensor {
        guard settings.storeParamRemainders else { return try main.view(offset: state.lowerBound, shape: [state.count]) }
        let joined = try scratch[3].view(offset: 0, shape: [state.count])
        try ParamRemainders.join(model.parameters.view(offset: block.lowerBound, shape: [block.count]),
                                 remainders: main.view(offset: state.lowerBound, shape: [state.count]), into: joined, on: model.device)
        return joined
    }

    /// Writes an updated fp32 block back into its 16-bit `state` (nothing for an fp32 view).
    private func store(_ block: Tensor, into stored: Tensor, _ state: Range<Int>) throws {
        guard stored.dtype != .float32 else { return }
        try stored.view(offset: state.lowerBound, shape: [state.count]).assign(converting: block, on: model.device)
    }

    /// Under mixed precision, the model's owned spans ← the main parameters rounded to `paramsDType`.
    private func copyMainParametersToModel() throws {
        guard let mainParameters else { return }
        var offset = 0
        for range in ownedRanges {
            let main = try mainParameters.view(offset: offset, shape: [range.count])
            let values = try model.parameters.view(offset: range.lowerBound, shape: [range.count])
            if values.dtype == .float32 {
                try values.round(to: settings.paramsDType, from: main, on: model.device)
            } else {
                try values.assign(converting: main, on: model.device)
            }
            offset += range.count
        }
    }

    /// The optimizer's state tensors by the name PyTorch's optimizers give them: Adam's `exp_avg` and
    /// `exp_avg_sq`, SGD's `momentum_buffer`.
    /// Under mixed precision also the main parameters, by Megatron's name `fp32_param`, or kept as
    /// remainders of the bf16 parameters (`storeParamRemainders`), `fp32_param_remainder`.
    var stateTensors: [(name: String, values: Tensor)] {
        let moments = settings.kind == .adam ? [("exp_avg", firstMoment), ("exp_avg_sq", secondMoment!)] : [("momentum_buffer", firstMoment)]
        let main = settings.storeParamRemainders ? Self.mainParameterRemaindersName : Self.mainParametersName
        return mainParameters.map { [(main, $0)] + moments } ?? moments
    }

    static let mainParametersName = "fp32_param", mainParameterRemaindersName = "fp32_param_remainder"

    /// This rank's spans of `state`: each owned range of the flat buffer and the view of `state` holding it.
    func ownedSpans(of state: Tensor) throws -> [(range: Range<Int>, values: Tensor)] {
        var offset = 0
        return try ownedRanges.map { range in
            defer { offset += range.count }
            return (range, try state.view(offset: offset, shape: [range.count]))
        }
    }

    /// Calls `body` with each state tensor laid out like the flat parameter buffer: the tensors
    /// themselves when this rank owns the whole buffer, else full-size copies holding this rank's
    /// spans (zero elsewhere) for `body` to fill in. (The copies are malloc'd, so their memory returns
    /// to the system afterwards.)
    func withFullState<R>(_ body: ([(name: String, values: UnsafeMutablePointer<Float>)]) throws -> R) throws -> R {
        let total = model.layout.totalCount
        guard ownedRanges != [0 ..< total] else { return try body(stateTensors.map { ($0.name, $0.values.floats) }) }
        let full = try stateTensors.map { name, state in
            let values = UnsafeMutablePointer<Float>.allocate(capacity: total)
            values.initialize(repeating: 0, count: total)
            for (range, owned) in try ownedSpans(of: state) { (values + range.lowerBound).update(from: owned.floats, count: range.count) }
            return (name: name, values: values)
        }
        defer { for f in full { f.values.deallocate() } }
        return try body(full)
    }
}
