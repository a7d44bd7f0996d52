import MegatronCore
import MegatronData

extension BertConfig: ModelArchitecture {
    public func architectureDifferences(from other: BertConfig) -> [String] {
        transformer.architectureDifferences(from: other.transformer)
            + (bertBinaryHead == other.bertBinaryHead ? [] : ["bert_binary_head \(bertBinaryHead) vs \(other.bertBinaryHead)"])
    }

    /// One pipeline stage: `pipelineStage` and `pipelineStages` are 0 and 1.
    public func layout(tensorParallelRank: Int, tensorParallelSize: Int, pipelineStage: Int, pipelineStages: Int) -> ParameterLayout {
        precondition(pipelineStage == 0 && pipelineStages == 1, "BertModel runs on one pipeline stage")
        return ParameterLayout(self, tensorParallelRank: tensorParallelRank, tensorParallelSize: tensorParallelSize)
    }
}

/// pretrain_bert.py's part of the training loop: each micro-batch trains lm + sop (the masked mean
/// of the masked-LM loss plus the mean sentence-order loss), and reports both, Megatron's
/// "lm loss" and "sop loss" (without the binary head, the lm loss alone), as means over micro-batches.
extension BertModel: PretrainingModel {
    public func microBatch(of samples: [BertSample]) throws -> BertMicroBatch {
        try BertMicroBatch(tokens: samples.map(\.text), tokentypes: config.bertBinaryHead ? samples.map(\.types) : nil,
                           paddingMask: samples.map(\.paddingMask), labels: samples.map(\.labels), lossMask: samples.map(\.lossMask),
                           sentenceOrder: samples.map(\.isRandom), on: device)
    }

    /// BERT has one stage of one model chunk: `input` must be nil.
    public func forward(_ batch: BertMicroBatch, input: Tensor?, modelChunk: Int, dropout: DropoutKey, training: Bool,
                        parametersNeeded: ((Range<Int>) throws -> Void)?) throws -> StageActivations {
        guard input == nil, modelChunk == 0 else { throw TensorError("BertModel runs on one pipeline stage: it takes no previous stage's output") }
        try parametersNeeded?(0 ..< layout.totalCount)
        return try forward(batch, dropout: dropout, training: training)
    }

    public var reportedLossNames: [String] { config.bertBinaryHead ? ["lm loss", "sop loss"] : ["lm loss"] }

    public func stageOutput(of activations: StageActivations) -> Tensor { activations.logits }

    public func reportedLosses(of activations: StageActivations, lossWeight: Float?) throws -> [ReportedLoss] {
        let loss = try self.loss(of: activations, lossWeight: lossWeight)
        return zip(reportedLossNames, [loss.lm.mean, loss.sop.mean]).map { ReportedLoss($0, sum: Double($1), count: 1) }
    }

    /// The whole backward; every gradient is final at its end.
    public func backward(_ activations: consuming StageActivations, gradOutput: Tensor?,
                         gradientsReady: ((Range<Int>) throws -> Void)?) throws -> Tensor? {
        try backward(activations)
        try gradientsReady?(0 ..< layout.totalCount)
        return nil
    }

    public func hiddenStatesShape(tokens: Int) -> [Int] { [tokens, config.transformer.hiddenSize] }

    /// GPT's count (`modelFLOPsPerIteration`) with attention over every key rather than the causal
    /// half, the LM head's dense layer on every token and, with the binary head, the pooler and the
    /// binary head on each sample.
    public func flopsPerIteration(samples: Int, sequenceLength: Int) -> Double {
        let c = config.transformer, h = Double(c.hiddenSize), s = Double(sequenceLength), b = Double(samples)
        let q = Double(c.numAttentionHeads * c.kvChannels)
        let heads = config.bertBinaryHead ? b * 6 * (h * h + 2 * h) : 0
        return modelFLOPsPerIteration(c, globalBatchSize: samples, sequenceLength: sequenceLength)
            + b * s * s * Double(c.numLayers) * 6 * q + b * s * 6 * h * h + heads
    }
}
