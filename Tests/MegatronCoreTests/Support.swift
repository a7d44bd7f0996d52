import MegatronCore
import Testing

/// Deterministic pseudo-random numbers for test inputs (SplitMix64).
struct TestRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    mutating func float(_ scale: Float = 1) -> Float {
        Float(Double(next() >> 11) / Double(1 << 53) * 2 - 1) * scale
    }

    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0 ..< n).map { _ in float(scale) } }

    mutating func int(below n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// One thread: kernels take their serial path. `parallel` forces splits even on small tensors is not
/// possible (splits need ≥ 128K elements), so multi-thread agreement is tested on large shapes.
let serial = CPUDevice(threads: 1)
let parallel = CPUDevice(threads: 2)

func tensor(_ values: [Float], _ shape: [Int], on device: CPUDevice = serial) -> Tensor {
    try! Tensor(values, shape: shape, on: device)
}

func ids(_ values: [Int], on device: CPUDevice = serial) -> Tensor {
    try! Tensor(int32s: values.map { Int32($0) }, shape: [values.count], on: device)
}

/// Largest |a − b| over the largest |b| (a relative error robust to small entries), with a floor.
func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "relativeError: \(a.count) vs \(b.count) values")
    let diff = zip(a, b).map { abs(Double($0) - $1) }.max() ?? 0
    let scale = max(b.map(abs).max() ?? 0, 1e-12)
    return diff / scale
}

func expectClose(_ a: [Float], _ b: [Double], tolerance: Double, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    let error = relativeError(a, b)
    #expect(error <= tolerance, "\(what): relative error \(error) > \(tolerance)", sourceLocation: sourceLocation)
}

/// Central finite differences of a Double function: ∂f/∂x_i ≈ (f(x + h·e_i) − f(x − h·e_i)) / 2h.
/// In double precision with h = 1e-6 the truncation and rounding errors are about 1e-9, far below
/// the fp32 kernels' own error, so the comparison tests the kernel, not the reference.
func finiteDifferences(_ x: [Double], h: Double = 1e-6, _ f: ([Double]) -> Double) -> [Double] {
    var x = x
    return x.indices.map { i in
        let saved = x[i]
        x[i] = saved + h
        let plus = f(x)
        x[i] = saved - h
        let minus = f(x)
        x[i] = saved
        return (plus - minus) / (2 * h)
    }
}

/// Σ_k w_k·y_k: a scalar loss whose gradient with respect to y is w, for backward checks.
func weightedSum(_ y: [Double], _ w: [Float]) -> Double {
    zip(y, w).reduce(0) { $0 + $1.0 * Double($1.1) }
}

extension Array where Element == Float {
    var doubles: [Double] { map(Double.init) }
}
