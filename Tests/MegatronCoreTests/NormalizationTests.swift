import MegatronCore
import Testing

/// Double-precision LayerNorm reference, straight from the definition.
func referenceLayerNorm(_ x: [Double], _ gamma: [Double], _ beta: [Double]?, cols: Int, eps: Double) -> [Double] {
    var y = [Double](repeating: 0, count: x.count)
    for r in 0 ..< x.count / cols {
        let row = x[r * cols ..< (r + 1) * cols]
        let mean = row.reduce(0, +) / Double(cols)
        let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)
        for c in 0 ..< cols {
            y[r * cols + c] = (x[r * cols + c] - mean) / (variance + eps).squareRoot() * gamma[c] + (beta?[c] ?? 0)
        }
    }
    return y
}

func referenceRMSNorm(_ x: [Double], _ gamma: [Double], cols: Int, eps: Double) -> [Double] {
    var y = [Double](repeating: 0, count: x.count)
    for r in 0 ..< x.count / cols {
        let meanSquare = x[r * cols ..< (r + 1) * cols].map { $0 * $0 }.reduce(0, +) / Double(cols)
        for c in 0 ..< cols { y[r * cols + c] = x[r * cols + c] / (meanSquare + eps).squareRoot() * gamma[c] }
    }
    return y
}

@Suite struct LayerNormTests {
    let rows = 6, cols = 13, eps: Float = 1e-5

    @Test func forwardMatchesReference() throws {
        var rng = TestRandom(seed: 1)
        let x = rng.floats(rows * cols, scale: 3), g = rng.floats(cols), b = rng.floats(cols)
        let (y, saved) = try LayerNorm.forward(tensor(x, [rows, cols]), weight: tensor(g, [cols]),
                                               bias: tensor(b, [cols]), epsilon: eps, on: serial)
        let expected = referenceLayerNorm(x.doubles, g.doubles, b.doubles, cols: cols, eps: Double(eps))
        expectClose(y.toFloatArray(), expected, tolerance: 1e-6, "LayerNorm output")
        #expect(saved.mean.shape == [rows] && saved.rstd.shape == [rows])
    }

    @Test func backwardMatchesFiniteDifferences() throws {
        var rng = TestRandom(seed: 2)
        let x = rng.floats(rows * cols, scale: 2), g = rng.floats(cols), b = rng.floats(cols), w = rng.floats(rows * cols)
        let (_, saved) = try LayerNorm.forward(tensor(x, [rows, cols]), weight: tensor(g, [cols]),
                                               bias: tensor(b, [cols]), epsilon: eps, on: serial)
        let dg = tensor([Float](repeating: 0, count: cols), [cols]), db = tensor([Float](repeating: 0, count: cols), [cols])
        let dx = try LayerNorm.backward(tensor(w, [rows, cols]), input: tensor(x, [rows, cols]), weight: tensor(g, [cols]),
                                        saved: saved, gradWeight: dg, gradBias: db, on: serial)
        let e = Double(eps)
        expectClose(dx.toFloatArray(), finiteDifferences(x.doubles) {
            weightedSum(referenceLayerNorm($0, g.doubles, b.doubles, cols: cols, eps: e), w) }, tolerance: 1e-4, "dx")
        expectClose(dg.toFloatArray(), finiteDifferences(g.doubles) {
            weightedSum(referenceLayerNorm(x.doubles, $0, b.doubles, cols: cols, eps: e), w) }, tolerance: 1e-5, "dgamma")
        expectClose(db.toFloatArray(), finiteDifferences(b.doubles) {
            weightedSum(referenceLayerNorm(x.doubles, g.doubles, $0, cols: cols, eps: e), w) }, tolerance: 1e-5, "dbeta")
    }

    @Test func backwardAccumulatesIntoGivenGradients() throws {
        var rng = TestRandom(seed: 3)
        let x = tensor(rng.floats(rows * cols), [rows, cols]), g = tensor(rng.floats(cols), [cols])
        let dy = tensor(rng.floats(rows * cols), [rows, cols])
        let (_, saved) = try LayerNorm.forward(x, weight: g, bias: nil, epsilon: eps, on: serial)
        let dg1 = tensor([Float](repeating: 0, count: cols), [cols])
        let fresh = try LayerNorm.backward(dy, input: x, weight: g, saved: saved, gradWeight: dg1, gradBias: nil, on: serial)
        let prior = rng.floats(rows * cols)
        let accumulated = tensor(prior, [rows, cols])
        let dg2 = tensor([Float](repeating: 1, count: cols), [cols])
        _ = try LayerNorm.backward(dy, input: x, weight: g, saved: saved, gradWeight: dg2, gradBias: nil,
                                   accumulatingInto: accumulated, on: serial)
        expectClose(accumulated.toFloatArray(), zip(prior, fresh.toFloatArray()).map { Double($0 + $1) }, tolerance: 1e-6, "dx += ")
        expectClose(dg2.toFloatArray(), dg1.toFloatArray().map { Double($0) + 1 }, tolerance: 1e-6, "dgamma += ")
    }

    /// A fresh gradient comes from the caching allocator and may hold a stale NaN: it must be
    /// overwritten, not scaled by zero.
    @Test func freshGradientIgnoresStaleMemory() throws {
        let device = CPUDevice(threads: 1)
        var rng = TestRandom(seed: 7)
        let x = tensor(rng.floats(rows * cols), [rows, cols], on: device), g = tensor(rng.floats(cols), [cols], on: device)
        let dy = tensor(rng.floats(rows * cols), [rows, cols], on: device)
        let (_, saved) = try LayerNorm.forward(x, weight: g, bias: nil, epsilon: eps, on: device)
        let (_, rstd) = try RMSNorm.forward(x, weight: g, epsilon: eps, on: device)
        for _ in 0 ..< 2 {
            do {
                let stale = try Tensor(shape: [rows, cols], on: device)
                for i in 0 ..< stale.count { stale.floats[i] = .nan }
            }  // returned to the allocator's cache, NaNs and all
            let dx = try LayerNorm.backward(dy, input: x, weight: g, saved: saved, gradWeight: try Tensor(shape: [cols], on: device),
                                            gradBias: nil, on: device)
            #expect(dx.toFloatArray().allSatisfy { $0.isFinite })
            do {
                let stale = try Tensor(shape: [rows, cols], on: device)
                for i in 0 ..< stale.count { stale.floats[i] = .nan }
            }
            let dxRMS = try RMSNorm.backward(dy, input: x, weight: g, rstd: rstd, gradWeight: try Tensor(shape: [cols], on: device), on: device)
            #expect(dxRMS.toFloatArray().allSatisfy { $0.isFinite })
        }
    }

    @Test func shapeMismatchNamesBothShapes() {
        let x = tensor([Float](repeating: 0, count: 12), [3, 4])
        #expect {
            _ = try LayerNorm.forward(x, weight: tensor([1, 2, 3], [3]), bias: nil, epsilon: eps, on: serial)
        } throws: { error in
            "\(error)" == "LayerNorm: weight has shape [3], expected [4]"
        }
    }

    @Test func threadsAgreeOnLargeInputs() throws {
        var rng = TestRandom(seed: 4)
        let (r, c) = (512, 768)
        let xv = rng.floats(r * c), gv = rng.floats(c), dyv = rng.floats(r * c)
        var results: [[Float]] = []
        for device in [serial, parallel] {
            let x = tensor(xv, [r, c], on: device), g = tensor(gv, [c], on: device)
            let (y, saved) = try LayerNorm.forward(x, weight: g, bias: g, epsilon: eps, on: device)
            let dg = try Tensor(shape: [c], on: device), db = try Tensor(shape: [c], on: device)
            let dx = try LayerNorm.backward(tensor(dyv, [r, c], on: device), input: x, weight: g, saved: saved,
                                            gradWeight: dg, gradBias: db, on: device)
            results.append(y.toFloatArray() + dx.toFloatArray() + dg.toFloatArray() + db.toFloatArray())
        }
        expectClose(results[1], results[0].doubles, tolerance: 1e-6, "2 threads vs 1")
    }
}

@Suite struct RMSNormTests {
    let rows = 5, cols = 11, eps: Float = 1e-6

    @Test func forwardMatchesReference() throws {
        var rng = TestRandom(seed: 5)
        let x = rng.floats(rows * cols, scale: 3), g = rng.floats(cols)
        let (y, _) = try RMSNorm.forward(tensor(x, [rows, cols]), weight: tensor(g, [cols]), epsilon: eps, on: serial)
        expectClose(y.toFloatArray(), referenceRMSNorm(x.doubles, g.doubles, cols: cols, eps: Double(eps)),
                    tolerance: 1e-6, "RMSNorm output")
    }

    @Test func backwardMatchesFiniteDifferences() throws {
        var rng = TestRandom(seed: 6)
        let x = rng.floats(rows * cols, scale: 2), g = rng.floats(cols), w = rng.floats(rows * cols)
        let (_, rstd) = try RMSNorm.forward(tensor(x, [rows, cols]), weight: tensor(g, [cols]), epsilon: eps, on: serial)
        let dg = tensor([Float](repeating: 0, count: cols), [cols])
        let dx = try RMSNorm.backward(tensor(w, [rows, cols]), input: tensor(x, [rows, cols]), weight: tensor(g, [cols]),
                                      rstd: rstd, gradWeight: dg, on: serial)
        let e = Double(eps)
        expectClose(dx.toFloatArray(), finiteDifferences(x.doubles) {
            weightedSum(referenceRMSNorm($0, g.doubles, cols: cols, eps: e), w) }, tolerance: 1e-4, "dx")
        expectClose(dg.toFloatArray(), finiteDifferences(g.doubles) {
            weightedSum(referenceRMSNorm(x.doubles, $0, cols: cols, eps: e), w) }, tolerance: 1e-5, "dgamma")
    }
}
