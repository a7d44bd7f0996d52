import MegatronCore
import MegatronParallel

/// Megatron's T5Model: an encoder–decoder transformer sharing one word embedding.
///
///     e = encoder_final_layernorm(encoder_layers(embed(encoder tokens)))        [T_enc, h]
///     y = decoder_final_layernorm(decoder_layers(embed(decoder tokens), e))      [T_dec, h]
///     logits = y·Eᵀ + b                                                            [T_dec, vocab]
///
/// Encoder layers attend bidirectionally over each sequence's unpadded tokens; decoder layers
/// causally, then over the encoder's unpadded output (cross-attention). Positions are learned
/// absolute embeddings, or T5's relative position bias (`T5Config.relativeAttention`): buckets of
/// key − query distance, a [buckets, heads] table for the encoder and one for the decoder, added to
/// every self-attention score of every layer. Trained on pretrain_t5.py's loss, the masked mean of
/// the decoder tokens' cross-entropy. Parameters live in one flat fp32 buffer, gradients in a twin,
/// under Megatron-core's T5Model names; under tensor parallelism the layers, the word embedding and
/// the output layer are split as GPT's (sequence parallelism and pipeline stages are not supported).
public final class T5Model: @unchecked Sendable {
    public let config: T5Config
    public let layout: ParameterLayout
    public let device: CPUDevice
    public let groups: ProcessGroups
    public let tensorParallel: TensorParallel
    /// The one pipeline stage.
    public let pipeline: PipelineStage
    public let parameters: Tensor
    public let gradients: Tensor
    /// --decoder-seq-length, for the throughput's FLOPs (the encoder's is the run's sequence length).
    public var decoderSequenceLength = 128
    /// What the forward keeps of each layer for the backward (--recompute-granularity …), counted
    /// within the encoder and within the decoder.
    public var recompute = ActivationRecompute.none
    /// The precision of the activations training keeps for the backward (see `GPTModel`).
    public var savedActivationPrecision = DType.float32
    let encoderEmbedding: LanguageModelEmbedding
    let decoderEmbedding: LanguageModelEmbedding
    let encoderLayers: [TransformerLayer]
    let decoderLayers: [TransformerLayer]
    let encoderFinalLayerNorm: Norm
    let decoderFinalLayerNorm: Norm
    let outputLayer: ColumnParallelLinear
    /// [buckets, heads] each, with relative positions.
    let relativeBias: (encoder: Parameter, decoder: Parameter)?
    /// What the two buffers store (`ParameterStorage`): under 16-bit storage the encoder's and the
    /// decoder's layers each share a window, the word table stays 16-bit, and the rest have a window
    /// each (`windows`).
    public let storage: ParameterStorage
    /// Under 16-bit storage, the windows of the position or relative-position tables, the encoder's
    /// final norm, and the decoder's final norm with the output bias: each loaded by the encoder's
    /// forward (nothing else overwrites them) and flushed once by the backward.
    let windows: [ParameterWindow.Slot]

    /// A model initialised as Megatron does (see `ParameterLayout.initialize`), or left zero without
    /// a seed (to be loaded); under tensor parallelism, this rank's shard of the same model. `storage`
    /// says in what precision the parameters and gradients are kept.
    public init(config: T5Config, seed: UInt64?, groups: ProcessGroups? = nil, storage: ParameterStorage = .float32,
                on device: CPUDevice) throws {
        try storage.validate()
        let groups = try groups ?? .single()
        self.groups = groups
        tensorParallel = TensorParallel(group: groups.tensorModelParallel)
        try config.validate(tensorParallelSize: tensorParallel.size)
        pipeline = try .only(of: groups.pipelineModelParallel, model: "T5")
        self.config = config
        self.device = device
        layout = ParameterLayout(config, tensorParallelRank: tensorParallel.rank, tensorParallelSize: tensorParallel.size)
        self.storage = storage
        parameters = try Tensor(shape: [layout.totalCount], dtype: storage.parameters, on: device)
        gradients = try Tensor(shape: [layout.totalCount], dtype: storage.gradients, on: device)
        let c = config.transformer, tp = tensorParallel, layout = layout
        let encoderLayers = (0 ..< config.encoderNumLayers).map { layout.range(ofPrefix: "encoder.layers.\($0).") }
        let decoderLayers = (0 ..< config.decoderNumLayers).map { layout.range(ofPrefix: "decoder.layers.\($0).") }
        // Between the word table and the encoder ("encoder_relative_pos_emb." is not under "encoder.").
        let tables = layout.range(ofPrefix: "embedding.word_embeddings.").upperBound ..< layout.range(ofPrefix: "encoder.").lowerBound
        let encoderNorm = layout.range(ofPrefix: "encoder.final_layernorm.")
        let decoderHead = layout.range(ofPrefix: "decoder.final_layernorm.").lowerBound ..< layout.totalCount
        let views = try ParameterViews(layout: layout, parameters: parameters, gradients: gradients, storage: storage,
                                       layers: [encoderLayers, decoderLayers], spans: [tables, encoderNorm, decoderHead], on: device)
        windows = [tables, encoderNorm, decoderHead].compactMap { views.window(of: $0) }
        func norm(_ name: String) throws -> Norm {
            Norm(kind: c.normalization, epsilon: c.normEpsilon, weight: try views(name + ".weight"),
                 bias: try views.optional(name + ".bias"), device: device)
        }
        let word = try views("embedding.word_embeddings.weight")
        let embedding = LanguageModelEmbedding(
            wordEmbeddings: VocabParallelEmbedding(weight: word, vocabularySize: c.paddedVocabSize, tensorParallel: tp, device: device),
            positionEmbeddings: try views.optional("embedding.position_embeddings.weight"), device: device)
        encoderEmbedding = embedding
        decoderEmbedding = LanguageModelEmbedding(wordEmbeddings: embedding.wordEmbeddings, positionEmbeddings: embedding.positionEmbeddings,
                                                  dropoutLayer: config.totalLayers, device: device)
        self.encoderLayers = try (0 ..< config.encoderNumLayers).map {
            try TransformerLayer(c, number: $0, prefix: "encoder.layers.\($0).", views: views, rotary: nil, tensorParallel: tp, on: device)
        }
        self.decoderLayers = try (0 ..< config.decoderNumLayers).map {
            try TransformerLayer(c, number: config.encoderNumLayers + $0, prefix: "decoder.layers.\($0).", views: views, rotary: nil,
                                 crossAttention: true, tensorParallel: tp, on: device)
        }
        encoderFinalLayerNorm = try norm("encoder.final_layernorm")
        decoderFinalLayerNorm = try norm("decoder.final_layernorm")
        outputLayer = ColumnParallelLinear(weight: word, bias: try views("lm_head.output_layer.bias"), skipBiasAdd: false,
                                           tensorParallel: tp, device: device)
        relativeBias = config.relativeAttention == nil ? nil
            : (try views("encoder_relative_pos_emb.relative_attention_bias.weight"),
               try views("decoder_relative_pos_emb.relative_attention_bias.weight"))
        if let seed {
            var scaled = c
            scaled.numLayers = config.totalLayers
            try layout.initialize(parameters, seed: seed, wholeLayout: ParameterLayout(config), config: scaled, on: device)
        }
    }

    // MARK: forward and backward

    /// Runs forward and backward over one micro-batch and adds ∂(lossWeight·loss)/∂θ into
    /// `gradients`; returns the loss (masked mean over the decoder tokens).
    @discardableResult
    public func forwardBackward(_ batch: T5MicroBatch, lossWeight: Float = 1, dropout: DropoutKey) throws -> MaskedLoss {
        let activations = try forward(batch, dropout: dropout, training: true)
        let loss = try self.loss(of: activations, lossWeight: lossWeight)
        try backward(activations)
        return loss
    }

    /// The loss of a micro-batch, without dropout or gradients (evaluation).
    public func loss(_ batch: T5MicroBatch) throws -> MaskedLoss {
        try loss(of: forward(batch, dropout: .inference, training: false), lossWeight: nil)
    }

    /// What the backward needs from the forward over one micro-batch.
    /// The encoder's forward over one micro-batch: what its backward needs, and its output.
    struct EncoderActivations {
        let pass: LayerPass
        let layers: [SavedLayer]
        let layersOutput: Tensor             // [T_enc, h], before the final norm
        let finalNorm: Norm.Saved
        let output: Tensor                   // [T_enc, h]
        /// Where the relative position table's gradient ([heads/t, buckets]) accumulates (training).
        let biasGradient: Tensor?
    }

    /// What the backward needs from the forward over one micro-batch.
    public struct StageActivations {
        let batch: T5MicroBatch
        let encoder: EncoderActivations
        /// The decoder's pass, which holds the encoder's output and the gradient that collects for it.
        let decoderPass: LayerPass
        let decoderLayers: [SavedLayer]
        let decoderLayersOutput: Tensor      // [T_dec, h], before the decoder's final norm
        let decoderFinalNorm: Norm.Saved
        let decoderOutput: Tensor            // [T_dec, h], the output layer's input
        /// This rank's logits [T_dec, vocab/t]; `loss(of:lossWeight:)` overwrites them by their gradient.
        let logits: Tensor
        let decoderBiasGradient: Tensor?
    }

    func forward(_ batch: T5MicroBatch, dropout: DropoutKey, training: Bool) throws -> StageActivations {
        try decode(batch, encoder: encode(batch, dropout: dropout, training: training), dropout: dropout, training: training)
    }

    /// The encoder over `batch`'s encoder tokens.
    func encode(_ batch: T5MicroBatch, dropout: DropoutKey, training: Bool) throws -> EncoderActivations {
        var pass = try LayerPass(config.transformer, batch: batch.batch, sequenceLength: batch.encoderSequenceLength,
                                 positions: batch.encoderPositions, firstKeys: nil, keyCounts: batch.encoderKeyCounts, dropout: dropout,
                                 training: training, splitRows: false, tensorParallel: tensorParallel)
        for window in windows { try window.load() }
        let biasGradient = try relativeBias(of: \.encoder, into: &pass, bidirectional: true, training: training)
        var x = try encoderEmbedding.forward(ids: batch.encoderTokens, positions: batch.encoderPositions, pass: pass)
        var saved: [SavedLayer] = []
        for layer in encoderLayers {
            let (output, activations) = try layer.forward(x, pass: pass)
            if training { saved.append(try encoderLayers.save(activations, layer: saved.count, recompute: recompute, precision: savedActivationPrecision)) }
            x = output
        }
        let (output, finalNorm) = try encoderFinalLayerNorm.forward(x)
        return EncoderActivations(pass: pass, layers: saved, layersOutput: x, finalNorm: finalNorm, output: output, biasGradient: biasGradient)
    }

    /// The decoder over `batch`'s decoder tokens, attending over `encoder`'s output, and the logits.
    func decode(_ batch: T5MicroBatch, encoder: EncoderActivations, dropout: DropoutKey, training: Bool) throws -> StageActivations {
        let c = config.transformer, sd = batch.decoderSequenceLength
        var pass = try LayerPass(c, batch: batch.batch, sequenceLength: sd, positions: batch.decoderPositions, firstKeys: nil,
                                 keyCounts: nil, dropout: dropout, training: training, splitRows: false, tensorParallel: tensorParallel)
        let biasGradient = try relativeBias(of: \.decoder, into: &pass, bidirectional: false, training: training)
        pass.encoder = LayerPass.Encoder(
            output: encoder.output,
            layout: CrossAttentionLayout(batch: batch.batch, queries: sd, keys: batch.encoderSequenceLength,
                                         heads: c.numAttentionHeads / tensorParallel.size, headDim: c.kvChannels),
            keyCounts: batch.encoderKeyCounts, gradient: training ? try Tensor(shape: encoder.output.shape, on: device) : nil)
        var y = try decoderEmbedding.forward(ids: batch.decoderTokens, positions: batch.decoderPositions, pass: pass)
        var saved: [SavedLayer] = []
        for layer in decoderLayers {
            let (output, activations) = try layer.forward(y, pass: pass)
            if training { saved.append(try decoderLayers.save(activations, layer: saved.count, recompute: recompute, precision: savedActivationPrecision)) }
            y = output
        }
        let (decoderOutput, finalNorm) = try decoderFinalLayerNorm.forward(y)
        return StageActivations(batch: batch, encoder: encoder, decoderPass: pass, decoderLayers: saved, decoderLayersOutput: y,
                                decoderFinalNorm: finalNorm, decoderOutput: decoderOutput, logits: try outputLayer.forward(decoderOutput),
                                decoderBiasGradient: biasGradient)
    }

    /// With relative positions, sets `pass`'s bias from the table `side` names and returns where
    /// its gradient accumulates in training; nil without relative positions or outside training.
    private func relativeBias(of side: KeyPath<(encoder: Parameter, decoder: Parameter), Parameter>, into pass: inout LayerPass,
                              bidirectional: Bool, training: Bool) throws -> Tensor? {
        guard let relative = config.relativeAttention, let relativeBias else { return nil }
        let heads = config.transformer.numAttentionHeads / tensorParallel.size
        let gradient = training ? try Tensor(shape: [heads, relative.numBuckets], on: device) : nil
        pass.attentionBias = (try bias(relativeBias[keyPath: side], queries: pass.attention.sequenceLength,
                                       keys: pass.attention.sequenceLength, bidirectional: bidirectional), gradient)
        return gradient
    }

    /// This rank's heads of a relative position table [buckets, heads] as the attention's bias.
    private func bias(_ table: Parameter, queries: Int, keys: Int, bidirectional: Bool) throws -> Attention.Bias {
        let relative = config.relativeAttention!, n = relative.numBuckets
        let heads = config.transformer.numAttentionHeads, local = heads / tensorParallel.size, first = tensorParallel.rank * local
        var transposed = [Float](repeating: 0, count: local * n)
        for h in 0 ..< local { for b in 0 ..< n { transposed[h * n + b] = table.value.floats[b * heads + first + h] } }
        let buckets = RelativePositionBuckets.buckets(queries: queries, keys: keys, bidirectional: bidirectional, numBuckets: n,
                                                      maxDistance: relative.maxDistance)
        return Attention.Bias(table: try Tensor(transposed, shape: [local, n], on: device),
                              buckets: try Tensor(int32s: buckets, shape: [queries, keys], on: device))
    }

    /// The micro-batch's loss. With `lossWeight` (training), the logits are overwritten by
    /// ∂(lossWeight·loss)/∂logits for `backward`.
    func loss(of a: StageActivations, lossWeight: Float?) throws -> MaskedLoss {
        let mask = a.batch.lossMask.toFloatArray(), tokens = mask.reduce(0, +)
        let gradWeights = try lossWeight.map { w in try Tensor(mask.map { $0 * w / max(tokens, 1) }, shape: [mask.count], on: device) }
        let losses = try VocabParallelCrossEntropy.losses(logits: a.logits, targets: a.batch.labels, vocabSize: config.transformer.paddedVocabSize,
                                                          gradWeights: gradWeights, tensorParallel: tensorParallel, on: device)
        return MaskedLoss(losses: losses.toFloatArray(), mask: mask)
    }

    /// The backward from the logits' gradients `loss(of:lossWeight:)` left, adding into `gradients`.
    func backward(_ a: StageActivations) throws {
        let batch = a.batch, encoder = a.encoder
        for window in windows { try window.beginBackward() }
        let dOutput = try outputLayer.backward(a.logits, input: a.decoderOutput, rows: .all)
        var dy = try decoderFinalLayerNorm.backward(dOutput, input: a.decoderLayersOutput, saved: a.decoderFinalNorm)
        var decoderChunk: [Int: TransformerLayer.Activations] = [:], encoderChunk = decoderChunk
        for index in decoderLayers.indices.reversed() {
            let activations = try decoderLayers.restore(a.decoderLayers, layer: index, chunk: &decoderChunk, pass: a.decoderPass)
            dy = try decoderLayers[index].backward(dy, activations: activations, pass: a.decoderPass)
        }
        try decoderEmbedding.backward(dy, ids: batch.decoderTokens, positions: batch.decoderPositions, pass: a.decoderPass)
        guard let dEncoderOutput = a.decoderPass.encoder?.gradient else { throw TensorError("T5: the decoder's pass lost its encoder") }
        var dx = try encoderFinalLayerNorm.backward(dEncoderOutput, input: encoder.layersOutput, saved: encoder.finalNorm)
        for index in encoderLayers.indices.reversed() {
            let activations = try encoderLayers.restore(encoder.layers, layer: index, chunk: &encoderChunk, pass: encoder.pass)
            dx = try encoderLayers[index].backward(dx, activations: activations, pass: encoder.pass)
        }
        try encoderEmbedding.backward(dx, ids: batch.encoderTokens, positions: batch.encoderPositions, pass: encoder.pass)
        if let relativeBias, let encoderGradient = encoder.biasGradient, let decoderGradient = a.decoderBiasGradient {
            try addBiasGradient(encoderGradient, to: relativeBias.encoder)
            try addBiasGradient(decoderGradient, to: relativeBias.decoder)
        }
        for window in windows { try window.endBackward() }
    }

    /// Adds this rank's heads' table gradient [heads/t, buckets] into the table's gradient
    /// [buckets, heads], then sums it over the tensor-parallel group (each rank holds its heads' part).
    private func addBiasGradient(_ local: Tensor, to table: Parameter) throws {
        let heads = config.transformer.numAttentionHeads, n = local.columns, first = tensorParallel.rank * local.rows
        var whole = [Float](repeating: 0, count: n * heads)
        for h in 0 ..< local.rows { for b in 0 ..< n { whole[b * heads + first + h] = local.floats[h * n + b] } }
        let summed = try Tensor(whole, shape: [n, heads], on: device)
        if tensorParallel.size > 1 { try tensorParallel.group.allReduce(UnsafeMutableBufferPointer(start: summed.floats, count: summed.count), op: .sum) }
        try Elementwise.axpy(table.gradient, summed, alpha: 1, on: device)
    }
}

extension ParameterLayout {
    /// The layout of T5Model's tensor-parallel rank `tensorParallelRank` of `tensorParallelSize`,
    /// under Megatron-core's names.
    public init(_ config: T5Config, tensorParallelRank: Int = 0, tensorParallelSize: Int = 1) {
        self.init(tensorParallelRank: tensorParallelRank, tensorParallelSize: tensorParallelSize, pipelineStage: 0, pipelineStages: 1)
        let c = config.transformer
        add("embedding.word_embeddings.weight", [c.paddedVocabSize, c.hiddenSize], .rows)
        if let relative = config.relativeAttention {
            add("encoder_relative_pos_emb.relative_attention_bias.weight", [relative.numBuckets, c.numAttentionHeads], .replicated)
            add("decoder_relative_pos_emb.relative_attention_bias.weight", [relative.numBuckets, c.numAttentionHeads], .replicated)
        } else {
            add("embedding.position_embeddings.weight", [c.maxPositionEmbeddings, c.hiddenSize], .replicated)
        }
        for layer in 0 ..< config.encoderNumLayers { addTransformerLayer(c, prefix: "encoder.layers.\(layer).") }
        addNorm(c, "encoder.final_layernorm")
        for layer in 0 ..< config.decoderNumLayers { addTransformerLayer(c, prefix: "decoder.layers.\(layer).", crossAttention: true) }
        addNorm(c, "decoder.final_layernorm")
        add("lm_head.output_layer.bias", [c.paddedVocabSize], .rows)
    }
}
