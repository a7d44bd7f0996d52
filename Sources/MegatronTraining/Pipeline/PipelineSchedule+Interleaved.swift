import MegatronCore
import MegatronModels

extension PipelineSchedule {
    /// Megatron's interleaved 1F1B (forward_backward_pipelining_with_interleaving) over v model
    /// chunks per stage (`PipelineStage`): the M micro-batches (a multiple of the P stages) run
    /// through the P·v virtual stages in groups of P, so stage i's k-th forward is micro-batch
    /// ⌊k / Pv⌋·P + k mod P of chunk ⌊(k mod Pv) / P⌋, and its k-th backward the same micro-batch
    /// of chunk v − 1 − ⌊(k mod Pv) / P⌋. Stage i warms up with min(2(P − i − 1) + (v − 1)P, Mv)
    /// forwards (all of them when M = P, or without `lossWeight`: evaluation), then alternates one
    /// forward and one backward, then runs the remaining backwards. Each step exchanges what it
    /// produced and what the next steps need with both neighbours at once, around the ring of
    /// stages. `gradientsReady` goes to each chunk's last backward.
    func interleaved(count m: Int, lossWeight: Float?, gradientsReady: ((Range<Int>) throws -> Void)?) throws -> [ReportedLoss] {
        let stage = model.pipeline, c = communication
        let p = stage.count, v = stage.modelChunks, total = m * v, training = lossWeight != nil
        guard m >= 1, m % p == 0 else {
            throw ConfigError(flag: "--num-layers-per-virtual-pipeline-stage",
                              "the interleaved pipeline schedule (--num-layers-per-virtual-pipeline-stage, --num-virtual-stages-per-pipeline-rank) "
                              + "needs the micro-batches of each training iteration and evaluation (\(m): batch / (micro-batch size × "
                              + "data-parallel size)) to be a positive multiple of --pipeline-model-parallel-size \(p)")
        }
        let allWarmup = !training || m == p
        let warmup = allWarmup ? total : min(2 * (p - stage.index - 1) + (v - 1) * p, total), remaining = total - warmup

        /// The model chunk of the k-th forward (or backward).
        func chunk(_ k: Int, forward: Bool) -> Int {
            let group = ((k % (p * v)) + p * v) % (p * v) / p  // k may be negative: a floored modulo
            return forward ? group : v - 1 - group
        }
        var losses = noLosses
        // Per model chunk, in micro-batch order: the inputs received for its forwards, its forwards'
        // activations awaiting their backward, the output gradients received for its backwards.
        var inputs = [[Tensor]](repeating: [], count: v), pending = [[Model.StageActivations]](repeating: [], count: v)
        var gradOutputs = [[Tensor]](repeating: [], count: v), backwards = [Int](repeating: 0, count: v)
        // The micro-batches between their first chunk's forward and their last's.
        var batches: [Int: (batch: Model.Batch, dropout: DropoutKey)] = [:]

        /// The k-th forward; its output for the next virtual stage (none from the last).
        func forward(_ k: Int) throws -> Tensor? {
            let j = chunk(k, forward: true), index = k / (p * v) * p + k % p
            let input = stage.isFirst(chunk: j) ? nil : inputs[j].removeFirst()
            let batch = try batches[index] ?? microBatch(index)
            batches[index] = j == v - 1 ? nil : batch
            let activations = try forwardStep(batch, input: input, modelChunk: j, lossWeight: lossWeight, into: &losses)
            if training { pending[j].append(activations) }
            return stage.isLast(chunk: j) ? nil : model.stageOutput(of: activations)
        }
        /// The k-th backward; its input's gradient for the previous virtual stage (none on the first).
        func backward(_ k: Int) throws -> Tensor? {
            let j = chunk(k, forward: false)
            backwards[j] += 1
            let gradOutput = stage.isLast(chunk: j) ? nil : gradOutputs[j].removeFirst()
            return try model.backward(pending[j].removeFirst(), gradOutput: gradOutput,
                                      gradientsReady: backwards[j] == m ? gradientsReady : nil)
        }

        if !stage.isFirst { inputs[0].append(try c.communicate(receivePrevious: true).fromPrevious!) }
        for k in 0 ..< warmup {
            let output = try forward(k)
            let nextChunk = chunk(k + 1, forward: true)
            let receivePrevious = !(stage.isFirst && nextChunk == 0) && k < total - 1
            // The last warm-up step also receives the first backward's gradient.
            let receiveNext = k == warmup - 1 && !allWarmup && !stage.isLast
            let received = try c.communicate(toNext: output, receivePrevious: receivePrevious, receiveNext: receiveNext)
            if let input = received.fromPrevious { inputs[nextChunk].append(input) }
            if let gradOutput = received.fromNext { gradOutputs[v - 1].append(gradOutput) }
        }
        for k in 0 ..< remaining {
            let forwardK = k + warmup
            let output = try forward(forwardK)
            let gradInput = try backward(k)
            // What the next forward and backward need: the first stage's next forward input comes from
            // the last stage's forward P − 1 steps back, the last stage's next gradient from the
            // first stage's backward P − 1 steps back.
            var receivePrevious = k < remaining - 1, receiveNext = true
            let nextForwardChunk: Int, nextBackwardChunk: Int
            if stage.isFirst {
                let feeding = chunk(forwardK - (p - 1), forward: true)
                receivePrevious = receivePrevious && feeding != v - 1
                nextForwardChunk = feeding + 1
            } else {
                nextForwardChunk = chunk(forwardK + 1, forward: true)
            }
            if stage.isLast {
                let feeding = chunk(k - (p - 1), forward: false)
                receiveNext = feeding != 0
                nextBackwardChunk = feeding - 1
            } else {
                nextBackwardChunk = chunk(k + 1, forward: false)
            }
            let received = try c.communicate(toNext: output, toPrevious: gradInput, receivePrevious: receivePrevious, receiveNext: receiveNext)
            if let input = received.fromPrevious { inputs[nextForwardChunk].append(input) }
            if let gradOutput = received.fromNext { gradOutputs[nextBackwardChunk].append(gradOutput) }
        }
        guard training else { return losses }
        if allWarmup, !stage.isLast { gradOutputs[v - 1].append(try c.communicate(receiveNext: true).fromNext!) }
        for k in remaining ..< total {
            let gradInput = try backward(k)
            let nextChunk = chunk(k + 1, forward: false)
            let receiveNext = !(stage.isLast && nextChunk == v - 1) && k < total - 1
            if let gradOutput = try c.communicate(toPrevious: gradInput, receiveNext: receiveNext).fromNext {
                gradOutputs[nextChunk].append(gradOutput)
            }
        }
        return losses
    }
}
