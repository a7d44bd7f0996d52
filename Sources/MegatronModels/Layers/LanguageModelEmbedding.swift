import MegatronCore

/// Megatron's LanguageModelEmbedding, on the first pipeline stage: the vocabulary-parallel word
/// embedding plus, with learned absolute positions, the position embedding, and with token types
/// (BERT's two segments) the token-type embedding, then dropout:
///
///     x = dropout(E[ids] + P[positions] + K[types])    [rows, h]: every token row, or this rank's under sequence parallelism
struct LanguageModelEmbedding {
    let wordEmbeddings: VocabParallelEmbedding
    /// [max positions, h], replicated; nil with rotary positions.
    let positionEmbeddings: Parameter?
    /// [token types, h], replicated; nil without token types.
    var tokentypeEmbeddings: Parameter? = nil
    /// The layer number naming its dropout stream (−1; T5's decoder embedding, which shares the
    /// tables with the encoder's, draws another).
    var dropoutLayer = -1
    let device: CPUDevice
    /// Under 16-bit parameter storage, the fp32 window of the position (and token-type) tables (the
    /// word table stays 16-bit).
    var window: ParameterWindow.Slot? = nil

    /// `tokentypes` [T]: each token's type, with a token-type table.
    func forward(ids: Tensor, positions: Tensor, tokentypes: Tensor? = nil, pass: LayerPass) throws -> Tensor {
        try window?.load()
        let x = try wordEmbeddings.forward(ids: ids, positionEmbedding: positionEmbeddings, positions: positions,
                                           tokentypeEmbedding: tokentypeEmbeddings, tokentypes: tokentypes, rows: pass.rows)
        guard pass.hiddenDropout > 0 else { return x }
        return try Dropout.apply(x, probability: pass.hiddenDropout, rng: dropoutStream(pass), rows: pass.dropoutRows(count: x.rows), on: device)
    }

    /// Accumulates the tables' gradients from ∂x of this rank's rows.
    func backward(_ dx: Tensor, ids: Tensor, positions: Tensor, tokentypes: Tensor? = nil, pass: LayerPass) throws {
        let dSum = pass.hiddenDropout > 0
            ? try Dropout.apply(dx, probability: pass.hiddenDropout, rng: dropoutStream(pass), rows: pass.dropoutRows(count: dx.rows),
                            on: device) : dx
        try window?.beginBackward()
        try wordEmbeddings.backward(dSum, ids: ids, positionEmbedding: positionEmbeddings, positions: positions,
                                    tokentypeEmbedding: tokentypeEmbeddings, tokentypes: tokentypes, rows: pass.rows)
        try window?.endBackward()
    }

    private func dropoutStream(_ pass: LayerPass) -> PhiloxStream { pass.dropout.stream(layer: dropoutLayer, site: .embedding) }
}
