import MegatronCore
import MegatronModels
import MegatronParallel

/// Megatron's pipeline schedules over a model's stage. Without interleaving (1F1B, forward_backward_
/// pipelining_without_interleaving): of an iteration's M micro-batches, stage i of P first runs
/// min(P − i − 1, M) forwards (warm-up), then alternates one forward and one backward, then runs the
/// remaining backwards (cool-down), so at most P − i micro-batches' activations are alive at once;
/// the bubble, the time a stage waits, is (P − 1)/M of its work. With v model chunks per stage the
/// interleaved schedule runs instead (see `interleaved`), its bubble (P − 1)/(v·M). Activations go
/// to the next stage and gradients to the previous one (`PipelineCommunication`). On one stage it
/// is the plain loop: forward, loss, backward, micro-batch by micro-batch.
struct PipelineSchedule<Model: PretrainingModel> {
    let model: Model
    /// The micro-batch of index m (of this iteration, on this data-parallel rank) and its dropout masks.
    let microBatch: (Int) throws -> (Model.Batch, DropoutKey)
    /// Called by the forward with each span of the parameters it is about to read (`--overlap-param-gather`).
    var parametersNeeded: ((Range<Int>) throws -> Void)? = nil
    /// The exchanges with the neighbouring stages, and the seconds they took.
    let communication: PipelineCommunication

    /// The schedule of micro-batches of `tokens` token rows each (micro-batch size × sequence length).
    init(model: Model, tokens: Int, microBatch: @escaping (Int) throws -> (Model.Batch, DropoutKey)) {
        self.model = model
        self.microBatch = microBatch
        communication = PipelineCommunication(stage: model.pipeline, shape: model.hiddenStatesShape(tokens: tokens), device: model.device)
    }

    /// Runs the forward and backward of `count` micro-batches, each loss weighted by `lossWeight`;
    /// `gradientsReady` goes to each model chunk's last micro-batch's backward. Returns the reported
    /// losses summed over the micro-batches on the last stage, zeros elsewhere.
    func forwardBackward(count: Int, lossWeight: Float,
                         gradientsReady: ((Range<Int>) throws -> Void)?) throws -> [ReportedLoss] {
        let stage = model.pipeline, c = communication
        if stage.modelChunks > 1 { return try interleaved(count: count, lossWeight: lossWeight, gradientsReady: gradientsReady) }
        var total = noLosses
        var pending: [Model.StageActivations] = []
        var forwards = 0, backwards = 0
        /// The forward of the next micro-batch; its output for the next stage (none from the last).
        func forward(_ input: Tensor?) throws -> Tensor? {
            let activations = try forwardStep(microBatch(forwards), input: input, modelChunk: 0, lossWeight: lossWeight, into: &total)
            forwards += 1
            pending.append(activations)
            return stage.isLast ? nil : model.stageOutput(of: activations)
        }
        /// The backward of the oldest micro-batch; its input's gradient for the previous stage (none on the first).
        func backward(_ gradOutput: Tensor?) throws -> Tensor? {
            backwards += 1
            return try model.backward(pending.removeFirst(), gradOutput: gradOutput, gradientsReady: backwards == count ? gradientsReady : nil)
        }
        func receiveForward() throws -> Tensor? { try c.communicate(receivePrevious: !stage.isFirst).fromPrevious }
        let warmup = min(stage.count - stage.index - 1, count), steady = count - warmup
        for _ in 0 ..< warmup { _ = try c.communicate(toNext: forward(receiveForward())) }
        var input = steady > 0 ? try receiveForward() : nil
        for k in 0 ..< steady {
            let output = try forward(input)
            let gradOutput = try c.communicate(toNext: output, receiveNext: !stage.isLast).fromNext
            input = try c.communicate(toPrevious: backward(gradOutput), receivePrevious: k < steady - 1 && !stage.isFirst).fromPrevious
        }
        for _ in 0 ..< warmup {
            let gradOutput = try c.communicate(receiveNext: !stage.isLast).fromNext
            _ = try c.communicate(toPrevious: backward(gradOutput))
        }
        return total
    }

    /// The losses of `count` micro-batches without dropout or gradients (evaluation), passed forward
    /// stage by stage; summed over the micro-batches on the last stage, zeros elsewhere.
    func forwardOnly(count: Int) throws -> [ReportedLoss] {
        let stage = model.pipeline, c = communication
        if stage.modelChunks > 1 { return try interleaved(count: count, lossWeight: nil, gradientsReady: nil) }
        var total = noLosses
        for m in 0 ..< count {
            let input = try c.communicate(receivePrevious: !stage.isFirst).fromPrevious
            let activations = try forwardStep(microBatch(m), input: input, modelChunk: 0, lossWeight: nil, into: &total)
            if !stage.isLast { _ = try c.communicate(toNext: model.stageOutput(of: activations)) }
        }
        return total
    }

    /// The forward of model chunk `modelChunk` over a micro-batch and its dropout masks (training
    /// with a `lossWeight`), adding its losses to `total` on the last virtual stage.
    func forwardStep(_ microBatch: (batch: Model.Batch, dropout: DropoutKey), input: Tensor?, modelChunk: Int, lossWeight: Float?,
                     into total: inout [ReportedLoss]) throws -> Model.StageActivations {
        let (batch, dropout) = microBatch
        let activations = try model.forward(batch, input: input, modelChunk: modelChunk, dropout: dropout, training: lossWeight != nil,
                                            parametersNeeded: parametersNeeded)
        if model.pipeline.isLast(chunk: modelChunk) {
            for (i, loss) in try model.reportedLosses(of: activations, lossWeight: lossWeight).enumerated() {
                total[i].sum += loss.sum
                total[i].count += loss.count
            }
        }
        return activations
    }

    /// The model's reported losses at zero.
    var noLosses: [ReportedLoss] { model.reportedLossNames.map { ReportedLoss($0, sum: 0, count: 0) } }
}
