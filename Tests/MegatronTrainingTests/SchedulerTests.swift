import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import Testing

@Suite struct OptimizerParamSchedulerTests {
    /// lr after `samples` samples.
    func lr(_ s: OptimizerParamScheduler, at samples: Int) -> Double {
        var s = s
        s.step(samples)
        return s.learningRate
    }

    @Test func warmupThenCosineThenMinimum() {
        let s = OptimizerParamScheduler(maxLR: 1e-3, minLR: 1e-5, initLR: 1e-4, warmupSteps: 100, decaySteps: 1100, decayStyle: .cosine)
        #expect(lr(s, at: 0) == 1e-4)
        #expect(abs(lr(s, at: 50) - 5.5e-4) < 1e-12)
        #expect(lr(s, at: 100) == 1e-3)
        #expect(abs(lr(s, at: 600) - (1e-5 + 0.5 * (1e-3 - 1e-5))) < 1e-12)
        #expect(abs(lr(s, at: 1100) - 1e-5) < 1e-12)
        #expect(lr(s, at: 5000) == 1e-5)
    }

    /// --lr-warmup-fraction 0.1 of 125 decay samples: Megatron warms up over 12.5 samples, not 12.
    @Test func fractionalWarmupAsMegatron() {
        let s = OptimizerParamScheduler(maxLR: 1, warmupSteps: 12.5, decaySteps: 125, decayStyle: .linear)
        #expect(abs(lr(s, at: 12) - 12 / 12.5) < 1e-12)
        #expect(abs(lr(s, at: 13) - (1 - 0.5 / 112.5)) < 1e-12)
    }

    @Test func otherDecayStyles() {
        func make(_ style: OptimizerParamScheduler.DecayStyle) -> OptimizerParamScheduler {
            OptimizerParamScheduler(maxLR: 1, minLR: 0.1, warmupSteps: 10, decaySteps: 110, decayStyle: style,
                                    wsdDecaySteps: 20, wsdDecayStyle: .linear)
        }
        #expect(lr(make(.constant), at: 1000) == 1)
        #expect(abs(lr(make(.linear), at: 60) - 0.55) < 1e-12)
        #expect(abs(lr(make(.inverseSquareRoot), at: 40) - 0.5) < 1e-12)  // 1·√10/√40
        #expect(lr(make(.wsd), at: 90) == 1)                                 // stable until 110 − 20
        #expect(abs(lr(make(.wsd), at: 100) - 0.55) < 1e-12)                // halfway through the anneal
    }

    /// Megatron's get_wd: from start to end over the run's samples, then end.
    @Test func weightDecayIncrement() {
        typealias Increment = OptimizerParamScheduler.WeightDecayIncrement
        let linear = Increment(start: 0.02, end: 0.1, steps: 200, style: .linear)
        #expect(linear.weightDecay(at: 0) == 0.02)
        #expect(abs(linear.weightDecay(at: 50) - 0.04) < 1e-15)
        #expect(linear.weightDecay(at: 200) == 0.1 && linear.weightDecay(at: 260) == 0.1)
        let cosine = Increment(start: 0, end: 0.1, steps: 100, style: .cosine)
        #expect(abs(cosine.weightDecay(at: 25) - 0.05 * (1 - 0.5.squareRoot())) < 1e-15, "½(cos(3π/4) + 1)·0.1")
        #expect(abs(cosine.weightDecay(at: 50) - 0.05) < 1e-15)
        #expect(Increment(start: 0.3, end: 0.3, steps: 10, style: .constant).weightDecay(at: 4) == 0.3)
        var s = OptimizerParamScheduler(maxLR: 1, warmupSteps: 0, decaySteps: 200, decayStyle: .constant, weightDecayIncrement: linear)
        #expect(s.weightDecay == 0.02, "the first iteration decays by the start value")
        s.step(100)
        #expect(abs(s.weightDecay! - 0.06) < 1e-15)
    }
}

@Suite struct TrainerTests {
    /// The scheduler's weight decay reaches the optimizer: a constant schedule of 0.3 trains exactly
    /// as an optimizer whose own weight decay is 0.3, and a linear one from 0.3 differs after its
    /// first iteration.
    @Test func scheduledWeightDecayReachesTheOptimizer() throws {
        func train(optimizerWeightDecay: Float, schedule: OptimizerParamScheduler.WeightDecayIncrement?) throws -> [Float] {
            let device = CPUDevice(threads: 1)
            let c = TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, paddedVocabSize: 64, maxPositionEmbeddings: 8)
            let model = try GPTModel(config: c, seed: 2, on: device)
            let data = try MockData(vocabSize: 64, sequenceLength: 8, seed: 1)
            var optimizer = Optimizer.Settings()
            optimizer.weightDecay = optimizerWeightDecay
            let trainer = try Trainer(model: model, optimizer: try Optimizer(model: model, settings: optimizer),
                                  scheduler: .init(maxLR: 1e-2, warmupSteps: 0, decaySteps: 100, decayStyle: .constant,
                                                   weightDecayIncrement: schedule),
                                  settings: .init(trainIters: 3, microBatchSize: 2, globalBatchSize: 2, sequenceLength: 8),
                                  sample: data.sample, log: { _ in })
            try trainer.train()
            return Array(UnsafeBufferPointer(start: model.parameters.floats, count: model.layout.totalCount))
        }
        let plain = try train(optimizerWeightDecay: 0.3, schedule: nil)
        #expect(try train(optimizerWeightDecay: 0.01, schedule: .init(start: 0.3, end: 0.3, steps: 6, style: .constant)) == plain)
        #expect(try train(optimizerWeightDecay: 0.01, schedule: .init(start: 0.3, end: 3, steps: 6, style: .linear)) != plain)
    }

    /// Megatron's lm loss field appears once an iteration updated the model, at 0 through an interval
    /// whose iterations were all skipped (a loss-scale overflow), and not before.
    @Test func anAllSkippedIntervalShowsTheLossFieldOnlyAfterAnUpdate() {
        for afterAnUpdate in [false, true] {
            var interval = TrainingLog(lossNames: afterAnUpdate ? ["lm loss"] : [])
            interval.add(.init(iteration: 7, loss: 2.5, gradNorm: .nan, learningRate: 1e-4, skipped: true, seconds: 0.5))
            let line = interval.line(iteration: 7, trainIters: 10, consumedSamples: 56, flopsPerIteration: nil, learningRate: 1e-4,
                                     globalBatchSize: 8, lossScale: 65536, gradNorm: nil)
            #expect(line.contains(" lm loss: 0.000000E+00 | loss scale: 65536.0 | number of skipped iterations:   1 |") == afterAnUpdate,
                    "\(line)")
            #expect(line.contains("lm loss") == afterAnUpdate, "\(line)")
        }
    }

    @Test func logLineHasMegatronsFieldsInOrder() {
        var interval = TrainingLog()
        interval.add(.init(iteration: 1, loss: 2.5, gradNorm: 1.23456, learningRate: 1e-4, skipped: false, seconds: 0.5))
        interval.add(.init(iteration: 2, loss: 1.5, gradNorm: 1.0, learningRate: 1e-4, skipped: false, seconds: 1.5))
        let line = interval.line(iteration: 2, trainIters: 100, consumedSamples: 16, flopsPerIteration: 3e12, learningRate: 2e-4,
                                 globalBatchSize: 8, gradNorm: 1.0)
        let plain = interval.line(iteration: 2, trainIters: 100, consumedSamples: 16, flopsPerIteration: nil, learningRate: 2e-4,
                                  globalBatchSize: 8, gradNorm: nil)
        #expect(!plain.contains("throughput") && !plain.contains("grad norm"), "without --log-throughput, and without clipping")
        let withParams = interval.line(iteration: 2, trainIters: 100, consumedSamples: 16, flopsPerIteration: nil, learningRate: 2e-4,
                                       globalBatchSize: 8, gradNorm: 1.0, paramsNorm: 123.4567)
        #expect(withParams.hasSuffix("| grad norm: 1.000 | params norm: 123.457 | number of skipped iterations:   0 | "
                                     + "number of nan iterations:   0 |"), "Megatron's place for it: after the grad norm")
        let body = line.split(separator: "]", maxSplits: 1)[1]
        #expect(body == " iteration        2/     100 | consumed samples:           16 | elapsed time per iteration (ms): 1000.0 | "
                + "throughput per GPU (TFLOP/s/GPU): 3.0 | learning rate: 2.000000E-04 | global batch size:     8 | "
                + "lm loss: 2.000000E+00 | loss scale: 1.0 | grad norm: 1.000 | number of skipped iterations:   0 | "
                + "number of nan iterations:   0 |")
        #expect(line.hasPrefix(" [") && line.dropFirst(2).prefix(4).allSatisfy(\.isNumber))
    }

    @Test func flopsFormulaMatchesMegatronForGPT2Small() {
        let c = TransformerConfig(numLayers: 12, hiddenSize: 768, numAttentionHeads: 12, paddedVocabSize: 50304, maxPositionEmbeddings: 1024)
        // 1024 · 6 · (768·3072·2·12 + 12·(768·2304 + 768·768) + 768·50304) + 1024²·12·6·768
        let perToken: Int = 768 * 3072 * 2 * 12 + 12 * (768 * 2304 + 768 * 768) + 768 * 50304
        let core: Int = 1024 * 1024 * 12 * 6 * 768
        let expected = Double(1024 * 6 * perToken + core)
        #expect(modelFLOPsPerIteration(c, globalBatchSize: 1, sequenceLength: 1024) == expected)
    }

    @Test func trainingReducesLossWithAccumulationAndClipping() throws {
        let device = CPUDevice(threads: 1)
        var c = TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, paddedVocabSize: 128, maxPositionEmbeddings: 32)
        c.hiddenDropout = 0
        c.attentionDropout = 0
        let model = try GPTModel(config: c, seed: 1, on: device)
        let data = try MockData(vocabSize: 128, sequenceLength: 32, seed: 1)
        var settings = TrainingSettings(trainIters: 40, microBatchSize: 2, globalBatchSize: 4, sequenceLength: 32)
        settings.logInterval = 20
        var lines: [String] = []
        var optimizerSettings = Optimizer.Settings()
        optimizerSettings.clipGrad = 0.5
        let trainer = try Trainer(model: model, optimizer: try Optimizer(model: model, settings: optimizerSettings),
                              scheduler: .init(maxLR: 3e-3, warmupSteps: 16, decaySteps: 160, decayStyle: .cosine),
                              settings: settings, sample: data.sample, log: { lines.append($0) })
        let results = try trainer.train()
        #expect(lines.count == 3, "after iteration 1, 20 and 40")
        #expect(results.first!.learningRate == 0, "Megatron's first iteration runs at the warm-up's initial rate")
        #expect(results.last!.loss < results.first!.loss - 1, "loss \(results.first!.loss) → \(results.last!.loss)")
        #expect(trainer.consumedSamples == 160)
    }
}
