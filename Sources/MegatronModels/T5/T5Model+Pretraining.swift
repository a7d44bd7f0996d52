import MegatronCore
import MegatronData

extension T5Config: ModelArchitecture {
    public func architectureDifferences(from other: T5Config) -> [String] {
        func describe(_ r: RelativeAttention?) -> String { r.map { "relative (\($0.numBuckets) buckets, distance \($0.maxDistance))" } ?? "learned_absolute" }
        return transformer.architectureDifferences(from: other.transformer)
            + (encoderNumLayers == other.encoderNumLayers ? [] : ["encoder_num_layers \(encoderNumLayers) vs \(other.encoderNumLayers)"])
            + (decoderNumLayers == other.decoderNumLayers ? [] : ["decoder_num_layers \(decoderNumLayers) vs \(other.decoderNumLayers)"])
            + (relativeAttention == other.relativeAttention ? [] : ["positions \(describe(relativeAttention)) vs \(describe(other.relativeAttention))"])
    }

    /// One pipeline stage: `pipelineStage` and `pipelineStages` are 0 and 1.
    public func layout(tensorParallelRank: Int, tensorParallelSize: Int, pipelineStage: Int, pipelineStages: Int) -> ParameterLayout {
        precondition(pipelineStage == 0 && pipelineStages == 1, "T5Model runs on one pipeline stage")
        return ParameterLayout(self, tensorParallelRank: tensorParallelRank, tensorParallelSize: tensorParallelSize)
    }
}

extension T5Model: MegatronModule {
    /// One pipeline stage: no shared embedding copy.
    public var sharedEmbeddingRange: Range<Int>? { nil }
    public func reduceSharedEmbeddingGradients() throws {}
    /// No sequence parallelism.
    public func reduceSequenceParallelGradients() throws {}
}

/// pretrain_t5.py's part of the training loop: each micro-batch trains the masked mean of its
/// decoder tokens' cross-entropy and reports it as "lm loss", averaged over micro-batches.
extension T5Model: PretrainingModel {
    public func microBatch(of samples: [T5Sample]) throws -> T5MicroBatch {
        try T5MicroBatch(encoderTokens: samples.map(\.encoderTokens), decoderTokens: samples.map(\.decoderTokens),
                         labels: samples.map(\.labels), lossMask: samples.map(\.lossMask), encoderMask: samples.map(\.encoderMask),
                         on: device)
    }

    /// T5 has one stage of one model chunk: `input` must be nil.
    public func forward(_ batch: T5MicroBatch, input: Tensor?, modelChunk: Int, dropout: DropoutKey, training: Bool,
                        parametersNeeded: ((Range<Int>) throws -> Void)?) throws -> StageActivations {
        guard input == nil, modelChunk == 0 else { throw TensorError("T5Model runs on one pipeline stage: it takes no previous stage's output") }
        try parametersNeeded?(0 ..< layout.totalCount)
        return try forward(batch, dropout: dropout, training: training)
    }

    public var reportedLossNames: [String] { ["lm loss"] }

    public func stageOutput(of activations: StageActivations) -> Tensor { activations.logits }

    public func reportedLosses(of activations: StageActivations, lossWeight: Float?) throws -> [ReportedLoss] {
        [ReportedLoss("lm loss", sum: Double(try loss(of: activations, lossWeight: lossWeight).mean), count: 1)]
    }

    /// The whole backward; every gradient is final at its end.
    public func backward(_ activations: consuming StageActivations, gradOutput: Tensor?,
                         gradientsReady: ((Range<Int>) throws -> Void)?) throws -> Tensor? {
        try backward(activations)
        try gradientsReady?(0 ..< layout.totalCount)
        return nil
    }

    public func hiddenStatesShape(tokens: Int) -> [Int] { [tokens, config.transformer.hiddenSize] }

    /// Every GEMM three times (forward, and the backward's two): the encoder's layers over
    /// `sequenceLength` tokens a sample, the decoder's over `decoderSequenceLength` (their
    /// cross-attention's keys and values over the encoder's tokens), attention over every key in the
    /// encoder and across, the causal half in the decoder, and the output layer.
    public func flopsPerIteration(samples: Int, sequenceLength: Int) -> Double {
        let c = config.transformer, h = Double(c.hiddenSize), b = Double(samples)
        let se = Double(sequenceLength), sd = Double(decoderSequenceLength), w = Double(c.attentionWidth)
        let layer = Double(c.qkvWidth) * h + w * h + Double(c.fc1Width + c.ffnHiddenSize) * h
        let encoder = Double(config.encoderNumLayers) * (se * layer + 2 * se * se * w)
        let decoder = Double(config.decoderNumLayers) * (sd * (layer + 2 * w * h) + se * 2 * w * h + sd * sd * w + 2 * sd * se * w)
        return 6 * b * (encoder + decoder + sd * h * Double(c.paddedVocabSize))
    }
}
