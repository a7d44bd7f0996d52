import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import Testing

/// The lm loss an iteration reports under --eod-mask-loss, where micro-batches count different
/// numbers of tokens: Megatron's training_log averages over the tokens of the whole global batch,
/// and a micro-batch with every token masked adds nothing (its token count is clamped to 1).
struct TrainerLossTests {
    static let eod: Int32 = 0
    static let sequenceLength = 8

    static func config() -> TransformerConfig {
        var c = TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, paddedVocabSize: 32, maxPositionEmbeddings: 8)
        c.hiddenDropout = 0
        c.attentionDropout = 0
        return c
    }

    static var boundaries: MicroBatch.DocumentBoundaries {
        var b = MicroBatch.DocumentBoundaries(endOfDocument: eod)
        b.eodMaskLoss = true
        return b
    }

    /// One iteration over `samples` (micro-batch 1, no clipping): the reported loss and grad norm.
    static func iteration(_ samples: [[Int32]]) throws -> IterationResult {
        let model = try GPTModel(config: config(), seed: 4, on: CPUDevice(threads: 1))
        model.documentBoundaries = boundaries
        let settings = TrainingSettings(trainIters: 1, microBatchSize: 1, globalBatchSize: samples.count, sequenceLength: sequenceLength)
        let trainer = try Trainer(model: model, optimizer: try Optimizer(model: model, settings: .init()),
                              scheduler: .init(maxLR: 1e-3, warmupSteps: 0, decaySteps: 100, decayStyle: .constant),
                              settings: settings, sample: { samples[$0] }, log: { _ in })
        return try trainer.train()[0]
    }

    /// Each sample's masked loss and the gradient norm of Σ lossWeight·loss, from a fresh model.
    static func reference(_ samples: [[Int32]]) throws -> (losses: [MaskedLoss], gradNorm: Double) {
        let model = try GPTModel(config: config(), seed: 4, on: CPUDevice(threads: 1))
        model.zeroGradients()
        let losses = try samples.map { sample in
            try model.forwardBackward(MicroBatch(samples: [sample], boundaries: boundaries, on: model.device),
                                      lossWeight: 1 / Float(samples.count), dropout: .init(seed: 0, iteration: 0, microBatch: 0))
        }
        let g = UnsafeBufferPointer(start: model.gradients.floats, count: model.layout.totalCount)
        return (losses, g.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot())
    }

    @Test func iterationLossWeighsEveryTokenAlike() throws {
        // Six of eight inputs are end-of-document in the first sample: 2 tokens against 8.
        let samples: [[Int32]] = [[0, 0, 5, 0, 0, 0, 7, 0, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]]
        let (losses, _) = try Self.reference(samples)
        #expect(losses.map(\.tokens) == [2, 8])
        let tokenWeighted = (losses[0].sum + losses[1].sum) / 10
        let perMicroBatch = (losses[0].mean + losses[1].mean) / 2
        #expect(abs(tokenWeighted - perMicroBatch) > 1e-3 * tokenWeighted, "the sample must tell the two apart")
        let reported = try Self.iteration(samples).loss
        #expect(abs(reported - tokenWeighted) <= 1e-6 * tokenWeighted, "reported \(reported), token-weighted \(tokenWeighted)")
    }

    @Test func aMicroBatchWithEveryTokenMaskedAddsNothing() throws {
        let samples: [[Int32]] = [[0, 0, 0, 0, 0, 0, 0, 0, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9]]
        let (losses, gradNorm) = try Self.reference(samples)
        #expect(losses[0] == MaskedLoss(sum: 0, tokens: 0))
        #expect(losses[0].mean.isNaN, "Megatron's 0 / 0")
        let result = try Self.iteration(samples)
        #expect(abs(result.loss - losses[1].mean) <= 1e-6 * losses[1].mean)
        #expect(abs(result.gradNorm - gradNorm) <= 1e-5 * gradNorm, "half the gradient of the counted micro-batch")
        #expect(!result.skipped)
    }
}
