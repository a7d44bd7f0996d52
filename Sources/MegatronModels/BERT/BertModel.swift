import MegatronCore
import MegatronParallel

/// Megatron's BertModel: word + learned position (+ token-type) embeddings, transformer encoder
/// layers with bidirectional attention over each sequence's unpadded tokens, a final norm, then
///   - the masked-LM head: `BertLMHead` (dense, GELU, norm) and the output layer, tied to the word
///     embedding with a bias of its own, giving logits [T, vocab];
///   - with the binary head, the sentence-order head on each sequence's first token
///     (`SentenceOrderHead`: pooler and binary head), giving logits [B, 2].
/// Trained on pretrain_bert.py's loss, lm (masked mean) + sop (mean). Parameters live in one flat
/// fp32 buffer, gradients in a twin, as `GPTModel`'s, under Megatron-core's BertModel names.
///
/// Under tensor parallelism (t ranks) the encoder's layers, the word embedding and the output layer
/// are split as GPT's are; the heads' dense layers are replicated. Under sequence parallelism the
/// encoder, its final norm and the LM head's dense layer and norm work on this rank's rows; the
/// sentence-order head sees every row. One pipeline stage only.
///
/// Shapes (T = B·s tokens, h hidden): embeddings [T, h] → layers → final norm [T, h] → LM head
/// [T, h] → logits [T, vocab]; first rows [B, h] → pooled [B, h] → sop logits [B, 2].
public final class BertModel: @unchecked Sendable {
    public let config: BertConfig
    public let layout: ParameterLayout
    public let device: CPUDevice
    public let groups: ProcessGroups
    public let tensorParallel: TensorParallel
    /// The one pipeline stage.
    public let pipeline: PipelineStage
    /// Megatron's --sequence-parallel (with a tensor-parallel group).
    public var sequenceParallel = false
    /// What the forward keeps of each layer for the backward (--recompute-granularity …).
    public var recompute = ActivationRecompute.none
    /// The precision of the activations training keeps for the backward (see `GPTModel`).
    public var savedActivationPrecision = DType.float32
    /// All parameters, flat, in `layout` order, in `storage.parameters`.
    public let parameters: Tensor
    /// Their gradients, same layout, in `storage.gradients`.
    public let gradients: Tensor
    /// What the two buffers store (`ParameterStorage`): under 16-bit storage the transformer layers,
    /// the embedding's position and token-type tables and the heads (final norm to binary head) compute
    /// in fp32 windows, the word table stays 16-bit.
    public let storage: ParameterStorage
    /// Under 16-bit storage, the window of the heads: the final norm, lm head, output bias, pooler and binary head.
    let headWindow: ParameterWindow.Slot?
    let embedding: LanguageModelEmbedding
    let layers: [TransformerLayer]
    let finalLayerNorm: Norm
    let lmHead: BertLMHead
    let outputLayer: ColumnParallelLinear
    let sentenceOrderHead: SentenceOrderHead?

    /// A model initialised as Megatron does (see `ParameterLayout.initialize`), or left zero without
    /// a seed (to be loaded); under tensor parallelism, this rank's shard of the same model. `storage`
    /// says in what precision the parameters and gradients are kept.
    public init(config: BertConfig, seed: UInt64?, groups: ProcessGroups? = nil, storage: ParameterStorage = .float32,
                on device: CPUDevice) throws {
        try storage.validate()
        let groups = try groups ?? .single()
        self.groups = groups
        tensorParallel = TensorParallel(group: groups.tensorModelParallel)
        try config.validate(tensorParallelSize: tensorParallel.size)
        pipeline = try .only(of: groups.pipelineModelParallel, model: "BERT")
        self.config = config
        self.device = device
        layout = ParameterLayout(config, tensorParallelRank: tensorParallel.rank, tensorParallelSize: tensorParallel.size)
        self.storage = storage
        parameters = try Tensor(shape: [layout.totalCount], dtype: storage.parameters, on: device)
        gradients = try Tensor(shape: [layout.totalCount], dtype: storage.gradients, on: device)
        let c = config.transformer, tp = tensorParallel, layout = layout
        let word = layout.range(ofPrefix: "embedding.word_embeddings."), head = layout.range(ofPrefix: "encoder.final_layernorm.").lowerBound
        let tables = word.upperBound ..< layout.range(ofPrefix: "embedding.").upperBound, heads = head ..< layout.totalCount
        let views = try ParameterViews(layout: layout, parameters: parameters, gradients: gradients, storage: storage,
                                       layers: [(0 ..< c.numLayers).map { layout.range(ofPrefix: "encoder.layers.\($0).") }],
                                       spans: [tables, heads], on: device)
        headWindow = views.window(of: heads)
        func norm(_ name: String) throws -> Norm {
            Norm(kind: c.normalization, epsilon: c.normEpsilon, weight: try views(name + ".weight"),
                 bias: try views.optional(name + ".bias"), device: device)
        }
        func linear(_ name: String) throws -> (weight: Parameter, bias: Parameter) {
            (try views(name + ".weight"), try views(name + ".bias"))
        }
        let wordEmbedding = try views("embedding.word_embeddings.weight")
        embedding = LanguageModelEmbedding(
            wordEmbeddings: VocabParallelEmbedding(weight: wordEmbedding, vocabularySize: c.paddedVocabSize, tensorParallel: tp, device: device),
            positionEmbeddings: try views("embedding.position_embeddings.weight"),
            tokentypeEmbeddings: try views.optional("embedding.tokentype_embeddings.weight"), device: device,
            window: views.window(of: tables))
        layers = try (0 ..< c.numLayers).map {
            try TransformerLayer(c, number: $0, prefix: "encoder.layers.\($0).", views: views, rotary: nil, tensorParallel: tp, on: device)
        }
        finalLayerNorm = try norm("encoder.final_layernorm")
        lmHead = BertLMHead(dense: try linear("lm_head.dense"), layerNorm: try norm("lm_head.layer_norm"), device: device)
        outputLayer = ColumnParallelLinear(weight: wordEmbedding, bias: try views("output_layer.bias"), skipBiasAdd: false, tensorParallel: tp,
                                           device: device)
        sentenceOrderHead = config.bertBinaryHead
            ? SentenceOrderHead(pooler: try linear("pooler.dense"), binary: try linear("binary_head"), device: device) : nil
        if let seed {
            try layout.initialize(parameters, seed: seed, wholeLayout: ParameterLayout(config), config: c, on: device)
        }
    }

    // MARK: forward and backward

    /// Runs forward and backward over one micro-batch and adds ∂(lossWeight·(lm + sop))/∂θ into
    /// `gradients` (lossWeight: 1 / micro-batches per iteration, times the loss scale under fp16).
    @discardableResult
    public func forwardBackward(_ batch: BertMicroBatch, lossWeight: Float = 1, dropout: DropoutKey) throws -> BertLoss {
        let activations = try forward(batch, dropout: dropout, training: true)
        let loss = try self.loss(of: activations, lossWeight: lossWeight)
        try backward(activations)
        return loss
    }

    /// The losses of a micro-batch, without dropout or gradients (evaluation).
    public func loss(_ batch: BertMicroBatch) throws -> BertLoss {
        try loss(of: forward(batch, dropout: .inference, training: false), lossWeight: nil)
    }

    /// The masked-LM logits [T, padded vocab], whole on every tensor-parallel rank, and the
    /// sentence-order logits [B, 2] (nil without the binary head) of a micro-batch (no dropout).
    public func logits(_ batch: BertMicroBatch) throws -> (lm: Tensor, sentenceOrder: Tensor?) {
        let a = try forward(batch, dropout: .inference, training: false)
        return (try tensorParallel.gatherColumns(a.logits, on: device), a.sentenceOrder?.logits)
    }

    /// What the backward needs from the forward over one micro-batch.
    public struct StageActivations {
        let batch: BertMicroBatch
        let pass: LayerPass
        let layers: [SavedLayer]
        let encoderOutput: Tensor                   // [rows, h]: the last layer's output
        let finalNorm: Norm.Saved
        let lmHead: BertLMHead.Saved
        let lmHeadOutput: Tensor                    // [T, h]: the output layer's input, every row
        /// This rank's masked-LM logits [T, vocab/t]; `loss(of:lossWeight:)` overwrites them by their gradient.
        let logits: Tensor
        /// The sentence-order logits [B, 2] (overwritten likewise) and what the head's backward needs.
        let sentenceOrder: (logits: Tensor, saved: SentenceOrderHead.Saved)?
    }

    func forward(_ batch: BertMicroBatch, dropout: DropoutKey, training: Bool) throws -> StageActivations {
        let pass = try self.pass(over: batch, dropout: dropout, training: training)
        var x = try embedding.forward(ids: batch.tokens, positions: batch.positions,
                                      tokentypes: try tokentypes(of: batch), pass: pass)
        var saved: [SavedLayer] = []
        for layer in layers {
            let (output, activations) = try layer.forward(x, pass: pass)
            if training { saved.append(try layers.save(activations, layer: saved.count, recompute: recompute, precision: savedActivationPrecision)) }
            x = output
        }
        try headWindow?.load()
        let (hidden, finalNorm) = try finalLayerNorm.forward(x)
        let (head, headSaved) = try lmHead.forward(hidden)
        let headOutput = try outputLayer.gatherInput(head, pass.rows)
        let logits = try outputLayer.forward(headOutput)
        let sentenceOrder = try sentenceOrderHead.map {
            try $0.forward(tensorParallel.gather(hidden, sequenceParallel: pass.rows.sequenceParallel, on: device),
                           batch: batch.batch, sequenceLength: batch.sequenceLength)
        }
        return StageActivations(batch: batch, pass: pass, layers: saved, encoderOutput: x, finalNorm: finalNorm, lmHead: headSaved,
                           lmHeadOutput: headOutput, logits: logits, sentenceOrder: sentenceOrder)
    }

    /// The micro-batch's lm and sop losses. With `lossWeight` (training), the logits are overwritten
    /// by ∂(lossWeight·(lm + sop))/∂logits for `backward`.
    func loss(of a: StageActivations, lossWeight: Float?) throws -> BertLoss {
        let mask = a.batch.lossMask.toFloatArray(), tokens = mask.reduce(0, +)
        let gradWeights = try lossWeight.map { w in try Tensor(mask.map { $0 * w / max(tokens, 1) }, shape: [mask.count], on: device) }
        let losses = try VocabParallelCrossEntropy.losses(logits: a.logits, targets: a.batch.labels, vocabSize: config.transformer.paddedVocabSize,
                                                          gradWeights: gradWeights, tensorParallel: tensorParallel, on: device)
        let sop = try a.sentenceOrder.map { try SentenceOrderHead.loss($0.logits, labels: a.batch.sentenceOrder, lossWeight: lossWeight) }
        return BertLoss(lm: MaskedLoss(losses: losses.toFloatArray(), mask: mask), sop: sop ?? MaskedLoss(sum: 0, tokens: 0))
    }

    /// The backward from the logits' gradients `loss(of:lossWeight:)` left, adding into `gradients`.
    func backward(_ a: StageActivations) throws {
        let pass = a.pass
        try headWindow?.beginBackward()
        let dHead = try outputLayer.backward(a.logits, input: a.lmHeadOutput, rows: pass.rows)
        let dHidden = try lmHead.backward(dHead, saved: a.lmHead)
        if let head = sentenceOrderHead, let sentenceOrder = a.sentenceOrder {
            // Each sequence's first row, where this rank holds it.
            let dFirst = try head.backward(sentenceOrder.logits, saved: sentenceOrder.saved)
            let h = dHidden.columns, s = a.batch.sequenceLength, rows = pass.rows.first ..< pass.rows.first + dHidden.rows
            for b in 0 ..< a.batch.batch where rows.contains(b * s) {
                let row = dHidden.floats + (b * s - rows.lowerBound) * h, d = dFirst.floats + b * h
                for c in 0 ..< h { row[c] += d[c] }
            }
        }
        var dx = try finalLayerNorm.backward(dHidden, input: a.encoderOutput, saved: a.finalNorm)
        try headWindow?.endBackward()
        var chunk: [Int: TransformerLayer.Activations] = [:]
        for index in layers.indices.reversed() {
            let activations = try layers.restore(a.layers, layer: index, chunk: &chunk, pass: pass)
            dx = try layers[index].backward(dx, activations: activations, pass: pass)
        }
        try embedding.backward(dx, ids: a.batch.tokens, positions: a.batch.positions, tokentypes: try tokentypes(of: a.batch), pass: pass)
    }

    /// The batch's token types, which a model with the binary head needs.
    private func tokentypes(of batch: BertMicroBatch) throws -> Tensor? {
        guard config.bertBinaryHead else { return nil }
        guard let types = batch.tokentypes else { throw TensorError("BERT with the binary head: the micro-batch has no token types") }
        return types
    }

    /// The pass over `batch`: bidirectional attention within each sequence's tokens.
    private func pass(over batch: BertMicroBatch, dropout: DropoutKey, training: Bool) throws -> LayerPass {
        try LayerPass(config.transformer, batch: batch.batch, sequenceLength: batch.sequenceLength, positions: batch.positions,
                      firstKeys: nil, keyCounts: batch.keyCounts, dropout: dropout, training: training, splitRows: sequenceParallel,
                      tensorParallel: tensorParallel)
    }
}

extension ParameterLayout {
    /// The layout of BertModel's tensor-parallel rank `tensorParallelRank` of `tensorParallelSize`,
    /// under Megatron-core's names.
    public init(_ config: BertConfig, tensorParallelRank: Int = 0, tensorParallelSize: Int = 1) {
        self.init(tensorParallelRank: tensorParallelRank, tensorParallelSize: tensorParallelSize, pipelineStage: 0, pipelineStages: 1)
        let c = config.transformer, h = c.hiddenSize
        add("embedding.word_embeddings.weight", [c.paddedVocabSize, h], .rows)
        add("embedding.position_embeddings.weight", [c.maxPositionEmbeddings, h], .replicated)
        if config.numTokentypes > 0 { add("embedding.tokentype_embeddings.weight", [config.numTokentypes, h], .replicated) }
        for layer in 0 ..< c.numLayers { addTransformerLayer(c, prefix: "encoder.layers.\(layer).") }
        addNorm(c, "encoder.final_layernorm")
        add("lm_head.dense.weight", [h, h], .replicated)
        add("lm_head.dense.bias", [h], .replicated)
        addNorm(c, "lm_head.layer_norm")
        add("output_layer.bias", [c.paddedVocabSize], .rows)
        guard config.bertBinaryHead else { return }
        add("pooler.dense.weight", [h, h], .replicated)
        add("pooler.dense.bias", [h], .replicated)
        add("binary_head.weight", [2, h], .replicated)
        add("binary_head.bias", [2], .replicated)
    }
}
