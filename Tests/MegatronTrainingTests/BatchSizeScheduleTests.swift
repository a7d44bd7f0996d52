import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import MegatronTraining
import Testing

/// Megatron's --step-batch-size-schedule: thresholds in tokens (with K/M/B/T), converted to samples
/// of the sequence length, pick each iteration's global batch size from the samples consumed.
struct BatchSizeScheduleTests {
    @Test func parsesThresholdsInTokensWithSuffixes() throws {
        let s = try BatchSizeSchedule(parsing: "0:16 2.4B:320,4.8B:624", sequenceLength: 2048)
        #expect(s.steps.map(\.samples) == [0, 1_171_875, 2_343_750] && s.steps.map(\.batchSize) == [16, 320, 624])
        #expect(s.globalBatchSize(consumedSamples: 1_171_874) == 16 && s.globalBatchSize(consumedSamples: 1_171_875) == 320)
        let small = try BatchSizeSchedule(parsing: "0:2 48:4 0.1K:8", sequenceLength: 8)   // 6 and 12 samples
        #expect(small.iterations(toConsume: 30) == 7 && small.samples(in: 7) == 30 && small.samples(in: 3) == 6)
    }

    @Test(arguments: [
        ("16:4", "the first threshold must be 0, got 16 tokens"),
        ("0:4 64:8 64:16", "thresholds must be strictly increasing"),
        ("0:4 8:8", "thresholds must be strictly increasing"),   // 8 tokens round down to sample 0
        ("0:4 x:8", "\"x:8\" is not THRESHOLD:BATCH_SIZE"),
        ("0:0", "the batch size must be positive"),
        ("", "the schedule has no entries"),
    ])
    func malformedSchedulesAreErrorsNamingTheFlag(text: String, message: String) {
        #expect {
            _ = try BatchSizeSchedule(parsing: text, sequenceLength: 16)
        } throws: { "\($0)".hasPrefix("--step-batch-size-schedule") && "\($0)".contains(message) }
    }

    /// The schedule's first iterations train exactly as the constant batch size they start with,
    /// then the batch grows; on two data-parallel ranks as on one.
    @Test func trainsWithTheScheduledBatchSizes() throws {
        func run(dp: Int, schedule: BatchSizeSchedule?, iterations: Int) throws -> [(loss: Float, gradNorm: Double)] {
            let config = TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, paddedVocabSize: 128, maxPositionEmbeddings: 16)
            let data = try MockData(vocabSize: 128, sequenceLength: 16, seed: 5)
            let results = DataParallelTests.Results()
            try InProcessWorld(size: dp).run { world in
                let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: dp))
                let model = try GPTModel(config: config, seed: 3, groups: groups, on: CPUDevice(threads: 1))
                let ddp = try DistributedDataParallel(model: model)
                var settings = TrainingSettings(trainIters: iterations, microBatchSize: 1, globalBatchSize: 2, sequenceLength: 16)
                settings.batchSizeSchedule = schedule
                let trainer = try Trainer(model: model, optimizer: try Optimizer(model: model, settings: .init(), dataParallel: ddp),
                                      scheduler: .init(maxLR: 1e-3, warmupSteps: 0, decaySteps: 1000, decayStyle: .constant),
                                      settings: settings, dataParallel: ddp, sample: data.sample, log: { _ in })
                let trained = try trainer.train()
                if world.rank == 0 { results.set(trained.map { ($0.loss, $0.gradNorm) }, stateBytes: 0) }
            }
            return results.values
        }
        let schedule = try BatchSizeSchedule(parsing: "0:2 96:4", sequenceLength: 16)   // 4 at 6 samples: after 3 iterations
        let constant = try run(dp: 1, schedule: nil, iterations: 3)
        let scheduled = try run(dp: 1, schedule: schedule, iterations: 5)
        #expect(zip(constant, scheduled).allSatisfy { $0.loss == $1.loss && $0.gradNorm == $1.gradNorm }, "\(constant) vs \(scheduled)")
        let parallel = try run(dp: 2, schedule: schedule, iterations: 5)
        #expect(scheduled.count == 5 && zip(scheduled, parallel).allSatisfy { abs($0.loss - $1.loss) <= 1e-5 * $0.loss },
                "\(scheduled) vs \(parallel)")
        #expect {
            _ = try run(dp: 2, schedule: try BatchSizeSchedule(parsing: "0:2 32:3", sequenceLength: 16), iterations: 3)
        } throws: { "\($0)".contains("--step-batch-size-schedule: the global batch size 3 at 2 consumed samples is not divisible") }
    }
}
