import CKernels

/// Word (and learned absolute position) embedding lookup, Megatron's `LanguageModelEmbedding`
/// before its dropout: out[t] = word[ids[t]] + position[positions[t]].
///
/// Under tensor parallelism (Megatron's `VocabParallelEmbedding`) the word table is a shard: rows
/// `vocabStart ..< vocabStart + word.rows` of a vocabulary of `vocabSize`. Ids outside the shard
/// then look up zeros, and summing the outputs over the shards gives the whole lookup.
public enum Embedding {
    /// ids [tokens] int32, word [shard rows, h] (fp32, or stored in fp16 or bf16: rows are converted),
    /// optional fp32 position [maxPositions, h] with positions [tokens] int32 → out [tokens, h]. An id
    /// outside the vocabulary (`vocabSize`, default the word table's rows) or a position outside its
    /// table is an error naming it.
    public static func forward(ids: Tensor, word: Tensor, vocabStart: Int = 0, vocabSize: Int? = nil,
                               position: Tensor? = nil, positions: Tensor? = nil, on device: CPUDevice) throws -> Tensor {
        let hidden = try validate(ids: ids, word: word, vocabStart: vocabStart, vocabSize: vocabSize, position: position, positions: positions)
        let out = try Tensor(shape: [ids.count, hidden], on: device, zeroed: false)
        if word.dtype != .float32 {
            let code = try word.dtype.roundingCode("Embedding.forward")
            device.parallelRows(ids.count, columns: hidden) { r, _ in
                let o = r.lowerBound
                mg_embedding_forward_half(out.floats + o * hidden, word.halfBits, code, vocabStart, word.shape[0], ids.int32s + o,
                                          position?.floats, positions.map { $0.int32s + o }, r.count, hidden)
            }
            return out
        }
        device.parallelRows(ids.count, columns: hidden) { r, _ in
            let o = r.lowerBound
            mg_embedding_forward(out.floats + o * hidden, word.floats, vocabStart, word.shape[0], ids.int32s + o, position?.floats,
                                 positions.map { $0.int32s + o }, r.count, hidden)
        }
        return out
    }

    /// Scatter-add: gradWord[ids[t] − vocabStart] += dout[t] for the ids in the shard, and
    /// gradPosition[positions[t]] += dout[t]. Threads split the hidden dimension, so repeated ids
    /// never race and the sum order is fixed. A `gradWord` stored in 16 bits takes each token's row
    /// rounded back (`Tensor.accumulate`'s rule).
    public static func backward(_ gradOutput: Tensor, ids: Tensor, positions: Tensor? = nil, gradWord: Tensor,
                                vocabStart: Int = 0, vocabSize: Int? = nil, gradPosition: Tensor? = nil,
                                on device: CPUDevice) throws {
        let hidden = try validate(ids: ids, word: gradWord, vocabStart: vocabStart, vocabSize: vocabSize,
                                  position: gradPosition, positions: positions)
        try gradOutput.expect(shape: [ids.count, hidden], "Embedding.backward", "gradOutput")
        let minimumColumns = max(8, CPUDevice.minimumElementsPerTask / max(ids.count, 1))
        if gradWord.dtype != .float32 {
            let code = try gradWord.dtype.roundingCode("Embedding.backward")
            device.parallelFor(hidden, minimumPerTask: minimumColumns) { cols, _ in
                mg_embedding_backward_half(gradWord.halfBits, code, vocabStart, gradWord.shape[0], gradOutput.floats, ids.int32s, ids.count,
                                           hidden, cols.lowerBound, cols.upperBound)
                if let gradPosition {
                    mg_embedding_backward(nil, 0, 0, gradPosition.floats, gradOutput.floats, ids.int32s, positions?.int32s, ids.count,
                                          hidden, cols.lowerBound, cols.upperBound)
                }
            }
            return
        }
        device.parallelFor(hidden, minimumPerTask: minimumColumns) { cols, _ in
            mg_embedding_backward(gradWord.floats, vocabStart, gradWord.shape[0], gradPosition?.floats, gradOutput.floats,
                                  ids.int32s, positions?.int32s, ids.count, hidden, cols.lowerBound, cols.upperBound)
        }
    }

    private static func validate(ids: Tensor, word: Tensor, vocabStart: Int, vocabSize: Int?, position: Tensor?,
                                 positions: Tensor?) throws -> Int {
        try ids.expect(dtype: .int32, "Embedding", "ids")
        _ = try word.dtype.roundingCode("Embedding: word table")
        guard word.rank == 2 else { throw TensorError("Embedding: word table \(word.shape) must be [vocab, hidden]") }
        let vocab = vocabSize ?? word.shape[0], hidden = word.shape[1]
        guard vocabStart >= 0, vocabStart + word.shape[0] <= vocab else {
            throw TensorError("Embedding: a shard of \(word.shape[0]) rows from row \(vocabStart) does not fit a vocabulary of \(vocab)")
        }
        try checkRange(ids, below: vocab, what: "token id", table: "vocabulary")
        guard (position == nil) == (positions == nil) else {
            throw TensorError("Embedding: a position table and position ids come together")
        }
        if let position, let positions {
            try position.expect(dtype: .float32, "Embedding", "position table")
            guard position.rank == 2, position.shape[1] == hidden else {
                throw TensorError.shape("Embedding", "position table", position.shape, expected: [position.shape.first ?? 0, hidden])
            }
            try positions.expect(shape: ids.shape, "Embedding", "positions")
            try positions.expect(dtype: .int32, "Embedding", "positions")
            try checkRange(positions, below: position.shape[0], what: "position", table: "position table")
        }
        return hidden
    }

    private static func checkRange(_ t: Tensor, below limit: Int, what: String, table: String) throws {
        let values = UnsafeBufferPointer(start: t.int32s, count: t.count)
        if let bad = values.firstIndex(where: { $0 < 0 || Int($0) >= limit }) {
            throw TensorError("Embedding: \(what) \(values[bad]) at index \(bad) is outside the \(table) of \(limit) rows")
        }
    }
}
