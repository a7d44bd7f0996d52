import MegatronCore

extension TransformerConfig: ModelArchitecture {
    public func layout(tensorParallelRank: Int, tensorParallelSize: Int, pipelineStage: Int, pipelineStages: Int) -> ParameterLayout {
        ParameterLayout(self, tensorParallelRank: tensorParallelRank, tensorParallelSize: tensorParallelSize,
                        pipelineStage: pipelineStage, pipelineStages: pipelineStages)
    }
}

/// pretrain_gpt.py's part of the training loop: samples of sequence-length + 1 tokens, the masked
/// mean cross-entropy, reported as "lm loss" over every token of the global batch.
extension GPTModel: PretrainingModel {
    /// The micro-batch of `samples` (whole sequences), or under context parallelism this rank's rows of it.
    public func microBatch(of samples: [[Int32]]) throws -> MicroBatch {
        let whole = try MicroBatch(samples: samples, boundaries: documentBoundaries, on: device)
        return contextParallel.size > 1 ? try contextParallel.localRows(of: whole, on: device) : whole
    }

    public var reportedLossNames: [String] { ["lm loss"] }

    public func stageOutput(of activations: StageActivations) -> Tensor { activations.output }

    public func reportedLosses(of activations: StageActivations, lossWeight: Float?) throws -> [ReportedLoss] {
        let loss = try self.loss(of: activations, lossWeight: lossWeight)
        return [ReportedLoss("lm loss", sum: Double(loss.sum), count: Double(loss.tokens))]
    }

    /// This rank's share of `tokens` (under context parallelism, a cp-th of them).
    public func hiddenStatesShape(tokens: Int) -> [Int] { hiddenStatesShape(tokens: tokens / contextParallel.size, splitRows: nil) }

    public func flopsPerIteration(samples: Int, sequenceLength: Int) -> Double {
        modelFLOPsPerIteration(config, globalBatchSize: samples, sequenceLength: sequenceLength)
    }
}
