import Foundation

/// T5's relative position buckets (Megatron's RelativePositionEmbedding, transformers' T5Attention):
/// for query i and key j, with r = j − i, bidirectional (the encoder) halves the buckets between
/// r ≤ 0 and r > 0 and takes |r|, unidirectional (the decoder) takes max(−r, 0); of the n buckets
/// left, the first n/2 are exact distances, the rest logarithmic up to `maxDistance`, computed in
/// float32 as those implementations do.
enum RelativePositionBuckets {
    /// int32 [queries, keys]: each distance's bucket computed once, then looked up.
    static func buckets(queries: Int, keys: Int, bidirectional: Bool, numBuckets: Int, maxDistance: Int) -> [Int32] {
        var n = numBuckets
        if bidirectional { n /= 2 }
        let maxExact = n / 2
        let logRange = Float(log(Double(maxDistance) / Double(maxExact)))
        /// The bucket of key − query distance r.
        func bucket(_ r: Int) -> Int32 {
            var r = r, bucket = 0
            if bidirectional {
                if r > 0 { bucket += n }
                r = abs(r)
            } else {
                r = -min(r, 0)
            }
            if r < maxExact { return Int32(bucket + r) }
            let large = maxExact + Int(logf(Float(r) / Float(maxExact)) / logRange * Float(n - maxExact))
            return Int32(bucket + min(large, n - 1))
        }
        let ofDistance = (1 - queries ..< keys).map(bucket)  // index r + queries − 1
        var out = [Int32](repeating: 0, count: queries * keys)
        for i in 0 ..< queries {
            for j in 0 ..< keys { out[i * keys + j] = ofDistance[j - i + queries - 1] }
        }
        return out
    }
}
