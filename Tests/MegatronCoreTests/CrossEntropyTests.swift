import Foundation
import MegatronCore
import Testing

@Suite struct CrossEntropyTests {
    func reference(_ z: [Double], _ targets: [Int], vocab: Int) -> [Double] {
        targets.indices.map { r in
            let row = z[r * vocab ..< (r + 1) * vocab]
            let m = row.max()!
            return m + log(row.map { exp($0 - m) }.reduce(0, +)) - z[r * vocab + targets[r]]
        }
    }

    @Test func lossAndFusedGradientMatchReference() throws {
        var rng = TestRandom(seed: 50)
        let (rows, vocab) = (5, 37)
        let z = rng.floats(rows * vocab, scale: 8), targets = (0 ..< rows).map { _ in rng.int(below: vocab) }
        let weights = rng.floats(rows)
        let logits = tensor(z, [rows, vocab])
        let forwardOnly = try CrossEntropy.forward(logits: logits, targets: ids(targets), on: serial)
        #expect(logits.toFloatArray() == z, "forward leaves logits untouched")
        let expected = reference(z.doubles, targets, vocab: vocab)
        expectClose(forwardOnly.toFloatArray(), expected, tolerance: 1e-6, "loss")
        let losses = try CrossEntropy.forwardBackward(logits: logits, targets: ids(targets), gradWeights: tensor(weights, [rows]), on: serial)
        expectClose(losses.toFloatArray(), expected, tolerance: 1e-6, "fused loss")
        let fd = finiteDifferences(z.doubles) { weightedSum(reference($0, targets, vocab: vocab), weights) }
        expectClose(logits.toFloatArray(), fd, tolerance: 1e-5, "dlogits")
    }

    @Test func extremeLogitsStayFinite() throws {
        let logits = tensor([1000, -1000, 0, -1e30, 1e30, 3], [2, 3])
        let losses = try CrossEntropy.forwardBackward(logits: logits, targets: ids([0, 1]), gradWeights: tensor([1, 1], [2]), on: serial)
        expectClose(losses.toFloatArray(), [0, 0], tolerance: 1e-6, "confident rows")
        #expect(logits.toFloatArray().allSatisfy { $0.isFinite })
    }

    @Test func targetOutsideVocabularyIsNamed() {
        #expect {
            _ = try CrossEntropy.forward(logits: tensor([0, 0, 0, 0], [2, 2]), targets: ids([1, 2]), on: serial)
        } throws: { "\($0)" == "CrossEntropy: target 2 at row 1 is outside the vocabulary of 2" }
    }
}

@Suite struct OptimizerTests {
    @Test func adamWMatchesReferenceOverSteps() throws {
        var rng = TestRandom(seed: 51)
        let n = 10
        var p = rng.floats(n).doubles, m = [Double](repeating: 0, count: n), v = m
        let param = tensor(p.map(Float.init), [n]), expAvg = try Tensor(shape: [n], on: serial), expAvgSq = try Tensor(shape: [n], on: serial)
        let h = AdamW.Hyperparameters(learningRate: 1e-2, weightDecay: 0.1)
        for step in 1 ... 5 {
            let g = rng.floats(n)
            try AdamW.update(param: param, grad: tensor(g.map { $0 * 4 }, [n]), expAvg: expAvg, expAvgSq: expAvgSq,
                             step: step, h, gradScale: 0.25, on: serial)
            // The kernel, like Megatron's fused Adam, takes β in fp32 and forms 1 − β in fp32.
            let (b1, b2) = (Double(Float(0.9)), Double(Float(0.999)))
            let (c1, c2) = (Double(1 - Float(0.9)), Double(1 - Float(0.999)))
            for i in 0 ..< n {
                m[i] = b1 * m[i] + c1 * Double(g[i])
                v[i] = b2 * v[i] + c2 * Double(g[i]) * Double(g[i])
                let mHat = m[i] / (1 - pow(b1, Double(step))), vHat = v[i] / (1 - pow(b2, Double(step)))
                p[i] -= 1e-2 * (mHat / (vHat.squareRoot() + 1e-8) + 0.1 * p[i])
            }
        }
        expectClose(param.toFloatArray(), p, tolerance: 1e-5, "params")
        expectClose(expAvg.toFloatArray(), m, tolerance: 1e-5, "exp_avg")
        expectClose(expAvgSq.toFloatArray(), v, tolerance: 1e-5, "exp_avg_sq")
    }

    /// The loss scaler's pass: each gradient rounded to the buffer's precision, checked, then scaled;
    /// an fp16 overflow (65520 rounds to inf) is found before the scaling could hide it.
    @Test(arguments: [DType.float32, .float16, .bfloat16])
    func unscalingRoundsChecksAndScales(precision: DType) throws {
        var rng = TestRandom(seed: 81)
        let finite = rng.floats(100_000, scale: 1000)
        let grads = tensor(finite, [finite.count], on: parallel)
        #expect(try !LossScaling.unscale(grads, by: 0x1p-10, roundingTo: precision, on: parallel))
        let rounded = tensor(finite, [finite.count])
        try rounded.round(to: precision, on: serial)
        #expect(grads.toFloatArray() == rounded.toFloatArray().map { $0 * 0x1p-10 })
        let overflowing = tensor([1, 65520, 2], [3])
        #expect(try LossScaling.unscale(overflowing, by: 0x1p-20, roundingTo: precision, on: serial) == (precision == .float16))
        let nan = tensor([1, .nan], [2])
        #expect(try LossScaling.unscale(nan, by: 1, roundingTo: precision, on: serial))
    }

    @Test func sgdWithMomentumMatchesTorchSemantics() throws {
        let param = tensor([1, -2], [2]), buffer = try Tensor(shape: [2], on: serial)
        try SGD.update(param: param, grad: tensor([0.5, 0.5], [2]), momentumBuffer: buffer, firstStep: true,
                       learningRate: 0.1, momentum: 0.9, weightDecay: 0.1, on: serial)
        // g = 0.5 + 0.1·p = [0.6, 0.3]; buf = g; p -= 0.1·buf
        expectClose(param.toFloatArray(), [0.94, -2.03], tolerance: 1e-6, "first step")
        try SGD.update(param: param, grad: tensor([0.5, 0.5], [2]), momentumBuffer: buffer, firstStep: false,
                       learningRate: 0.1, momentum: 0.9, weightDecay: 0.1, on: serial)
        // g = [0.594, 0.297]; buf = 0.9·[0.6, 0.3] + g = [1.134, 0.567]
        expectClose(param.toFloatArray(), [0.94 - 0.1134, -2.03 - 0.0567], tolerance: 1e-6, "second step")
    }
}
