/// Megatron's activation recomputation: which of a layer's activations the forward keeps for the
/// backward, the rest being computed again during the backward from what was kept (with the same
/// dropout masks, so the gradients are bit for bit those of keeping everything).
///
/// - `full` (--recompute-granularity full) keeps only the inputs of checkpointed layers. With
///   `uniform` (--recompute-method uniform --recompute-num-layers N) the layers form chunks of N,
///   each keeping only its first layer's input and recomputing the whole chunk when the backward
///   reaches it; with `block` the first N layers each keep only their input, the others everything.
/// - `selective` (--recompute-granularity selective, or --recompute-activations) recomputes the
///   named parts of every layer (--recompute-modules, default core_attn). This model's attention
///   never stores its s × s probabilities (the kernel recomputes them from the saved per-row
///   log-sum-exp), so core_attn here drops the attention's context and statistics.
public enum ActivationRecompute: Sendable, Equatable {
    case none
    case full(Method, layers: Int)
    case selective(Set<Module>)

    public enum Method: String, Sendable, CaseIterable { case uniform, block }

    /// The parts of a layer selective recomputation can drop (Megatron's --recompute-modules names).
    public enum Module: String, Sendable, CaseIterable {
        /// The attention core's output (context) and its per-row statistics.
        case coreAttention = "core_attn"
        /// The outputs of input_layernorm and pre_mlp_layernorm.
        case layerNorm = "layernorm"
        /// fc1's output and its activation.
        case mlp
    }

    /// What the forward keeps of a layer.
    enum Kept: Equatable {
        /// Its activations except those of `recomputed`.
        case activations(recomputed: Set<Module>)
        /// Its input only: it starts a chunk the backward recomputes.
        case chunkInput
        /// Nothing: it lies inside a chunk.
        case nothing
    }

    /// What the forward keeps of layer `layer` of `layers`.
    func kept(layer: Int, of layers: Int) -> Kept {
        switch self {
        case .none: return .activations(recomputed: [])
        case .selective(let modules): return .activations(recomputed: modules)
        case .full(.uniform, let n): return layer % n == 0 ? .chunkInput : .nothing
        case .full(.block, let n): return layer < n ? .chunkInput : .activations(recomputed: [])
        }
    }
}
