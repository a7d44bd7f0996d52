import MegatronCore

extension T5Model {
    /// Greedy decoding (on one rank): each source [ids] is encoded, and the decoder, from `start`,
    /// appends its likeliest next token (among the first `vocabularySize` ids, the tokenizer's) until
    /// it writes `end` or `maxNewTokens` tokens. Returns the tokens after `start`, `end` included
    /// when written. The encoder runs once; the decoder over the whole prefix each step (no
    /// key/value cache).
    public func greedyDecode(_ sources: [[Int32]], maxNewTokens: Int, vocabularySize: Int, start: Int32,
                             end: Int32) throws -> [[Int32]] {
        guard tensorParallel.size == 1 else { throw TensorError("T5 generation runs on one rank") }
        let maxPositions = config.transformer.maxPositionEmbeddings
        guard !sources.isEmpty, sources.allSatisfy({ !$0.isEmpty }) else { throw TensorError("T5 generation: every source needs a token") }
        guard maxNewTokens >= 1, maxNewTokens < maxPositions else {
            throw TensorError("T5 generation: \(maxNewTokens) new tokens: expected 1 ..< \(maxPositions) (--max-position-embeddings)")
        }
        let encoderLength = min(sources.map(\.count).max()!, maxPositions)
        let encoder = sources.map { Array($0.prefix(encoderLength)) + [Int32](repeating: 0, count: max(0, encoderLength - $0.count)) }
        let encoderMask = sources.map { s in (0 ..< encoderLength).map { Int32($0 < s.count ? 1 : 0) } }
        var prefixes = [[Int32]](repeating: [start], count: sources.count)
        var done = [Bool](repeating: false, count: sources.count)
        let vocabulary = min(vocabularySize, config.transformer.paddedVocabSize)
        /// The batch of the sources and the prefixes so far (no labels: nothing is trained).
        func batch() throws -> T5MicroBatch {
            let zeros = [[Int32]](repeating: [Int32](repeating: 0, count: prefixes[0].count), count: sources.count)
            return try T5MicroBatch(encoderTokens: encoder, decoderTokens: prefixes, labels: zeros, lossMask: zeros,
                                    encoderMask: encoderMask, on: device)
        }
        let encoded = try encode(batch(), dropout: .inference, training: false)
        for _ in 0 ..< maxNewTokens where done.contains(false) {
            let length = prefixes[0].count
            let logits = try decode(batch(), encoder: encoded, dropout: .inference, training: false).logits
            let width = logits.columns
            for b in sources.indices {
                // A finished sequence keeps stepping with the others (its tokens are dropped).
                let row = logits.floats + (b * length + length - 1) * width
                var best = 0
                for v in 1 ..< vocabulary where row[v] > row[best] { best = v }
                prefixes[b].append(Int32(best))
                if Int32(best) == end { done[b] = true }
            }
        }
        return prefixes.map { prefix in
            let tokens = prefix.dropFirst()
            return Array(tokens.firstIndex(of: end).map { tokens[...$0] } ?? tokens[...])
        }
    }
}
