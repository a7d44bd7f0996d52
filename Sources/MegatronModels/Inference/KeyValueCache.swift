import Foundation
import MegatronCore

/// The keys and values every layer computed for the tokens of one sequence so far (Megatron's
/// inference context), so that generation runs the model on each new token alone instead of on
/// the whole sequence again.
public final class KeyValueCache {
    /// Per layer, [capacity, groups · headDim]: row t holds token t's key (value) heads.
    let keys: [Tensor]
    let values: [Tensor]
    public let capacity: Int
    /// Tokens held.
    public internal(set) var length = 0

    /// An empty cache for up to `capacity` tokens (default: the model's --max-position-embeddings), of
    /// this tensor-parallel rank's key/value heads.
    public init(for model: GPTModel, capacity: Int? = nil) throws {
        let c = model.config
        let rows = capacity ?? c.maxPositionEmbeddings, width = c.numQueryGroups / model.tensorParallel.size * c.kvChannels
        self.capacity = rows
        keys = try (0 ..< c.numLayers).map { _ in try Tensor(shape: [rows, width], on: model.device, zeroed: false) }
        values = try (0 ..< c.numLayers).map { _ in try Tensor(shape: [rows, width], on: model.device, zeroed: false) }
    }

    /// Appends the n new tokens' keys and values (from qkv [n, rowWidth]) to layer `layer`'s rows and
    /// returns their attention context [n, heads · headDim]: new token i (at position p = length + i)
    /// attends to cached positions 0 ... p, softmax(q·kⱼ/√d) weighting the vⱼ.
    func attend(_ qkv: Tensor, layout: AttentionLayout, layer: Int, on device: CPUDevice) throws -> Tensor {
        let n = layout.sequenceLength, d = layout.headDim, groups = layout.groups, start = length
        let width = groups * d, keys = keys[layer].floats, values = values[layer].floats
        for t in 0 ..< n {
            for g in 0 ..< groups {
                (keys + (start + t) * width + g * d).update(from: qkv.floats + t * layout.rowWidth + layout.keyOffsets[g], count: d)
                (values + (start + t) * width + g * d).update(from: qkv.floats + t * layout.rowWidth + layout.valueOffsets[g], count: d)
            }
        }
        let heads = layout.heads, perGroup = heads / groups, scale = 1 / Float(d).squareRoot()
        let context = try Tensor(shape: [n, heads * d], on: device)
        var scores = [Float](repeating: 0, count: start + n)
        for t in 0 ..< n {
            let visible = start + t + 1
            for h in 0 ..< heads {
                let q = qkv.floats + t * layout.rowWidth + layout.queryOffsets[h], g = h / perGroup
                var largest = -Float.infinity
                for j in 0 ..< visible {
                    let k = keys + j * width + g * d
                    var dot: Float = 0
                    for i in 0 ..< d { dot += q[i] * k[i] }
                    scores[j] = dot * scale
                    largest = max(largest, scores[j])
                }
                var sum: Float = 0
                for j in 0 ..< visible { scores[j] = exp(scores[j] - largest); sum += scores[j] }
                let out = context.floats + t * heads * d + h * d
                for j in 0 ..< visible {
                    let weight = scores[j] / sum, v = values + j * width + g * d
                    for i in 0 ..< d { out[i] += weight * v[i] }
                }
            }
        }
        return context
    }
}

extension GPTModel {
    /// Logits [tokens.count, paddedVocab] of `tokens` continuing the sequence `cache` holds (at its
    /// positions cache.length ..< cache.length + tokens.count), without dropout; their keys and values
    /// join the cache. The layers run their training forward, the attention reading the cache. Row i
    /// equals what `logits` computes at that position for the whole sequence. Under tensor
    /// parallelism every rank of the group calls it, and each gets the whole logits.
    public func logits(continuing tokens: [Int32], cache: KeyValueCache) throws -> Tensor {
        try requireWholeModel("generation")
        let n = tokens.count, start = cache.length
        guard n > 0 else { throw TensorError("generation: no tokens to add") }
        guard start + n <= cache.capacity, start + n <= config.maxPositionEmbeddings else {
            throw ConfigError(flag: "--max-position-embeddings", "generation: \(start + n) tokens exceed the cache's \(cache.capacity) or --max-position-embeddings "
                              + "\(config.maxPositionEmbeddings)")
        }
        let ids = try Tensor(int32s: tokens, shape: [n], on: device)
        let positions = try Tensor(int32s: (start ..< start + n).map(Int32.init), shape: [n], on: device)
        let pass = LayerPass(positions: positions, firstKeys: nil, attention: try attentionLayout(batch: 1, sequenceLength: n),
                             scale: 1 / Float(config.kvChannels).squareRoot(), dropout: .inference, hiddenDropout: 0,
                             attentionDropout: 0, rows: .all, cache: cache)
        guard let embedding else { throw TensorError("generation: this rank holds no embeddings") }
        var x = try embedding.forward(ids: ids, positions: positions, pass: pass)
        for layer in layers { x = try layer.forward(x, pass: pass).output }
        cache.length += n
        return try tensorParallel.gatherColumns(outputLogits(x, pass: pass).0, on: device)
    }
}
