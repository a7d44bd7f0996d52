import MegatronCore

extension GPTModel {
    /// Logits [Σ logitRows, paddedVocab] of the step's new tokens, sequence by sequence (each
    /// sequence's last row, or all its rows), without dropout; their keys and values join the
    /// sequences' blocks in `cache`. Every linear layer runs one GEMM over all the step's tokens; the
    /// attention reads each token's own sequence from the cache. A sequence's rows equal what
    /// `logits(_:)` computes at those positions for the whole sequence. Under tensor parallelism every
    /// rank of the group calls it, and each gets the whole logits.
    public func logits(_ step: InferenceStep, cache: PagedKeyValueCache) throws -> Tensor {
        try requireWholeModel("generation")
        var tokens: [Int32] = [], positions: [Int] = [], sequenceOfRow: [Int] = [], tables: [Int32] = [], tableStart: [Int] = []
        var logitRows: [Int] = []
        for (s, sequence) in step.sequences.enumerated() {
            let n = sequence.tokens.count, end = sequence.cachedLength + n
            guard n > 0 else { throw TensorError("generation: sequence \(s) of the step brings no tokens") }
            guard end <= config.maxPositionEmbeddings else {
                throw ConfigError(flag: "--max-position-embeddings",
                                  "generation: sequence \(s) reaches \(end) tokens, past --max-position-embeddings \(config.maxPositionEmbeddings)")
            }
            guard sequence.blocks.count * cache.blockSize >= end, sequence.blocks.allSatisfy({ (0 ..< Int32(cache.blockCount)).contains($0) }) else {
                throw TensorError("generation: sequence \(s)'s \(sequence.blocks.count) blocks of \(cache.blockSize) cannot hold \(end) positions")
            }
            if sequence.allLogits { logitRows += tokens.count ..< tokens.count + n } else { logitRows.append(tokens.count + n - 1) }
            tableStart.append(tables.count)
            tables += sequence.blocks
            tokens += sequence.tokens
            positions += sequence.cachedLength ..< end
            sequenceOfRow += repeatElement(s, count: n)
        }
        guard !tokens.isEmpty else { throw TensorError("generation: the step has no sequences") }
        guard let embedding else { throw TensorError("generation: this rank holds no embeddings") }
        let ids = try Tensor(int32s: tokens, shape: [tokens.count], on: device)
        let positionIDs = try Tensor(int32s: positions.map(Int32.init), shape: [tokens.count], on: device)
        let rows = PagedRows(cache: cache, positionOfRow: positions, sequenceOfRow: sequenceOfRow, tables: tables, tableStart: tableStart)
        let pass = LayerPass(positions: positionIDs, firstKeys: nil, attention: try attentionLayout(batch: 1, sequenceLength: tokens.count),
                             scale: 1 / Float(config.kvChannels).squareRoot(), dropout: .inference, hiddenDropout: 0,
                             attentionDropout: 0, rows: .all, cache: rows)
        var x = try embedding.forward(ids: ids, positions: positionIDs, pass: pass)
        for layer in layers { x = try layer.forward(x, pass: pass).output }
        // The final norm and output layer only for the rows whose logits are asked for.
        if logitRows.count < tokens.count {
            let selected = try Tensor(shape: [logitRows.count, x.columns], on: device, zeroed: false)
            for (i, r) in logitRows.enumerated() { (selected.floats + i * x.columns).update(from: x.floats + r * x.columns, count: x.columns) }
            x = selected
        }
        return try tensorParallel.gatherColumns(outputLogits(x, pass: pass).0, on: device)
    }
}
