import MegatronCore
import MegatronParallel

/// A GPT decoder as Megatron builds it: word (+ learned position) embeddings, pre-norm transformer
/// layers (fused QKV, causal self-attention, output projection, MLP), a final norm, and an output
/// layer tied to the word embedding unless untied. Parameters live in one flat buffer and gradients
/// in a twin buffer with the same layout (`ParameterLayout`), fp32 or 16-bit (`ParameterStorage`).
///
/// Its process groups (`groups`) say which part a rank holds. Under tensor parallelism (t ranks)
/// each rank holds heads/t heads (whole query groups), ffn/t MLP features and vocab/t rows of the
/// word embedding and output layer, as Megatron's column- and row-parallel layers do; activations
/// between the layers are whole on every rank (or, under sequence parallelism, split by rows), and
/// the widths below are then per rank. Under pipeline parallelism (`pipeline`) a rank holds one stage of the model (see
/// `PipelineStage`), and `forward` and `backward` run one model chunk of that stage (the whole stage
/// but under the interleaved schedule): a pipeline schedule passes the activations and gradients
/// between the stages.
///
/// Shapes (T = batch·seq tokens, h hidden, a = heads·kv-channels, f = ffn):
/// embeddings [T, h] → per layer: norm → QKV [T, (heads + 2·groups)·d] → attention [T, a] →
/// proj [T, h] + residual → norm → fc1 [T, f or 2f] → GELU / SwiGLU [T, f] → fc2 [T, h] + residual
/// → final norm → logits [T, vocab].
public final class GPTModel: @unchecked Sendable {
    public let config: TransformerConfig
    public let layout: ParameterLayout
    public let device: CPUDevice
    /// The run's process groups; the model communicates over the tensor- and pipeline-parallel ones.
    public let groups: ProcessGroups
    public let tensorParallel: TensorParallel
    public let pipeline: PipelineStage
    /// The ranks that split every sequence with this one (`ContextParallel`); one rank: whole sequences.
    public let contextParallel: ContextParallel
    /// Which activations training keeps for the backward, and which it computes again.
    public var recompute = ActivationRecompute.none
    /// The precision of the activations training keeps for the backward (16 bits under --bf16 and
    /// --fp16: half the memory; the backward converts them back to fp32 to compute).
    public var savedActivationPrecision = DType.float32
    /// Megatron's --sequence-parallel (with a tensor-parallel group): between the tensor-parallel
    /// layers each rank holds and computes only its rows of the activations (see `TensorParallel`),
    /// in training and evaluation; `logits` and the key/value cache (generation) run without it.
    public var sequenceParallel = false
    /// --eod-mask-loss, --reset-position-ids and --reset-attention-mask, when any is set: how
    /// `microBatch(of:)` treats end-of-document tokens inside a sample.
    public var documentBoundaries: MicroBatch.DocumentBoundaries?
    /// All parameters, flat, in `layout` order, in `storage.parameters`.
    public let parameters: Tensor
    /// Their gradients, same layout, in `storage.gradients`; backward accumulates here.
    public let gradients: Tensor
    /// The precisions of the two buffers.
    public let storage: ParameterStorage
    /// The precision of the logits training keeps, and of their gradient: under 16-bit storage the
    /// parameters' 16 bits, as Megatron's 16-bit output layer writes them, its cross-entropy reading
    /// them in fp32 and its gradient rounded back to 16 bits for the output layer's GEMMs (half the
    /// memory of the largest activation); fp32 otherwise. Evaluation and inference get fp32 logits.
    public var trainingLogitsPrecision: DType { storage.isSixteenBit ? storage.parameters : .float32 }
    /// The embeddings, on the first pipeline stage.
    let embedding: LanguageModelEmbedding?
    /// This stage's transformer layers by model chunk (one chunk but under the interleaved schedule;
    /// all the layers on one stage).
    let chunks: [[TransformerLayer]]
    /// The final norm and the output layer (the word embedding, or its copy, unless untied), on the
    /// last pipeline stage.
    let finalLayerNorm: Norm?
    let outputLayer: ColumnParallelLinear?
    /// Under 16-bit storage, the final norm's fp32 window.
    let finalWindow: ParameterWindow.Slot?

    /// A model initialised as Megatron does: weights N(0, σ), the output projections of attention
    /// and MLP (linear_proj, linear_fc2) N(0, σ/√(2·layers)), biases 0, norm weights 1. The draw depends
    /// only on the seed and each parameter's name and index, not on any parallel layout. Without a
    /// seed the parameters are left zero, for a model about to be loaded from a checkpoint. Under
    /// tensor parallelism, this rank's shard of the same model; under pipeline parallelism, this
    /// rank's stage of it. `storage` says in what precision the parameters and gradients are kept.
    public init(config: TransformerConfig, seed: UInt64?, groups: ProcessGroups? = nil, storage: ParameterStorage = .float32,
                on device: CPUDevice) throws {
        try config.validate()
        try storage.validate()
        guard config.positionEmbedding != .relative else {
            throw ConfigError(flag: "--position-embedding-type", "--position-embedding-type relative is T5's (megatron pretrain-t5); "
                              + "GPT takes learned_absolute or rope")
        }
        let groups = try groups ?? .single()
        self.groups = groups
        tensorParallel = TensorParallel(group: groups.tensorModelParallel)
        pipeline = PipelineStage(group: groups.pipelineModelParallel, modelChunks: config.virtualPipelineModelParallelSize ?? 1)
        try config.validate(tensorParallelSize: tensorParallel.size, pipelineParallelSize: pipeline.count)
        let contextParallel = ContextParallel(group: groups.contextParallel)
        try ContextParallel.check(size: contextParallel.size, sequenceLength: nil, attentionDropout: config.attentionDropout,
                                  resetsAttentionMask: false)
        self.contextParallel = contextParallel
        self.config = config
        self.device = device
        layout = ParameterLayout(config, tensorParallelRank: tensorParallel.rank, tensorParallelSize: tensorParallel.size,
                                 pipelineStage: pipeline.index, pipelineStages: pipeline.count)
        self.storage = storage
        parameters = try Tensor(shape: [layout.totalCount], dtype: storage.parameters, on: device)
        gradients = try Tensor(shape: [layout.totalCount], dtype: storage.gradients, on: device)
        let views = try Self.views(config, layout, parameters: parameters, gradients: gradients, storage: storage, on: device)
        (embedding, chunks, finalLayerNorm, outputLayer) = try Self.modules(config, views: views, tensorParallel: tensorParallel,
                                                                            on: device)
        finalWindow = views.window(ofPrefix: "decoder.final_layernorm.")
        if let seed { try layout.initialize(parameters, seed: seed, wholeLayout: ParameterLayout(config), config: config, on: device) }
    }

    /// Views of the two flat buffers; under 16-bit storage, of fp32 windows for all but the word
    /// embedding and output layer: one shared by the transformer layers, one each for the position
    /// embedding and the final norm.
    private static func views(_ config: TransformerConfig, _ layout: ParameterLayout, parameters: Tensor, gradients: Tensor, storage: ParameterStorage,
                              on device: CPUDevice) throws -> ParameterViews {
        let layers = PipelineStage.layers(config, stage: layout.pipelineStage, of: layout.pipelineStages).joined()
            .map { layout.range(ofPrefix: "decoder.layers.\($0).") }
        return try ParameterViews(layout: layout, parameters: parameters, gradients: gradients, storage: storage, layers: [layers],
                                  spans: ["embedding.position_embeddings.", "decoder.final_layernorm."].map { layout.range(ofPrefix: $0) },
                                  on: device)
    }

    /// This rank's modules over `views`.
    private static func modules(_ config: TransformerConfig, views: ParameterViews, tensorParallel: TensorParallel,
                                on device: CPUDevice) throws
        -> (LanguageModelEmbedding?, [[TransformerLayer]], Norm?, ColumnParallelLinear?) {
        let layout = views.layout
        let rotary = config.positionEmbedding == .rope
            ? try RotaryEmbedding(rotaryDim: config.rotaryDim, base: config.rotaryBase, scalingFactor: config.ropeScalingFactor, maxPositions: config.maxPositionEmbeddings, on: device)
            : nil
        let word = try views.optional("embedding.word_embeddings.weight")
        let embedding = try layout.pipelineStage == 0 ? word.map {
            LanguageModelEmbedding(wordEmbeddings: VocabParallelEmbedding(weight: $0, vocabularySize: config.paddedVocabSize,
                                                                          tensorParallel: tensorParallel, device: device),
                                   positionEmbeddings: try views.optional("embedding.position_embeddings.weight"), device: device,
                                   window: views.window(ofPrefix: "embedding.position_embeddings."))
        } : nil
        let chunks = try PipelineStage.layers(config, stage: layout.pipelineStage, of: layout.pipelineStages).map { chunk in
            try chunk.map {
                try TransformerLayer(config, number: $0, prefix: "decoder.layers.\($0).", views: views, rotary: rotary,
                                     tensorParallel: tensorParallel, on: device)
            }
        }
        guard let finalWeight = try views.optional("decoder.final_layernorm.weight") else { return (embedding, chunks, nil, nil) }
        let finalLayerNorm = Norm(kind: config.normalization, epsilon: config.normEpsilon, weight: finalWeight,
                                  bias: try views.optional("decoder.final_layernorm.bias"), device: device)
        let outputLayer = ColumnParallelLinear(weight: try views.optional("output_layer.weight") ?? views("embedding.word_embeddings.weight"),
                                               bias: nil, skipBiasAdd: false, tensorParallel: tensorParallel, device: device)
        return (embedding, chunks, finalLayerNorm, outputLayer)
    }

    // MARK: forward and backward

    /// Runs forward and backward over one micro-batch and adds ∂(lossWeight·loss)/∂θ into `gradients`,
    /// where loss is the masked mean cross-entropy Σ mask·ℓ / max(Σ mask, 1) (Megatron's lm loss and
    /// its clamp: a micro-batch with every token masked contributes no gradient). `lossWeight` is
    /// 1 / micro-batches per iteration (times the loss scale under fp16). The whole model (one
    /// pipeline stage); a pipeline schedule calls the stage steps below instead.
    ///
    /// `gradientsReady`, when given, is called during backward with each span of `gradients` as soon
    /// as backward has finished adding to it (the output layer and final norm first, then each layer
    /// from the last, then the embeddings), once per parameter: data parallelism starts reducing there.
    @discardableResult
    public func forwardBackward(_ batch: MicroBatch, lossWeight: Float = 1, dropout: DropoutKey,
                                gradientsReady: ((Range<Int>) throws -> Void)? = nil) throws -> MaskedLoss {
        try requireWholeModel("training on one rank")
        let activations = try forward(batch, input: nil, dropout: dropout, training: true)
        let loss = try self.loss(of: activations, lossWeight: lossWeight)
        _ = try backward(consume activations, gradOutput: nil, gradientsReady: gradientsReady)
        return loss
    }

    /// The loss of a micro-batch, without dropout or gradients (evaluation).
    public func loss(_ batch: MicroBatch) throws -> MaskedLoss {
        try requireWholeModel("evaluation on one rank")
        return try loss(of: forward(batch, input: nil, dropout: .inference, training: false), lossWeight: nil)
    }

    /// Logits [T, padded vocab] of a micro-batch (inference: no dropout), whole on every
    /// tensor-parallel rank.
    public func logits(_ batch: MicroBatch) throws -> Tensor {
        try requireWholeModel("inference")
        let local = try forward(batch, input: nil, dropout: .inference, training: false, splitRows: false).output
        return try tensorParallel.gatherColumns(local, on: device)
    }

    func requireWholeModel(_ what: String) throws {
        guard pipeline.count == 1 else {
            throw TensorError("\(what) needs the whole model: this rank holds pipeline stage \(pipeline.index) of \(pipeline.count)")
        }
        guard contextParallel.size == 1 else {
            throw TensorError("\(what) needs whole sequences: this rank holds 2 of \(2 * contextParallel.size) chunks of each (context parallelism)")
        }
    }

    /// What the last stage's backward needs of the final norm and output layer.
    struct FinalActivations {
        let decoderOutput: Tensor     // [rows, h]
        let normOutput: Tensor        // [T, h]: final_layernorm(decoder output), every row
        let normSaved: Norm.Saved     // [rows] statistics
    }

    /// What a stage's backward needs from its forward over one micro-batch.
    public struct StageActivations {
        let batch: MicroBatch
        /// The model chunk that ran.
        let modelChunk: Int
        let pass: LayerPass
        let saved: [SavedLayer]
        /// On the last stage.
        let final: FinalActivations?
        /// The stage's output: the hidden states [T, h] for the next stage (this rank's rows of them
        /// under sequence parallelism), or on the last stage this rank's logits [T, vocab/t] (in
        /// `trainingLogitsPrecision` when training), which
        /// `loss(of:lossWeight:)` overwrites by their gradient (and `backward` releases once read).
        public internal(set) var output: Tensor
    }

    /// The forward of this stage's model chunk `modelChunk` over one micro-batch: from its tokens on
    /// the first virtual stage, else from `input`, the previous one's output. `training` keeps what
    /// the backward needs and applies dropout. `parametersNeeded` gets the span of `parameters` of
    /// the embedding, of each layer and of the final norm and output layer before the forward reads it.
    public func forward(_ batch: MicroBatch, input: Tensor?, modelChunk: Int = 0, dropout: DropoutKey, training: Bool,
                        parametersNeeded: ((Range<Int>) throws -> Void)? = nil) throws -> StageActivations {
        try forward(batch, input: input, modelChunk: modelChunk, dropout: dropout, training: training, splitRows: sequenceParallel,
                    parametersNeeded: parametersNeeded)
    }

    /// `forward`, splitting the rows between the tensor-parallel layers only with `splitRows`.
    private func forward(_ batch: MicroBatch, input: Tensor?, modelChunk: Int = 0, dropout: DropoutKey, training: Bool,
                         splitRows: Bool, parametersNeeded: ((Range<Int>) throws -> Void)? = nil) throws -> StageActivations {
        let pass = try self.pass(over: batch, dropout: dropout, training: training, splitRows: splitRows)
        let layers = chunks[modelChunk]
        var x: Tensor
        if let embedding, modelChunk == 0 {
            try parametersNeeded?(layout.range(ofPrefix: "embedding."))
            x = try embedding.forward(ids: batch.tokens, positions: batch.positions, pass: pass)
        } else {
            x = try stageInput(input, tokens: batch.tokens.count, modelChunk: modelChunk, pass: pass)
        }
        var saved: [SavedLayer] = []
        for layer in layers {
            try parametersNeeded?(layout.range(ofPrefix: "decoder.layers.\(layer.number)."))
            let (output, activations) = try layer.forward(x, pass: pass)
            if training { saved.append(try layers.save(activations, layer: saved.count, recompute: recompute, precision: savedActivationPrecision)) }
            x = output
        }
        guard finalLayerNorm != nil, modelChunk == chunks.count - 1 else {
            return StageActivations(batch: batch, modelChunk: modelChunk, pass: pass, saved: saved, final: nil, output: x)
        }
        // The final norm, the output layer, and on a later stage the tied word embedding's copy.
        for prefix in ["decoder.final_layernorm.", "output_layer."] + (pipeline.isFirst ? [] : ["embedding."]) {
            try parametersNeeded?(layout.range(ofPrefix: prefix))
        }
        let (logits, final) = try outputLogits(x, pass: pass, precision: training ? trainingLogitsPrecision : .float32)
        return StageActivations(batch: batch, modelChunk: modelChunk, pass: pass, saved: saved, final: final, output: logits)
    }

    /// This rank's logits [T, vocab/t] of the last decoder layer's output x [rows, h], in `precision`:
    /// the final norm, then the output layer (column-parallel over the vocabulary).
    func outputLogits(_ x: Tensor, pass: LayerPass, precision: DType = .float32) throws -> (Tensor, FinalActivations) {
        guard let finalLayerNorm, let outputLayer else { throw TensorError("only the last pipeline stage computes logits") }
        try finalWindow?.load()
        let (norm, normSaved) = try finalLayerNorm.forward(x)
        let normOutput = try outputLayer.gatherInput(norm, pass.rows)
        return (try outputLayer.forward(normOutput, outputDType: precision), FinalActivations(decoderOutput: x, normOutput: normOutput, normSaved: normSaved))
    }

    /// The pass over `batch`: its attention layout, dropout (in training) and row split; under
    /// context parallelism over this rank's rows of the sequences, each with its dropout masks of
    /// the whole micro-batch.
    private func pass(over batch: MicroBatch, dropout: DropoutKey, training: Bool, splitRows: Bool) throws -> LayerPass {
        var pass = try LayerPass(config, batch: batch.batch, sequenceLength: batch.sequenceLength, positions: batch.positions,
                                 firstKeys: batch.attentionFirstKeys, keyCounts: nil, dropout: dropout, training: training,
                                 splitRows: splitRows, tensorParallel: tensorParallel)
        guard contextParallel.size > 1 else { return pass }
        pass.contextParallel = contextParallel
        let rows = pass.rows.sequenceParallel ? batch.tokens.count / tensorParallel.size : batch.tokens.count
        pass.wholeRows = contextParallel.wholeRows(pass.rows.first ..< pass.rows.first + rows, batch: batch.batch,
                                                   localSequenceLength: batch.sequenceLength)
        return pass
    }

    /// The previous stage's output, checked against the shape model chunk `modelChunk` expects.
    private func stageInput(_ input: Tensor?, tokens: Int, modelChunk: Int, pass: LayerPass) throws -> Tensor {
        let expected = hiddenStatesShape(tokens: tokens, splitRows: pass.rows.sequenceParallel)
        guard let input, input.shape == expected else {
            throw TensorError("pipeline stage \(pipeline.index)\(chunks.count > 1 ? " model chunk \(modelChunk)" : ""): "
                              + "expected the previous stage's output \(expected), got \(input.map { "\($0.shape)" } ?? "none")")
        }
        return input
    }

    /// The shape of the hidden states that pass between pipeline stages for a micro-batch of
    /// `tokens` tokens: [tokens, h], or this rank's rows of them under sequence parallelism.
    public func hiddenStatesShape(tokens: Int, splitRows: Bool? = nil) -> [Int] {
        let split = (splitRows ?? sequenceParallel) && tensorParallel.size > 1
        return [split ? tokens / tensorParallel.size : tokens, config.hiddenSize]
    }

    /// This stage's transformer layers, in order (all of them on one stage).
    var layers: [TransformerLayer] { Array(chunks.joined()) }

    /// This rank's heads of `batch` sequences of `sequenceLength` in the fused QKV activation.
    func attentionLayout(batch: Int, sequenceLength: Int) throws -> AttentionLayout {
        try .megatronFusedQKV(config, tensorParallelSize: tensorParallel.size, batch: batch, sequenceLength: sequenceLength)
    }

    /// The backward of the model chunk and micro-batch of `activations`, adding into `gradients`:
    /// `gradOutput` is the gradient of the stage's output (from the next stage); on the last stage
    /// none, the logits holding theirs (`loss(of:lossWeight:)`). Returns the gradient of the stage's
    /// input for the previous stage, nil on the first (whose input is the tokens).
    public func backward(_ activations: consuming StageActivations, gradOutput: Tensor?,
                         gradientsReady: ((Range<Int>) throws -> Void)? = nil) throws -> Tensor? {
        let pass = activations.pass, batch = activations.batch
        var dx = try decoderOutputGradient(&activations, gradOutput: gradOutput, gradientsReady: gradientsReady)
        var chunk: [Int: TransformerLayer.Activations] = [:]
        let layers = chunks[activations.modelChunk]
        for (index, layer) in layers.enumerated().reversed() {
            let a = try layers.restore(activations.saved, layer: index, chunk: &chunk, pass: pass)
            dx = try layer.backward(dx, activations: a, pass: pass)
            try gradientsReady?(layout.range(ofPrefix: "decoder.layers.\(layer.number)."))
        }
        guard let embedding, activations.modelChunk == 0 else { return dx }
        try embedding.backward(dx, ids: batch.tokens, positions: batch.positions, pass: pass)
        try gradientsReady?(layout.range(ofPrefix: "embedding."))
        return nil
    }

    /// The gradient of the last decoder layer's output [rows, h]: on the last stage through the output
    /// layer and the final norm from the logits' gradient (the output layer's input gradient is a
    /// partial sum over the ranks' vocabulary, which the column-parallel layer reduces); elsewhere
    /// the next stage's `gradOutput`. The logits' gradient [T, vocab/t], the largest activation, is
    /// released as soon as the output layer has read it, before the layers' backward.
    private func decoderOutputGradient(_ activations: inout StageActivations, gradOutput: Tensor?,
                                       gradientsReady: ((Range<Int>) throws -> Void)?) throws -> Tensor {
        guard let final = activations.final, let finalLayerNorm, let outputLayer else {
            guard let gradOutput, gradOutput.shape == activations.output.shape else {
                throw TensorError("pipeline stage \(pipeline.index): expected the next stage's gradient \(activations.output.shape), "
                                  + "got \(gradOutput.map { "\($0.shape)" } ?? "none")")
            }
            return gradOutput
        }
        let dNorm = try outputLayer.backward(activations.output, input: final.normOutput, rows: activations.pass.rows)
        activations.output = try Tensor(shape: [0], on: device)
        try finalWindow?.beginBackward()
        let dx = try finalLayerNorm.backward(dNorm, input: final.decoderOutput, saved: final.normSaved)
        try finalWindow?.endBackward()
        try gradientsReady?(layout.range(ofPrefix: "output_layer."))
        if !pipeline.isFirst { try gradientsReady?(layout.range(ofPrefix: "embedding.")) }
        try gradientsReady?(layout.range(ofPrefix: "decoder.final_layernorm."))
        return dx
    }
}
