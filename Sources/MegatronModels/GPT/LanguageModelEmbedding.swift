import MegatronCore

/// Megatron's LanguageModelEmbedding, on the first pipeline stage: the vocabulary-parallel word
/// embedding plus, with learned absolute positions, the position embedding, then dropout:
///
///     x = dropout(E[ids] + P[positions])    [rows, h]: every token row, or this rank's under sequence parallelism
struct LanguageModelEmbedding {
    let wordEmbeddings: VocabParallelEmbedding
    /// [max positions, h], replicated; nil with rotary positions.
    let positionEmbeddings: Parameter?
    let device: CPUDevice

    func forward(ids: Tensor, positions: Tensor, pass: LayerPass) throws -> Tensor {
        let x = try wordEmbeddings.forward(ids: ids, positionEmbedding: positionEmbeddings, positions: positions, rows: pass.rows)
        guard pass.hiddenDropout > 0 else { return x }
        return try Dropout.apply(x, probability: pass.hiddenDropout, rng: dropoutStream(pass), firstRow: pass.rows.first, on: device)
    }

    /// Accumulates the tables' gradients from ∂x of this rank's rows.
    func backward(_ dx: Tensor, ids: Tensor, positions: Tensor, pass: LayerPass) throws {
        let dSum = pass.hiddenDropout > 0
            ? try Dropout.apply(dx, probability: pass.hiddenDropout, rng: dropoutStream(pass), firstRow: pass.rows.first, on: device) : dx
        try wordEmbeddings.backward(dSum, ids: ids, positionEmbedding: positionEmbeddings, positions: positions, rows: pass.rows)
    }

    private func dropoutStream(_ pass: LayerPass) -> PhiloxStream { pass.dropout.stream(layer: -1, site: .embedding) }
}
