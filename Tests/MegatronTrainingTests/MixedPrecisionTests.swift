import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import Testing

/// Megatron's mixed precision: the loss scaler's rule, training under --bf16 and --fp16 against fp32,
/// overflow skips, data-parallel agreement, and checkpoints that keep the main parameters and the scaler.
struct MixedPrecisionTests {
    static let bf16: @Sendable (inout Optimizer.Settings) -> Void = { $0.paramsDType = .bfloat16 }

    /// --fp16 with dynamic loss scaling from `initialScale` (Megatron's other defaults unless given).
    static func fp16(initialScale: Float, window: Int = 1000) -> @Sendable (inout Optimizer.Settings) -> Void {
        { settings in
            settings.paramsDType = .float16
            settings.gradBufferDType = .float16
            settings.gradScaler = .dynamic(initialScale: initialScale, window: window)
        }
    }

    // MARK: the scaler

    @Test func theDynamicScaleFallsAfterHysteresisAndGrowsAfterAWindow() {
        var scaler = GradScaler.dynamic(initialScale: 1024, minScale: 1, window: 3, hysteresis: 2)
        var seen: [(Float, Int, Int)] = []
        for foundInf in [true, true, true, false, false, false, true, false] {
            scaler.update(foundInf: foundInf)
            seen.append((scaler.scale, scaler.growthTracker, scaler.hysteresisTracker))
        }
        let expected: [(Float, Int, Int)] = [
            (1024, 0, 1),  // the first overflow is tolerated
            (512, 0, 0),   // the second halves
            (256, 0, -1),  // and each further one until a growth
            (256, 1, -1), (256, 2, -1),
            (512, 0, 2),   // a window without overflow doubles and restores the hysteresis
            (512, 0, 1),
            (512, 1, 1),
        ]
        #expect(seen.count == expected.count)
        for (step, (a, b)) in zip(seen, expected).enumerated() {
            #expect(a == b, "update \(step + 1): (scale, growth, hysteresis) \(a) vs \(b)")
        }
    }

    @Test func theScaleStopsAtTheMinimumAndAConstantOneNeverMoves() {
        var dynamic = GradScaler.dynamic(initialScale: 2, minScale: 1, window: 5, hysteresis: 1)
        dynamic.update(foundInf: true)
        dynamic.update(foundInf: true)
        #expect(dynamic.scale == 1)
        var constant = GradScaler.constant(128)
        for foundInf in [true, false, true] { constant.update(foundInf: foundInf) }
        #expect(constant.scale == 128)
    }

    @Test func badScalerSettingsNameTheirFlag() {
        for (scaler, flag) in [(GradScaler.dynamic(initialScale: 8, minScale: 16), "--min-loss-scale"),
                               (.dynamic(window: 0), "--loss-scale-window"), (.dynamic(hysteresis: 0), "--hysteresis")] {
            #expect { try scaler.validate() } throws: { "\($0)".contains(flag) }
        }
    }

    @Test func theScalerStateRoundTripsUnderMegatronsNames() throws {
        var scaler = GradScaler.dynamic(initialScale: 64, window: 4)
        scaler.update(foundInf: false)
        scaler.update(foundInf: true)
        let json = try JSONEncoder().encode(scaler)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(Set(object.keys) == ["scale", "growth_tracker", "hysteresis_tracker"])
        let resumed = GradScaler.dynamic(window: 4).resuming(from: try JSONDecoder().decode(GradScaler.self, from: json))
        #expect(resumed == scaler)
    }

    // MARK: training

    /// bf16 parameters with fp32 main parameters learn as fp32 does, to bf16's rounding.
    @Test func bf16TracksFP32() throws {
        let fp32 = try DataParallelTests.train(dataParallelSize: 1)
        let bf16 = try DataParallelTests.train(dataParallelSize: 1, precision: Self.bf16)
        #expect(bf16.last!.loss < bf16.first!.loss - 0.2, "bf16 learns")
        for (step, (a, b)) in zip(fp32, bf16).enumerated() {
            #expect(abs(a.loss - b.loss) <= 0.01 * a.loss, "step \(step + 1): loss \(a.loss) (fp32) vs \(b.loss) (bf16)")
        }
        #expect(zip(fp32, bf16).contains { $0.loss != $1.loss }, "the rounding must show")
    }

    /// A loss scale too large for fp16 gradients skips updates, halving the scale after the second
    /// overflow (hysteresis 2), until the gradients fit; a small one trains as fp32 does.
    @Test func fp16SkipsOverflowingIterationsUntilTheScaleFits() throws {
        let high = try CheckpointTests.run(precision: Self.fp16(initialScale: 0x1p20))
        // This model's scaled gradients overflow fp16 above 2¹⁸: 2²⁰ overflows once (tolerated), then
        // halves to 2¹⁹ (overflows again) and 2¹⁸, where the updates start.
        #expect(high.skipped == [true, true, true, false, false, false])
        #expect(high.gradScaler?.scale == 0x1p18)
        #expect(high.steps.prefix(3).allSatisfy { $0.gradNorm.isNaN } && high.steps.dropFirst(3).allSatisfy { $0.gradNorm.isFinite },
                "no norm on an overflow")
        #expect(high.learningRates.prefix(4).allSatisfy { $0 == high.learningRates[0] }, "the schedule waits for an update")
        #expect(high.optimizerStep == 3, "Adam counts only the updates")
        let fp32 = try CheckpointTests.run()
        let low = try CheckpointTests.run(precision: Self.fp16(initialScale: 1024))
        #expect(low.skipped.allSatisfy { !$0 } && low.gradScaler?.scale == 1024)
        for (step, (a, b)) in zip(fp32.steps, low.steps).enumerated() {
            #expect(abs(a.loss - b.loss) <= 2e-3 * a.loss, "step \(step + 1): loss \(a.loss) (fp32) vs \(b.loss) (fp16)")
        }
    }

    /// Under the distributed optimizer each rank holds its shard of the main parameters and checks
    /// its shard of the gradients for overflow; under tensor and pipeline parallelism each holds its
    /// part of the model. The ranks agree on every skip, as one rank decides, and train as it does.
    @Test(arguments: [(2, 1, 1), (1, 2, 2)])
    func fp16OnSeveralRanksMatchesOneRank(layout: (dp: Int, tp: Int, pp: Int)) throws {
        var ddp = DistributedDataParallel.Settings()
        ddp.useDistributedOptimizer = layout.dp > 1
        let precision = Self.fp16(initialScale: 0x1p19, window: 4)
        let single = try DataParallelTests.train(dataParallelSize: 1, precision: precision)
        #expect(single.contains { $0.gradNorm.isNaN } && single.contains { !$0.gradNorm.isNaN },
                "the run must both skip and update for the comparison to mean anything")
        let several = try DataParallelTests.train(dataParallelSize: layout.dp, tensorParallelSize: layout.tp, pipelineParallelSize: layout.pp,
                                                  sequenceParallel: layout.tp > 1, ddp: ddp, precision: precision)
        for (step, (a, b)) in zip(single, several).enumerated() {
            #expect(a.gradNorm.isNaN == b.gradNorm.isNaN, "\(layout), step \(step + 1): skipped on one layout only")
            #expect(abs(a.loss - b.loss) <= 1e-4 * a.loss, "\(layout), step \(step + 1): loss \(a.loss) vs \(b.loss)")
        }
    }

    // MARK: checkpoints

    /// The checkpoint keeps the fp32 main parameters (Megatron's fp32_param) beside the model's
    /// rounded ones, and the scaler's state: a resumed run continues bit for bit.
    @Test(arguments: [DType.bfloat16, .float16])
    func aMixedPrecisionRunResumesBitForBit(_ dtype: DType) throws {
        let precision: @Sendable (inout Optimizer.Settings) -> Void = dtype == .bfloat16 ? Self.bf16 : Self.fp16(initialScale: 0x1p17, window: 2)
        let directory = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try CheckpointTests.run(precision: precision)
        _ = try CheckpointTests.run(save: directory, format: .torch, exitInterval: 3, precision: precision)
        let resumed = try CheckpointTests.run(modelSeed: 99, load: directory, precision: precision)
        #expect(resumed.loaded == 3)
        for (step, (a, b)) in zip(straight.steps.dropFirst(3), resumed.steps).enumerated() {
            #expect(a.loss == b.loss && (a.gradNorm == b.gradNorm || a.gradNorm.isNaN && b.gradNorm.isNaN),
                    "iteration \(step + 4): \(a) vs \(b)")
        }
        #expect(CheckpointTests.differing(straight.parameters, resumed.parameters) == 0)
        #expect(straight.gradScaler == resumed.gradScaler)

        // In the files: the model holds the main parameters rounded, and they differ somewhere.
        let folder = Checkpoint.iterationDirectory(directory, iteration: 3)
        let model = try SafeTensors.read(folder.appendingPathComponent("model.safetensors")).tensors
        let optimizer = try SafeTensors.read(folder.appendingPathComponent("optimizer.safetensors")).tensors
        var rounded = 0, differing = 0
        for (name, entry) in model {
            let main = try #require(optimizer[name + ".fp32_param"], "\(name).fp32_param")
            let values = floats(entry.data), mainValues = floats(main.data)
            let narrow = try Tensor(mainValues, shape: [mainValues.count], on: CPUDevice(threads: 1))
            try narrow.round(to: dtype, on: CPUDevice(threads: 1))
            rounded += zip(narrow.toFloatArray(), values).filter { $0.bitPattern == $1.bitPattern }.count
            differing += zip(mainValues, values).filter { $0 != $1 }.count
            #expect(values.count == mainValues.count)
        }
        #expect(rounded == model.values.reduce(0) { $0 + $1.data.count / 4 }, "model weights = main weights rounded")
        #expect(differing > 0, "the main weights keep what rounding drops")
    }

    /// An fp32 checkpoint resumes under bf16: the model takes its weights rounded, and so do the main
    /// parameters (another initialisation, so only loading can make the run continue the saved one).
    @Test func anFP32CheckpointResumesUnderBF16() throws {
        let directory = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try CheckpointTests.run()
        _ = try CheckpointTests.run(save: directory, exitInterval: 3)
        let resumed = try CheckpointTests.run(modelSeed: 99, load: directory, precision: Self.bf16)
        #expect(resumed.loaded == 3 && resumed.steps.count == 3)
        for (step, (a, b)) in zip(straight.steps.dropFirst(3), resumed.steps).enumerated() {
            #expect(abs(a.loss - b.loss) <= 1e-3 * a.loss, "iteration \(step + 4): loss \(a.loss) (fp32) vs \(b.loss) (bf16)")
        }
        let check = try Tensor(resumed.parameters, shape: [resumed.parameters.count], on: CPUDevice(threads: 1))
        try check.round(to: .bfloat16, on: CPUDevice(threads: 1))
        #expect(CheckpointTests.differing(check.toFloatArray(), resumed.parameters) == 0, "the model's weights are bf16")
    }

    /// A dynamic scaler's state is saved and resumed; a constant one (--loss-scale) has none to save,
    /// and keeps its own scale when a checkpoint holds another's.
    @Test func onlyADynamicScalerIsSavedAndAConstantOneKeepsItsScale() throws {
        let directory = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try CheckpointTests.run(save: directory, exitInterval: 3, precision: Self.fp16(initialScale: 0x1p14, window: 1))
        #expect(try Checkpoint.progress(in: directory, iteration: 3).gradScaler?.scale == 0x1p17)
        let constant: @Sendable (inout Optimizer.Settings) -> Void = { settings in
            Self.fp16(initialScale: 1)(&settings)
            settings.gradScaler = .constant(1024)
        }
        let resumed = try CheckpointTests.run(load: directory, precision: constant)
        #expect(resumed.loaded == 3 && resumed.gradScaler == .constant(1024))

        let other = CheckpointTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: other) }
        _ = try CheckpointTests.run(save: other, exitInterval: 3, precision: constant)
        #expect(try Checkpoint.progress(in: other, iteration: 3).gradScaler == nil)
    }

    /// Under a constant scale an overflow is an error while --check-for-nan-in-loss-and-grad is on
    /// (Megatron's gradient check); under dynamic scaling it is the scaler's signal.
    @Test func anOverflowAtAConstantScaleStopsTheRun() throws {
        let constant: @Sendable (inout Optimizer.Settings) -> Void = { settings in
            Self.fp16(initialScale: 1)(&settings)
            settings.gradScaler = .constant(0x1p30)
        }
        #expect { try CheckpointTests.run(precision: constant) } throws: {
            "\($0)".contains("iteration 1: the gradients hold an inf or NaN at --loss-scale 1.0737418e+09")
        }
    }

    private func floats(_ data: Data) -> [Float] {
        data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}
