import ArgumentParser
import MegatronModels

/// Megatron's activation recomputation flags (see `ActivationRecompute`).
public struct RecomputeArguments: ParsableArguments, Sendable {
    public init() {}

    @Flag(name: .customLong("recompute-activations"), help: "Selective recomputation (as --recompute-granularity selective).")
    public var recomputeActivations = false
    /// --recompute-granularity's values (Megatron's).
    public enum Granularity: String, ExpressibleByArgument, CaseIterable, Sendable { case full, selective }

    @Option(name: .customLong("recompute-granularity"),
            help: "full (recompute whole layers from their inputs) or selective (parts of every layer, --recompute-modules).")
    public var granularity: Granularity?
    @Option(name: .customLong("recompute-method"),
            help: "With full: uniform (chunks of --recompute-num-layers layers) or block (the first --recompute-num-layers layers).")
    public var method: ActivationRecompute.Method?
    @Option(name: .customLong("recompute-num-layers"), help: "With full: layers per chunk (uniform) or layers recomputed (block).")
    public var numLayers: Int?
    @Option(name: .customLong("recompute-modules"), parsing: .upToNextOption, help: "With selective (default: core_attn).")
    public var modules: [ActivationRecompute.Module] = []

    /// The recomputation these flags ask for in a model of `layers` layers, or an error naming the flag.
    public func recompute(layers: Int) throws -> ActivationRecompute {
        // Megatron's --recompute-activations sets selective granularity, whatever else is given.
        switch recomputeActivations ? .selective : granularity {
        case nil:
            guard method == nil, numLayers == nil, modules.isEmpty else {
                throw ValidationError("--recompute-method, --recompute-num-layers and --recompute-modules need --recompute-granularity")
            }
            return .none
        case .full:
            guard let method else { throw ValidationError("--recompute-granularity full needs --recompute-method uniform or block") }
            guard let numLayers, (1 ... layers).contains(numLayers) else {
                throw ValidationError("--recompute-granularity full needs --recompute-num-layers between 1 and --num-layers \(layers)")
            }
            guard modules.isEmpty else { throw ValidationError("--recompute-modules applies to --recompute-granularity selective only") }
            return .full(method, layers: numLayers)
        case .selective:
            guard method == nil, numLayers == nil else {
                throw ValidationError("--recompute-granularity selective takes no --recompute-method or --recompute-num-layers")
            }
            return .selective(Set(modules.isEmpty ? [.coreAttention] : modules))
        }
    }
}
