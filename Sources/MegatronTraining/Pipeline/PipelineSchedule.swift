import MegatronCore
import MegatronModels
import MegatronParallel

/// Megatron's pipeline schedule without interleaving (1F1B, forward_backward_pipelining_without_
/// interleaving) over a model's stage: of an iteration's M micro-batches, stage i of P first runs
/// min(P − i − 1, M) forwards (warm-up), then alternates one forward and one backward, then runs the
/// remaining backwards (cool-down), so at most P − i micro-batches' activations are alive at once.
/// Activations go to the next stage and gradients to the previous one; where a stage both sends and
/// waits it exchanges at once (`Communicator.sendReceive`), so blocking sends cannot deadlock. On
/// one stage it is the plain loop: forward, loss, backward, micro-batch by micro-batch.
struct PipelineSchedule<Model: PretrainingModel> {
    let model: Model
    /// Token rows of every micro-batch (micro-batch size × sequence length).
    let tokens: Int
    /// The micro-batch of index m (of this iteration, on this data-parallel rank) and its dropout masks.
    let microBatch: (Int) throws -> (Model.Batch, DropoutKey)
    /// Called by the forward with each span of the parameters it is about to read (`--overlap-param-gather`).
    var parametersNeeded: ((Range<Int>) throws -> Void)? = nil

    /// Runs the forward and backward of `count` micro-batches, each loss weighted by `lossWeight`;
    /// `gradientsReady` goes to the last micro-batch's backward. Returns the reported losses summed
    /// over the micro-batches on the last stage, zeros elsewhere.
    func forwardBackward(count: Int, lossWeight: Float,
                         gradientsReady: ((Range<Int>) throws -> Void)?) throws -> [ReportedLoss] {
        let stage = model.pipeline
        var total = noLosses
        var pending: [Model.StageActivations] = []
        var forwards = 0, backwards = 0
        func forward(_ input: Tensor?) throws -> Tensor {
            let (batch, dropout) = try microBatch(forwards)
            forwards += 1
            let activations = try model.forward(batch, input: input, dropout: dropout, training: true, parametersNeeded: parametersNeeded)
            if stage.isLast { add(try model.reportedLosses(of: activations, lossWeight: lossWeight), to: &total) }
            pending.append(activations)
            return model.stageOutput(of: activations)
        }
        func backward(_ gradOutput: Tensor?) throws -> Tensor? {
            let activations = pending.removeFirst()
            backwards += 1
            return try model.backward(activations, gradOutput: gradOutput, gradientsReady: backwards == count ? gradientsReady : nil)
        }
        let warmup = min(stage.count - stage.index - 1, count), steady = count - warmup
        for _ in 0 ..< warmup { try sendForward(forward(receiveForward())) }
        var input = steady > 0 ? try receiveForward() : nil
        for k in 0 ..< steady {
            let output = try forward(input)
            let gradInput = try backward(sendForwardReceiveBackward(output))
            if k == steady - 1 {
                try sendBackward(gradInput)
                input = nil
            } else {
                input = try sendBackwardReceiveForward(gradInput)
            }
        }
        for _ in 0 ..< warmup { try sendBackward(backward(receiveBackward())) }
        return total
    }

    /// The losses of `count` micro-batches without dropout or gradients (evaluation), passed forward
    /// stage by stage; summed over the micro-batches on the last stage, zeros elsewhere.
    func forwardOnly(count: Int) throws -> [ReportedLoss] {
        var total = noLosses
        for m in 0 ..< count {
            let (batch, dropout) = try microBatch(m)
            let activations = try model.forward(batch, input: receiveForward(), dropout: dropout, training: false,
                                                parametersNeeded: parametersNeeded)
            if model.pipeline.isLast {
                add(try model.reportedLosses(of: activations, lossWeight: nil), to: &total)
            } else {
                try sendForward(model.stageOutput(of: activations))
            }
        }
        return total
    }

    /// The model's reported losses at zero.
    private var noLosses: [ReportedLoss] { model.reportedLossNames.map { ReportedLoss($0, sum: 0, count: 0) } }

    private func add(_ losses: [ReportedLoss], to total: inout [ReportedLoss]) {
        for (i, loss) in losses.enumerated() {
            total[i].sum += loss.sum
            total[i].count += loss.count
        }
    }

    // MARK: point-to-point steps (Megatron's p2p_communication names)

    /// The hidden states that pass between stages.
    private var activationShape: [Int] { model.hiddenStatesShape(tokens: tokens) }

    private func receive(from peer: Int) throws -> Tensor {
        let tensor = try Tensor(shape: activationShape, on: model.device, zeroed: false)
        try model.pipeline.group.receive(into: UnsafeMutableBufferPointer(start: tensor.floats, count: tensor.count), from: peer, tag: MessageTag.pipeline)
        return tensor
    }

    private func send(_ tensor: Tensor, to peer: Int) throws {
        try model.pipeline.group.send(UnsafeBufferPointer(start: tensor.floats, count: tensor.count), to: peer, tag: MessageTag.pipeline)
    }

    /// Sends `outgoing` to `peer` and receives from it at once.
    private func exchange(_ outgoing: Tensor, with peer: Int) throws -> Tensor {
        let incoming = try Tensor(shape: activationShape, on: model.device, zeroed: false)
        try model.pipeline.group.sendReceive(UnsafeBufferPointer(start: outgoing.floats, count: outgoing.count), to: peer,
                                              into: UnsafeMutableBufferPointer(start: incoming.floats, count: incoming.count),
                                              from: peer, tag: MessageTag.pipeline)
        return incoming
    }

    private func receiveForward() throws -> Tensor? {
        model.pipeline.isFirst ? nil : try receive(from: model.pipeline.index - 1)
    }

    private func sendForward(_ output: Tensor) throws {
        if !model.pipeline.isLast { try send(output, to: model.pipeline.index + 1) }
    }

    private func receiveBackward() throws -> Tensor? {
        model.pipeline.isLast ? nil : try receive(from: model.pipeline.index + 1)
    }

    private func sendBackward(_ gradInput: Tensor?) throws {
        if let gradInput, !model.pipeline.isFirst { try send(gradInput, to: model.pipeline.index - 1) }
    }

    /// Sends an output forward and receives a gradient back, at once; the next stage's matching
    /// step is `sendBackwardReceiveForward`.
    private func sendForwardReceiveBackward(_ output: Tensor) throws -> Tensor? {
        model.pipeline.isLast ? nil : try exchange(output, with: model.pipeline.index + 1)
    }

    private func sendBackwardReceiveForward(_ gradInput: Tensor?) throws -> Tensor? {
        guard let gradInput, !model.pipeline.isFirst else { return nil }
        return try exchange(gradInput, with: model.pipeline.index - 1)
    }
}
