import Foundation
import MegatronCore
import Testing

func referenceGELU(_ u: Double) -> Double {
    0.5 * u * (1 + tanh(0.7978845608028654 * (u + 0.044715 * u * u * u)))
}

func referenceSiLU(_ u: Double) -> Double { u / (1 + exp(-u)) }

/// PyTorch's F.gelu (approximate='none').
func referenceExactGELU(_ u: Double) -> Double { 0.5 * u * (1 + erf(u / 2.0.squareRoot())) }

@Suite struct GELUTests {
    let rows = 4, cols = 9

    /// gelu(x + b) for rows of x.
    func reference(_ x: [Double], _ b: [Double]) -> [Double] {
        x.indices.map { referenceGELU(x[$0] + b[$0 % cols]) }
    }

    @Test func forwardMatchesReference() throws {
        var rng = TestRandom(seed: 10)
        let x = rng.floats(rows * cols, scale: 6), b = rng.floats(cols)
        let y = try GELU.forward(tensor(x, [rows, cols]), bias: tensor(b, [cols]), on: serial)
        expectClose(y.toFloatArray(), reference(x.doubles, b.doubles), tolerance: 1e-6, "gelu")
        let far = try GELU.forward(tensor([-30, -10, 0, 10, 30], [5]), bias: nil, on: serial).toFloatArray()
        #expect(far[2...] == [0, 10, 30])
        #expect(abs(far[0]) < 1e-30 && abs(far[1]) < 1e-30, "gelu(u) → 0 as u → −∞: \(far)")
    }

    /// Every 1/512 over [−12, 12]: the rational tanh under GELU is within 4.5e-7 of tanh, so
    /// |gelu − reference| ≤ ½·|u|·4.5e-7 plus the rounding of the result; the derivative, a rational
    /// fit of its own, is within 6.5e-7.
    /// Far out, the derivative must be exactly 0 and 1: a tanh that stopped short of ±1 would leave
    /// u·(1 − tanh²)·dz/du, which grows like u³.
    @Test func accurateAcrossTheRangeAndExactInTheTails() throws {
        let u = (-6144...6144).map { Float($0) / 512 }
        let y = try GELU.forward(tensor(u, [u.count]), bias: nil, on: serial).toFloatArray()
        let dx = try GELU.backward(tensor([Float](repeating: 1, count: u.count), [u.count]),
                                   input: tensor(u, [u.count]), bias: nil, gradBias: nil, on: serial).toFloatArray()
        for (i, ui) in u.enumerated() {
            let v = Double(ui), h = 1e-6
            let reference = referenceGELU(v)
            let slope = (referenceGELU(v + h) - referenceGELU(v - h)) / (2 * h)
            #expect(abs(Double(y[i]) - reference) <= 2.5e-7 * abs(v) + 6e-8 * abs(reference), "gelu(\(ui)) = \(y[i])")
            #expect(abs(Double(dx[i]) - slope) <= 6.5e-7, "gelu′(\(ui)) = \(dx[i]), not \(slope)")
        }
        let far: [Float] = [-1e4, -30, -6, 6, 30, 1e4]
        let farGrad = try GELU.backward(tensor([Float](repeating: 1, count: 6), [6]), input: tensor(far, [6]),
                                        bias: nil, gradBias: nil, on: serial).toFloatArray()
        #expect(farGrad == [0, 0, 0, 1, 1, 1])
    }

    /// The exact (erf) GELU every 1/512 over [−12, 12]: the rational erf is within 5e-7 of erf in fp32;
    /// its backward against the reference's central difference, and the fused bias's gradients
    /// against finite differences.
    @Test func exactGELUMatchesErf() throws {
        let u = (-6144...6144).map { Float($0) / 512 }
        let y = try GELU.forward(tensor(u, [u.count]), bias: nil, approximation: .none, on: serial).toFloatArray()
        let dx = try GELU.backward(tensor([Float](repeating: 1, count: u.count), [u.count]), input: tensor(u, [u.count]),
                                   bias: nil, gradBias: nil, approximation: .none, on: serial).toFloatArray()
        for (i, ui) in u.enumerated() {
            let v = Double(ui), h = 1e-6
            let reference = referenceExactGELU(v)
            let slope = (referenceExactGELU(v + h) - referenceExactGELU(v - h)) / (2 * h)
            #expect(abs(Double(y[i]) - reference) <= 2.5e-7 * abs(v) + 6e-8 * abs(reference), "gelu(\(ui)) = \(y[i])")
            #expect(abs(Double(dx[i]) - slope) <= 1e-6, "gelu′(\(ui)) = \(dx[i]), not \(slope)")
        }
        var rng = TestRandom(seed: 12)
        let x = rng.floats(rows * cols, scale: 4), b = rng.floats(cols), w = rng.floats(rows * cols)
        let exact = { (x: [Double], b: [Double]) in x.indices.map { referenceExactGELU(x[$0] + b[$0 % self.cols]) } }
        let db = tensor([Float](repeating: 0, count: cols), [cols])
        let dxBias = try GELU.backward(tensor(w, [rows, cols]), input: tensor(x, [rows, cols]), bias: tensor(b, [cols]),
                                       gradBias: db, approximation: .none, on: serial)
        expectClose(dxBias.toFloatArray(), finiteDifferences(x.doubles) { weightedSum(exact($0, b.doubles), w) },
                    tolerance: 1e-5, "dx")
        expectClose(db.toFloatArray(), finiteDifferences(b.doubles) { weightedSum(exact(x.doubles, $0), w) },
                    tolerance: 1e-5, "dbias")
    }

    @Test func backwardMatchesFiniteDifferences() throws {
        var rng = TestRandom(seed: 11)
        let x = rng.floats(rows * cols, scale: 4), b = rng.floats(cols), w = rng.floats(rows * cols)
        let db = tensor([Float](repeating: 0, count: cols), [cols])
        let dx = try GELU.backward(tensor(w, [rows, cols]), input: tensor(x, [rows, cols]), bias: tensor(b, [cols]),
                                   gradBias: db, on: serial)
        expectClose(dx.toFloatArray(), finiteDifferences(x.doubles) { weightedSum(reference($0, b.doubles), w) },
                    tolerance: 1e-5, "dx")
        expectClose(db.toFloatArray(), finiteDifferences(b.doubles) { weightedSum(reference(x.doubles, $0), w) },
                    tolerance: 1e-5, "dbias")
    }
}

@Suite struct SwiGLUTests {
    let rows = 3, f = 7

    func reference(_ x: [Double]) -> [Double] {
        (0 ..< rows * f).map { i in
            let r = i / f, c = i % f
            return referenceSiLU(x[r * 2 * f + c]) * x[r * 2 * f + f + c]
        }
    }

    @Test func forwardAndBackward() throws {
        var rng = TestRandom(seed: 12)
        let x = rng.floats(rows * 2 * f, scale: 4), w = rng.floats(rows * f)
        let y = try SwiGLU.forward(tensor(x, [rows, 2 * f]), on: serial)
        #expect(y.shape == [rows, f])
        expectClose(y.toFloatArray(), reference(x.doubles), tolerance: 1e-6, "swiglu")
        let dx = try SwiGLU.backward(tensor(w, [rows, f]), input: tensor(x, [rows, 2 * f]), on: serial)
        expectClose(dx.toFloatArray(), finiteDifferences(x.doubles) { weightedSum(reference($0), w) },
                    tolerance: 1e-5, "dx")
    }

    @Test func oddWidthIsAnError() {
        #expect(throws: TensorError.self) { try SwiGLU.forward(tensor([1, 2, 3], [1, 3]), on: serial) }
    }
}

@Suite struct ElementwiseTests {
    @Test func addBiasAndColumnSums() throws {
        var rng = TestRandom(seed: 13)
        let x = rng.floats(12), b = rng.floats(4)
        let t = tensor(x, [3, 4])
        try Elementwise.addBias(t, tensor(b, [4]), on: serial)
        expectClose(t.toFloatArray(), x.indices.map { Double(x[$0]) + Double(b[$0 % 4]) }, tolerance: 1e-7, "bias add")
        let sums = tensor([1, 1, 1, 1], [4])
        try Elementwise.accumulateColumnSums(of: tensor(x, [3, 4]), into: sums, on: serial)
        expectClose(sums.toFloatArray(), (0 ..< 4).map { c in 1 + (0 ..< 3).map { Double(x[$0 * 4 + c]) }.reduce(0, +) },
                    tolerance: 1e-6, "column sums")
    }

    @Test func globalNormPropagatesNaN() throws {
        var rng = TestRandom(seed: 14)
        let a = rng.floats(300_000), b = rng.floats(17)
        let norm = try Elementwise.globalL2Norm([tensor(a, [a.count], on: parallel), tensor(b, [17], on: parallel)], on: parallel)
        let expected = (a + b).map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        #expect(abs(norm - expected) / expected < 1e-6)
        let t = tensor(a, [a.count], on: parallel)
        t.floats[299_999] = .nan
        #expect(try Elementwise.globalL2Norm([t], on: parallel).isNaN)
    }

    @Test func addAxpyScaleAgreeAcrossThreads() throws {
        var rng = TestRandom(seed: 15)
        let n = 400_000
        let a = rng.floats(n), b = rng.floats(n)
        let sum = try Elementwise.add(tensor(a, [n], on: parallel), tensor(b, [n], on: parallel), on: parallel)
        #expect(sum.toFloatArray() == zip(a, b).map { $0 + $1 })
        let y = tensor(a, [n], on: parallel)
        try Elementwise.axpy(y, tensor(b, [n], on: parallel), alpha: 0.5, on: parallel)
        try Elementwise.scale(y, by: 2, on: parallel)
        expectClose(y.toFloatArray(), zip(a, b).map { 2 * (Double($0) + 0.5 * Double($1)) }, tolerance: 1e-6, "axpy, scale")
    }
}
