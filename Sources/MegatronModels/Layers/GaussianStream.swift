#if canImport(Glibc)
import Glibc
#endif

/// Normal N(0, 1) samples for initialisation (and the uniforms they come from, for sampling text):
/// SplitMix64 uniforms through the Box–Muller transform,
/// in double precision. Each (seed, stream) pair is an independent, reproducible sequence, so a
/// parameter's initial values depend only on the seed and the parameter, never on the layout.
struct GaussianStream {
    private var state: UInt64
    private var spare: Float?

    init(seed: UInt64, stream: UInt64) {
        state = seed &* 0x9E37_79B9_7F4A_7C15 ^ (stream &+ 1) &* 0xD1B5_4A32_D192_ED03
    }

    mutating func uniform() -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return (Double(z >> 11) + 1) * 0x1p-53  // (0, 1]
    }

    mutating func next() -> Float {
        if let s = spare {
            spare = nil
            return s
        }
        let radius = (-2 * log(uniform())).squareRoot(), angle = 2 * Double.pi * uniform()
        spare = Float(radius * sin(angle))
        return Float(radius * cos(angle))
    }
}
