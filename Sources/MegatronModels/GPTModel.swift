import MegatronCore
import MegatronParallel

/// A GPT decoder as Megatron builds it: word (+ learned position) embeddings, pre-norm transformer
/// layers (fused QKV, causal self-attention, output projection, MLP), a final norm, and an output
/// layer tied to the word embedding unless untied. Parameters live in one flat fp32 buffer and
/// gradients in a twin buffer with the same layout (`ParameterLayout`).
///
/// Under tensor parallelism (`tensorParallel`, t ranks) each rank holds heads/t heads (whole query
/// groups), ffn/t MLP features and vocab/t rows of the word embedding and output layer, as
/// Megatron's column- and row-parallel layers do; activations between the layers are whole on
/// every rank (or, under sequence parallelism, split by rows), and the widths below are then per
/// rank. Under pipeline parallelism (`pipeline`) a rank holds one stage of the model (see
/// `PipelineStage`), and `forward` and `backward` run that stage alone: a pipeline schedule passes
/// the activations and gradients between the stages.
///
/// Shapes (T = batch·seq tokens, h hidden, a = heads·kv-channels, f = ffn):
/// embeddings [T, h] → per layer: norm → QKV [T, (heads + 2·groups)·d] → attention [T, a] →
/// proj [T, h] + residual → norm → fc1 [T, f or 2f] → GELU / SwiGLU [T, f] → fc2 [T, h] + residual
/// → final norm → logits [T, vocab].
public final class GPTModel: @unchecked Sendable {
    public let config: GPTConfig
    public let layout: ParameterLayout
    public let device: CPUDevice
    public let tensorParallel: TensorParallel
    public let pipeline: PipelineStage
    /// Which activations training keeps for the backward, and which it computes again.
    public var recompute = ActivationRecompute.none
    /// Megatron's --sequence-parallel (with a tensor-parallel group): between the tensor-parallel
    /// layers each rank holds and computes only its rows of the activations (see `TensorParallel`),
    /// in training and evaluation; `logits` and the key/value cache (generation) run without it.
    public var sequenceParallel = false
    /// All parameters, flat, in `layout` order.
    public let parameters: Tensor
    /// Their gradients, same layout; backward accumulates here.
    public let gradients: Tensor
    let weights: GPTWeights
    let grads: GPTWeights
    let norm: Norm
    let rotary: RotaryEmbedding?

    /// A model initialised as Megatron does: weights N(0, σ), the output projections of attention
    /// and MLP (linear_proj, linear_fc2) N(0, σ/√(2·layers)), biases 0, norm weights 1. The draw depends
    /// only on the seed and each parameter's name and index, not on any parallel layout. Without a
    /// seed the parameters are left zero, for a model about to be loaded from a checkpoint. With a
    /// tensor-parallel group, this rank's shard of the same model; with a pipeline group, this
    /// rank's stage of it.
    public init(config: GPTConfig, seed: UInt64?, tensorParallel group: (any Communicator)? = nil,
                pipeline pipelineGroup: (any Communicator)? = nil, on device: CPUDevice) throws {
        try config.validate()
        tensorParallel = TensorParallel(group: group)
        pipeline = PipelineStage(group: pipelineGroup)
        try config.validate(tensorParallelSize: tensorParallel.size, pipelineParallelSize: pipeline.count)
        self.config = config
        self.device = device
        layout = ParameterLayout(config, tensorParallelRank: tensorParallel.rank, tensorParallelSize: tensorParallel.size,
                                 pipelineStage: pipeline.index, pipelineStages: pipeline.count)
        parameters = Tensor(shape: [layout.totalCount], on: device)
        gradients = Tensor(shape: [layout.totalCount], on: device)
        weights = try GPTWeights(buffer: parameters, layout: layout, config: config)
        grads = try GPTWeights(buffer: gradients, layout: layout, config: config)
        norm = Norm(kind: config.normalization, epsilon: config.normEpsilon)
        rotary = config.positionEmbedding == .rope
            ? try RotaryEmbedding(rotaryDim: config.rotaryDim, base: config.rotaryBase, maxPositions: config.maxPositionEmbeddings, on: device)
            : nil
        if let seed { initialize(seed: seed) }
    }

    private func initialize(seed: UInt64) {
        let sigma = config.initMethodStd
        let scaled = sigma / (2 * Float(config.numLayers)).squareRoot()
        // Each parameter draws from the stream of its index in the whole model, whatever this rank holds.
        let streams = Dictionary(uniqueKeysWithValues: ParameterLayout(config).entries.enumerated().map { ($1.name, UInt64($0)) })
        for entry in layout.entries {
            // A shard is cut from the whole tensor's draw, so every layout starts from the same model.
            let wholeCount = entry.wholeShape.reduce(1, *)
            let values = entry.isSharded ? .allocate(capacity: wholeCount)
                : UnsafeMutableBufferPointer(start: parameters.floats + entry.offset, count: entry.count)
            defer {
                if entry.isSharded {
                    for piece in entry.pieces {
                        (parameters.floats + entry.offset + piece.local).update(from: values.baseAddress! + piece.whole, count: piece.count)
                    }
                    values.deallocate()
                }
            }
            if entry.name.hasSuffix(".bias") {
                values.update(repeating: 0)
            } else if entry.name.hasSuffix("layernorm.weight") {
                values.update(repeating: 1)
            } else {
                let std = entry.name.hasSuffix("linear_proj.weight") || entry.name.hasSuffix("linear_fc2.weight") ? scaled : sigma
                var normal = GaussianStream(seed: seed, stream: streams[entry.name]!)
                for i in values.indices { values[i] = std * normal.next() }
            }
        }
    }

    /// The L2 norm over the whole model of `buffer` (the parameters or the gradients), each
    /// replicated value counted once: collective over the tensor- and pipeline-parallel groups.
    public func wholeModelNorm(of buffer: Tensor) throws -> Double {
        let spans = try layout.normSpans.map { try buffer.view(offset: $0.lowerBound, shape: [$0.count]) }
        let local = try Elementwise.globalL2Norm(spans, on: device)
        let groups = modelParallelGroups
        guard !groups.isEmpty else { return local }
        return try groups.allReduce(local * local, op: .sum).squareRoot()
    }

    /// The groups over which this rank holds part of one copy of the model: tensor- and pipeline-parallel.
    public var modelParallelGroups: [any Communicator] {
        [tensorParallel.group, pipeline.group].compactMap { $0 }.filter { $0.size > 1 }
    }

    /// The span of the last stage's copy of the word embedding (tied embeddings over several
    /// stages), whose gradient `reduceSharedEmbeddingGradients` completes; nil elsewhere.
    public var sharedEmbeddingRange: Range<Int>? {
        guard pipeline.count > 1, !config.untieEmbeddingsAndOutputWeights, pipeline.isFirst || pipeline.isLast,
              let e = layout.entry("embedding.word_embeddings.weight") else { return nil }
        return e.offset ..< e.offset + e.count
    }

    /// Under pipeline parallelism with tied embeddings, adds the first stage's word-embedding gradient
    /// and the last stage's (its copy's, from the output layer) on both, so the two copies take the
    /// same step (Megatron's all-reduce of the embedding group). Once per iteration, after the last
    /// backward; the other stages do nothing.
    public func reduceSharedEmbeddingGradients() throws {
        guard let range = sharedEmbeddingRange, let group = pipeline.group else { return }
        let peer = pipeline.isFirst ? group.size - 1 : 0
        let theirs = Tensor(shape: [range.count], on: device, zeroed: false)
        let mine = try gradients.view(offset: range.lowerBound, shape: [range.count])
        try group.sendReceive(UnsafeBufferPointer(start: mine.floats, count: range.count), to: peer,
                              into: UnsafeMutableBufferPointer(start: theirs.floats, count: range.count), from: peer,
                              tag: Self.sharedEmbeddingTag)
        // a + b and b + a are the same float: both copies get the same bits.
        try Elementwise.axpy(mine, theirs, alpha: 1, on: device)
    }

    static let sharedEmbeddingTag = 7200

    /// Under sequence parallelism, sums over the tensor-parallel group the gradients of the
    /// replicated parameters that act on rows (norms, and the biases added after a reduce-scatter):
    /// each rank's cover only its rows. Call it once per iteration, after the last micro-batch's
    /// backward (and after or before the data-parallel reduction: both are sums), as Megatron's
    /// finalize_model_grads all-reduces the layernorm gradients.
    public func reduceSequenceParallelGradients() throws {
        guard sequenceParallel, let group = tensorParallel.group, group.size > 1 else { return }
        let entries = layout.entries.filter { !$0.isSharded && $0.name != "embedding.position_embeddings.weight" }
        let packed = Tensor(shape: [entries.reduce(0) { $0 + $1.count }], on: device, zeroed: false)
        var offset = 0
        for e in entries {
            (packed.floats + offset).update(from: gradients.floats + e.offset, count: e.count)
            offset += e.count
        }
        try group.allReduce(UnsafeMutableBufferPointer(start: packed.floats, count: packed.count), op: .sum)
        offset = 0
        for e in entries {
            (gradients.floats + e.offset).update(from: packed.floats + offset, count: e.count)
            offset += e.count
        }
    }

    /// Sets every gradient to zero (before an iteration's first micro-batch).
    public func zeroGradients() { gradients.zero() }

    // MARK: forward and backward

    /// What one layer's backward needs from its forward.
    struct LayerActivations {
        let input: Tensor
        let inputNorm: Tensor, inputNormSaved: Norm.Saved
        let qkv: Tensor
        let context: Tensor, lse: Tensor
        let attentionOutput: Tensor
        let mlpNorm: Tensor, mlpNormSaved: Norm.Saved
        let fc1: Tensor
        let activation: Tensor
    }

    /// Names a dropout mask: a different stream per iteration, micro-batch, layer and site.
    public struct DropoutKey: Sendable {
        public let seed: UInt64
        public let iteration: Int
        public let microBatch: Int

        public init(seed: UInt64, iteration: Int, microBatch: Int) {
            self.seed = seed
            self.iteration = iteration
            self.microBatch = microBatch
        }

        func stream(layer: Int, site: Int) -> PhiloxStream {
            let id = ((UInt64(iteration) &* 65_536 &+ UInt64(microBatch)) &* 4096 &+ UInt64(layer + 1)) &* 8 &+ UInt64(site)
            return PhiloxStream(seed: seed, stream: id)
        }
    }

    enum DropoutSite: Int { case embedding, attentionProbabilities, attentionOutput, mlpOutput }

    /// What every layer's forward needs of one micro-batch's pass (and the recomputation of it).
    struct LayerPass {
        let batch: MicroBatch
        let layout: AttentionLayout
        let scale: Float
        let dropout: DropoutKey
        /// Dropout probabilities: the configuration's in training, 0 in inference.
        let hiddenDropout: Float, attentionDropout: Float
        /// Which rows of the activations between the tensor-parallel layers this rank holds.
        let rows: RowShard
    }

    /// The rows of the [T, h] activations between the tensor-parallel layers a rank holds: all of
    /// them, or under sequence parallelism its T/t starting at `first`.
    struct RowShard {
        let sequenceParallel: Bool
        let first: Int

        static let all = RowShard(sequenceParallel: false, first: 0)
    }

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
        _ = try backward(activations, gradOutput: nil, gradientsReady: gradientsReady)
        return loss
    }

    /// The loss of a micro-batch, without dropout or gradients (evaluation).
    public func loss(_ batch: MicroBatch) throws -> MaskedLoss {
        try requireWholeModel("evaluation on one rank")
        let activations = try forward(batch, input: nil, dropout: DropoutKey(seed: 0, iteration: 0, microBatch: 0), training: false)
        return try loss(of: activations, lossWeight: nil)
    }

    /// Logits [T, padded vocab] of a micro-batch (inference: no dropout), whole on every
    /// tensor-parallel rank.
    public func logits(_ batch: MicroBatch) throws -> Tensor {
        try requireWholeModel("inference")
        let local = try forward(batch, input: nil, dropout: DropoutKey(seed: 0, iteration: 0, microBatch: 0), training: false,
                                splitRows: false).output
        return try tensorParallel.gatherColumns(local, on: device)
    }

    func requireWholeModel(_ what: String) throws {
        guard pipeline.count == 1 else {
            throw TensorError("\(what) needs the whole model: this rank holds pipeline stage \(pipeline.index) of \(pipeline.count)")
        }
    }

    /// On the last stage: the masked loss of the micro-batch whose logits `activations` holds. With
    /// `lossWeight` (training), the logits are overwritten by ∂(lossWeight·loss)/∂logits, where loss
    /// is the masked mean cross-entropy, for `backward`.
    public func loss(of activations: StageActivations, lossWeight: Float?) throws -> MaskedLoss {
        guard activations.final != nil else { throw TensorError("only the last pipeline stage computes the loss") }
        let batch = activations.pass.batch, mask = batch.lossMask.toFloatArray()
        let tokens = mask.reduce(0, +)
        let gradWeights = try lossWeight.map { w in try Tensor(mask.map { $0 * w / max(tokens, 1) }, shape: [mask.count], on: device) }
        let losses = try crossEntropy(logits: activations.output, targets: batch.labels, gradWeights: gradWeights)
        return MaskedLoss(losses: losses.toFloatArray(), mask: mask)
    }

    /// Per-token losses of logits over this rank's vocabulary (see `CrossEntropy`), through
    /// `VocabParallelCrossEntropy` when the vocabulary is split.
    private func crossEntropy(logits: Tensor, targets: Tensor, gradWeights: Tensor?) throws -> Tensor {
        guard tensorParallel.size > 1 else {
            return try gradWeights.map { try CrossEntropy.forwardBackward(logits: logits, targets: targets, gradWeights: $0, on: device) }
                ?? CrossEntropy.forward(logits: logits, targets: targets, on: device)
        }
        return try VocabParallelCrossEntropy.run(logits: logits, targets: targets, vocabStart: vocabStart, vocabSize: config.paddedVocabSize,
                                                 gradWeights: gradWeights, tensorParallel: tensorParallel, on: device)
    }

    /// The first vocabulary row this rank's word embedding and output layer hold.
    var vocabStart: Int { tensorParallel.rank * config.paddedVocabSize / tensorParallel.size }

    /// This rank's heads of `batch` sequences of `sequenceLength` in the fused QKV activation.
    func attentionLayout(batch: Int, sequenceLength: Int) throws -> AttentionLayout {
        let t = tensorParallel.size
        return try AttentionLayout.megatronFusedQKV(batch: batch, sequenceLength: sequenceLength, heads: config.numAttentionHeads / t,
                                                    groups: config.numQueryGroups / t, headDim: config.kvChannels)
    }

    /// Which of the model's heads this rank's are, for attention dropout.
    var dropoutHeads: Attention.DropoutHeads {
        let local = config.numAttentionHeads / tensorParallel.size
        return .init(first: tensorParallel.rank * local, total: config.numAttentionHeads)
    }

    /// The embeddings [tokens, h] of `ids` at `positions` (Megatron's vocabulary-parallel lookup:
    /// each rank looks up the ids in its rows, the first adds the positions, and the sum over the
    /// group is the whole lookup).
    func embed(ids: Tensor, positions: Tensor, rows: RowShard) throws -> Tensor {
        guard let word = weights.wordEmbedding, pipeline.isFirst else { throw TensorError("only the first pipeline stage embeds tokens") }
        let position = tensorParallel.rank == 0 ? weights.positionEmbedding : nil
        let x = try Embedding.forward(ids: ids, word: word, vocabStart: vocabStart, vocabSize: config.paddedVocabSize,
                                      position: position, positions: position == nil ? nil : positions, on: device)
        return try reduce(x, rows)
    }

    /// The sum over the tensor-parallel group of a partial [T, h] (Megatron's g forward, f
    /// backward): whole, or this rank's rows under sequence parallelism.
    func reduce(_ partial: Tensor, _ rows: RowShard) throws -> Tensor {
        try tensorParallel.reduce(partial, scatteringRows: rows.sequenceParallel, on: device)
    }

    /// Every row of a [T, h] activation of which this rank holds `rows` (f forward, g backward).
    func gather(_ shard: Tensor, _ rows: RowShard) throws -> Tensor {
        try tensorParallel.gather(shard, sequenceParallel: rows.sequenceParallel, on: device)
    }

    struct FinalActivations {
        let decoderOutput: Tensor
        let normOutput: Tensor
        let normSaved: Norm.Saved
    }

    /// What a stage's backward needs from its forward over one micro-batch.
    public struct StageActivations {
        let pass: LayerPass
        let saved: [SavedLayer]
        /// On the last stage.
        let final: FinalActivations?
        /// The stage's output: the hidden states [T, h] for the next stage (this rank's rows of them
        /// under sequence parallelism), or on the last stage this rank's logits [T, vocab/t], which
        /// `loss(of:lossWeight:)` overwrites by their gradient.
        public let output: Tensor
    }

    /// This stage's forward over one micro-batch: from its tokens on the first stage, else from
    /// `input`, the previous stage's output. `training` keeps what the backward needs and applies
    /// dropout.
    public func forward(_ batch: MicroBatch, input: Tensor?, dropout: DropoutKey, training: Bool) throws -> StageActivations {
        try forward(batch, input: input, dropout: dropout, training: training, splitRows: sequenceParallel)
    }

    /// `forward`, splitting the rows between the tensor-parallel layers only with `splitRows`.
    private func forward(_ batch: MicroBatch, input: Tensor?, dropout: DropoutKey, training: Bool,
                         splitRows: Bool) throws -> StageActivations {
        let c = config
        guard batch.sequenceLength <= c.maxPositionEmbeddings else {
            throw TensorError("sequence length \(batch.sequenceLength) exceeds --max-position-embeddings \(c.maxPositionEmbeddings)")
        }
        let t = tensorParallel.size, tokens = batch.tokens.count
        let split = splitRows && t > 1
        guard !split || tokens % t == 0 else {
            throw TensorError("--sequence-parallel: the \(tokens) tokens of a micro-batch do not split over --tensor-model-parallel-size \(t)")
        }
        let pass = LayerPass(batch: batch, layout: try attentionLayout(batch: batch.batch, sequenceLength: batch.sequenceLength),
                             scale: 1 / Float(c.kvChannels).squareRoot(), dropout: dropout,
                             hiddenDropout: training ? c.hiddenDropout : 0, attentionDropout: training ? c.attentionDropout : 0,
                             rows: split ? RowShard(sequenceParallel: true, first: tensorParallel.rank * tokens / t) : .all)
        var x: Tensor
        if pipeline.isFirst {
            x = try embed(ids: batch.tokens, positions: batch.positions, rows: pass.rows)
            if pass.hiddenDropout > 0 {
                x = try Dropout.apply(x, probability: pass.hiddenDropout, rng: dropout.stream(layer: -1, site: DropoutSite.embedding.rawValue),
                                      firstRow: pass.rows.first, on: device)
            }
        } else {
            let expected = hiddenStatesShape(tokens: tokens, splitRows: split)
            guard let input, input.shape == expected else {
                throw TensorError("pipeline stage \(pipeline.index): expected the previous stage's output \(expected), "
                                  + "got \(input.map { "\($0.shape)" } ?? "none")")
            }
            x = input
        }
        var saved: [SavedLayer] = []
        for l in stageLayers {
            let (output, activations) = try layerForward(x, layer: l, pass: pass)
            if training { saved.append(save(activations, layer: l)) }
            x = output
        }
        guard pipeline.isLast, let finalNormWeight = weights.finalNormWeight, let outputWeight = weights.outputWeight else {
            return StageActivations(pass: pass, saved: saved, final: nil, output: x)
        }
        let (finalNorm, finalSaved) = try norm.forward(x, weight: finalNormWeight, bias: weights.finalNormBias, on: device)
        let outputInput = try gather(finalNorm, pass.rows)
        let logits = try GEMM.matmul(outputInput, outputWeight, transposeB: true, on: device)
        return StageActivations(pass: pass, saved: saved, final: FinalActivations(decoderOutput: x, normOutput: outputInput, normSaved: finalSaved),
                                output: logits)
    }

    /// The shape of the hidden states that pass between pipeline stages for a micro-batch of
    /// `tokens` tokens: [tokens, h], or this rank's rows of them under sequence parallelism.
    public func hiddenStatesShape(tokens: Int, splitRows: Bool? = nil) -> [Int] {
        let split = (splitRows ?? sequenceParallel) && tensorParallel.size > 1
        return [split ? tokens / tensorParallel.size : tokens, config.hiddenSize]
    }

    /// The layers of this pipeline stage (all of them on one stage).
    public var stageLayers: Range<Int> { weights.firstLayer ..< weights.firstLayer + weights.layers.count }

    /// One transformer layer: x1 = x + dropout(proj(attention(norm(x)))), then the MLP half. The
    /// activations keep each norm's output as the following layer takes it: all rows.
    func layerForward(_ x: Tensor, layer l: Int, pass: LayerPass) throws -> (output: Tensor, activations: LayerActivations) {
        let w = weights.layer(l)
        let (n1Rows, n1Saved) = try norm.forward(x, weight: w.inputNormWeight, bias: w.inputNormBias, on: device)
        let n1 = try gather(n1Rows, pass.rows)
        let qkv = try Linear.forward(n1, weight: w.qkvWeight, bias: w.qkvBias, on: device)
        try rotary?.apply(to: qkv, headOffsets: pass.layout.queryOffsets + pass.layout.keyOffsets, positions: pass.batch.positions,
                          on: device)
        let (context, lse) = try attentionCore(qkv, layer: l, pass: pass)
        let proj = try reduce(GEMM.matmul(context, w.projWeight, transposeB: true, on: device), pass.rows)
        let x1 = try BiasDropoutAdd.forward(proj, bias: w.projBias, residual: x, probability: pass.hiddenDropout,
                                            rng: pass.dropout.stream(layer: l, site: DropoutSite.attentionOutput.rawValue),
                                            firstRow: pass.rows.first, on: device)
        let (n2, n2Saved, fc1, activation, x2) = try mlpBlock(x1, w, dropout: pass.hiddenDropout,
                                                              rng: pass.dropout.stream(layer: l, site: DropoutSite.mlpOutput.rawValue),
                                                              rows: pass.rows)
        return (x2, LayerActivations(input: x, inputNorm: n1, inputNormSaved: n1Saved, qkv: qkv, context: context, lse: lse,
                                     attentionOutput: x1, mlpNorm: n2, mlpNormSaved: n2Saved, fc1: fc1, activation: activation))
    }

    /// Layer `l`'s attention core over this rank's heads of `qkv`: (context, per-row log-sum-exp).
    func attentionCore(_ qkv: Tensor, layer l: Int, pass: LayerPass) throws -> (context: Tensor, lse: Tensor) {
        try Attention.forward(qkv: qkv, layout: pass.layout, scale: pass.scale, firstKeys: pass.batch.attentionFirstKeys,
                              dropout: pass.attentionDropout,
                              rng: pass.dropout.stream(layer: l, site: DropoutSite.attentionProbabilities.rawValue),
                              heads: dropoutHeads, on: device)
    }

    /// The MLP half of a layer: x1 + dropout(fc2(activation(fc1(norm(x1))))), with the intermediate
    /// tensors the backward needs (the norm's output with all rows).
    func mlpBlock(_ x1: Tensor, _ w: GPTWeights.Layer, dropout p: Float, rng: PhiloxStream, rows: RowShard)
        throws -> (norm: Tensor, normSaved: Norm.Saved, fc1: Tensor, activation: Tensor, output: Tensor) {
        let (n2Rows, n2Saved) = try norm.forward(x1, weight: w.mlpNormWeight, bias: w.mlpNormBias, on: device)
        let n2 = try gather(n2Rows, rows)
        let (fc1, activation) = try mlpActivation(n2, w)
        let fc2 = try reduce(GEMM.matmul(activation, w.fc2Weight, transposeB: true, on: device), rows)
        let output = try BiasDropoutAdd.forward(fc2, bias: w.fc2Bias, residual: x1, probability: p, rng: rng, firstRow: rows.first,
                                                on: device)
        return (n2, n2Saved, fc1, activation, output)
    }

    /// fc1 and its activation (GELU with fc1's bias, or SwiGLU) of the MLP's normalised input.
    func mlpActivation(_ n2: Tensor, _ w: GPTWeights.Layer) throws -> (fc1: Tensor, activation: Tensor) {
        if config.swiglu {
            let fc1 = try Linear.forward(n2, weight: w.fc1Weight, bias: w.fc1Bias, on: device)
            return (fc1, try SwiGLU.forward(fc1, on: device))
        }
        let fc1 = try GEMM.matmul(n2, w.fc1Weight, transposeB: true, on: device)
        return (fc1, try GELU.forward(fc1, bias: w.fc1Bias, approximation: config.geluApproximation, on: device))
    }

    /// This stage's backward over the micro-batch of `activations`, adding into `gradients`:
    /// `gradOutput` is the gradient of the stage's output (from the next stage); on the last stage
    /// none, the logits holding theirs (`loss(of:lossWeight:)`). Returns the gradient of the stage's
    /// input for the previous stage, nil on the first (whose input is the tokens).
    public func backward(_ activations: StageActivations, gradOutput: Tensor?,
                         gradientsReady: ((Range<Int>) throws -> Void)? = nil) throws -> Tensor? {
        let pass = activations.pass, saved = activations.saved
        let c = config, batch = pass.batch, dropout = pass.dropout, layout = pass.layout, scale = pass.scale
        let rows = pass.rows
        var dx: Tensor
        if let final = activations.final, let finalNormWeight = weights.finalNormWeight, let outputWeight = weights.outputWeight,
           let gradOutputWeight = grads.outputWeight, let gradFinalNorm = grads.finalNormWeight {
            // Output layer and final norm. Each column-parallel layer's input gradient is a partial
            // sum over the ranks' features (Megatron's f operator reduces it).
            let dFinalNorm = try reduce(Linear.backward(activations.output, input: final.normOutput, weight: outputWeight,
                                                        gradWeight: gradOutputWeight, gradBias: nil, on: device), rows)
            dx = try norm.backward(dFinalNorm, input: final.decoderOutput, weight: finalNormWeight, saved: final.normSaved,
                                   gradWeight: gradFinalNorm, gradBias: grads.finalNormBias, on: device)
            try gradientsReady?(self.layout.range(ofPrefix: "output_layer."))
            if !pipeline.isFirst { try gradientsReady?(self.layout.range(ofPrefix: "embedding.")) }
            try gradientsReady?(self.layout.range(ofPrefix: "decoder.final_layernorm."))
        } else {
            guard let gradOutput, gradOutput.shape == activations.output.shape else {
                throw TensorError("pipeline stage \(pipeline.index): expected the next stage's gradient \(activations.output.shape), "
                                  + "got \(gradOutput.map { "\($0.shape)" } ?? "none")")
            }
            dx = gradOutput
        }
        var chunk: [Int: LayerActivations] = [:]
        for l in stageLayers.reversed() {
            let a = try restore(saved, layer: l, chunk: &chunk, pass: pass), w = weights.layer(l), g = grads.layer(l)
            // MLP: x2 = x1 + dropout(fc2(act) + b2); dx (for x2) flows to x1 unchanged and into the MLP.
            let dFc2 = try gather(BiasDropoutAdd.backward(dx, gradBias: g.fc2Bias, probability: c.hiddenDropout,
                                                          rng: dropout.stream(layer: l, site: DropoutSite.mlpOutput.rawValue),
                                                          firstRow: rows.first, on: device), rows)
            let dActivation = try Linear.backward(dFc2, input: a.activation, weight: w.fc2Weight, gradWeight: g.fc2Weight,
                                                  gradBias: nil, on: device)
            let dFc1: Tensor
            if c.swiglu {
                dFc1 = try SwiGLU.backward(dActivation, input: a.fc1, on: device)
                if let gb = g.fc1Bias { try Elementwise.accumulateColumnSums(of: dFc1, into: gb, on: device) }
            } else {
                dFc1 = try GELU.backward(dActivation, input: a.fc1, bias: w.fc1Bias, gradBias: g.fc1Bias,
                                         approximation: c.geluApproximation, on: device)
            }
            let dMlpNorm = try reduce(Linear.backward(dFc1, input: a.mlpNorm, weight: w.fc1Weight, gradWeight: g.fc1Weight,
                                                      gradBias: nil, on: device), rows)
            let dx1 = try norm.backward(dMlpNorm, input: a.attentionOutput, weight: w.mlpNormWeight, saved: a.mlpNormSaved,
                                        gradWeight: g.mlpNormWeight, gradBias: g.mlpNormBias, accumulatingInto: dx, on: device)
            // Attention: x1 = x + dropout(proj(context) + b).
            let dProj = try gather(BiasDropoutAdd.backward(dx1, gradBias: g.projBias, probability: c.hiddenDropout,
                                                           rng: dropout.stream(layer: l, site: DropoutSite.attentionOutput.rawValue),
                                                           firstRow: rows.first, on: device), rows)
            let dContext = try Linear.backward(dProj, input: a.context, weight: w.projWeight, gradWeight: g.projWeight,
                                               gradBias: nil, on: device)
            let dQKV = try Attention.backward(dContext, qkv: a.qkv, context: a.context, lse: a.lse, layout: layout, scale: scale,
                                              firstKeys: batch.attentionFirstKeys,
                                              dropout: c.attentionDropout,
                                              rng: dropout.stream(layer: l, site: DropoutSite.attentionProbabilities.rawValue),
                                              heads: dropoutHeads, on: device)
            try rotary?.apply(to: dQKV, headOffsets: layout.queryOffsets + layout.keyOffsets, positions: batch.positions,
                              inverse: true, on: device)
            let dInputNorm = try reduce(Linear.backward(dQKV, input: a.inputNorm, weight: w.qkvWeight, gradWeight: g.qkvWeight,
                                                        gradBias: g.qkvBias, on: device), rows)
            dx = try norm.backward(dInputNorm, input: a.input, weight: w.inputNormWeight, saved: a.inputNormSaved,
                                   gradWeight: g.inputNormWeight, gradBias: g.inputNormBias, accumulatingInto: dx1, on: device)
            try gradientsReady?(self.layout.range(ofPrefix: "decoder.layers.\(l)."))
        }
        guard pipeline.isFirst, let gradWord = grads.wordEmbedding else { return dx }
        if c.hiddenDropout > 0 {
            dx = try Dropout.apply(dx, probability: c.hiddenDropout,
                                   rng: dropout.stream(layer: -1, site: DropoutSite.embedding.rawValue), firstRow: rows.first, on: device)
        }
        dx = try gather(dx, rows)
        try Embedding.backward(dx, ids: batch.tokens, positions: grads.positionEmbedding == nil ? nil : batch.positions,
                               gradWord: gradWord, vocabStart: vocabStart, vocabSize: c.paddedVocabSize,
                               gradPosition: grads.positionEmbedding, on: device)
        try gradientsReady?(self.layout.range(ofPrefix: "embedding."))
        return nil
    }
}
