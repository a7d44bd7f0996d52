import MegatronCore

/// Names a pass's dropout masks: a different Philox stream per iteration, micro-batch, layer and
/// site, so a mask is regenerated (backward, recomputation), never stored.
public struct DropoutKey: Sendable {
    public let seed: UInt64
    public let iteration: Int
    public let microBatch: Int

    public init(seed: UInt64, iteration: Int, microBatch: Int) {
        self.seed = seed
        self.iteration = iteration
        self.microBatch = microBatch
    }

    /// No dropout is drawn (inference and evaluation): any key serves.
    static let inference = DropoutKey(seed: 0, iteration: 0, microBatch: 0)

    /// Where in the model a mask applies.
    enum Site: Int { case embedding, attentionProbabilities, attentionOutput, mlpOutput, crossAttentionProbabilities, crossAttentionOutput }

    /// The stream of `site` in layer `layer` (−1: the embeddings).
    func stream(layer: Int, site: Site) -> PhiloxStream {
        let id = ((UInt64(iteration) &* 65_536 &+ UInt64(microBatch)) &* 4096 &+ UInt64(layer + 1)) &* 8 &+ UInt64(site.rawValue)
        return PhiloxStream(seed: seed, stream: id)
    }
}
