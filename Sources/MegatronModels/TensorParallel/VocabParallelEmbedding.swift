import MegatronCore

/// Megatron's VocabParallelEmbedding: the word embedding E [V, h] split by vocabulary rows over the
/// tensor-parallel group, rank r holding rows vocabStart ..< vocabStart + V/t. Each rank looks up the
/// ids that fall in its rows (zeros for the others) and the sum over the group (g: all-reduce, or a
/// reduce-scatter to this rank's rows under sequence parallelism) is the whole lookup.
///
/// The learned position embedding and the token-type embedding (BERT's), replicated, join the same
/// pass: rank 0 adds them before the sum, so they are counted once. In the backward every rank
/// accumulates the whole gradient of these tables, and of its own vocabulary rows.
struct VocabParallelEmbedding {
    let weight: Parameter
    /// The (padded) vocabulary of the whole table.
    let vocabularySize: Int
    let tensorParallel: TensorParallel
    let device: CPUDevice

    /// The first vocabulary row this rank holds.
    var vocabStart: Int { tensorParallel.rank * vocabularySize / tensorParallel.size }

    /// E[ids] (+ P[positions] with a position table, + K[tokentypes] with a token-type table) summed
    /// over the group: [T, h], or this rank's rows of it under sequence parallelism.
    func forward(ids: Tensor, positionEmbedding: Parameter?, positions: Tensor, tokentypeEmbedding: Parameter? = nil,
                 tokentypes: Tensor? = nil, rows: RowShard) throws -> Tensor {
        let first = tensorParallel.rank == 0
        let position = first ? positionEmbedding?.value : nil
        let x = try Embedding.forward(ids: ids, word: weight.value, vocabStart: vocabStart, vocabSize: vocabularySize,
                                      position: position, positions: position == nil ? nil : positions, on: device)
        if first, let tokentypeEmbedding, let tokentypes {
            try Elementwise.axpy(x, Embedding.forward(ids: tokentypes, word: tokentypeEmbedding.value, on: device), alpha: 1, on: device)
        }
        return try tensorParallel.reduce(x, scatteringRows: rows.sequenceParallel, on: device)
    }

    /// Scatters the gradient dx of this rank's `rows` of the output (all-gathered first under sequence
    /// parallelism) into the gradients of its vocabulary rows and of the position and token-type tables.
    func backward(_ dx: Tensor, ids: Tensor, positionEmbedding: Parameter?, positions: Tensor, tokentypeEmbedding: Parameter? = nil,
                  tokentypes: Tensor? = nil, rows: RowShard) throws {
        let whole = try tensorParallel.gather(dx, sequenceParallel: rows.sequenceParallel, on: device)
        if let tokentypeEmbedding, let tokentypes {
            try Embedding.backward(whole, ids: tokentypes, gradWord: tokentypeEmbedding.gradient, on: device)
        }
        try Embedding.backward(whole, ids: ids, positions: positionEmbedding == nil ? nil : positions, gradWord: weight.gradient,
                               vocabStart: vocabStart, vocabSize: vocabularySize, gradPosition: positionEmbedding?.gradient,
                               on: device)
    }
}
