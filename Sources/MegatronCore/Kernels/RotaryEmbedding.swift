import CKernels

#if canImport(Glibc)
import Glibc
#endif

/// Rotary position embedding (Su et al., 2021) in Megatron's default non-interleaved layout: of
/// each head's first `rotaryDim` features, halves x1, x2 rotate by angle θ_{t,i} = t·base^(−2i/rotaryDim):
/// y = [x1·cos θ − x2·sin θ | x2·cos θ + x1·sin θ]. The tables are computed in fp32 as Megatron's
/// `RotaryEmbedding` does (fp32 inverse frequencies, fp32 outer product).
public struct RotaryEmbedding: Sendable {
    public let rotaryDim: Int
    public let maxPositions: Int
    let cosTable: Tensor
    let sinTable: Tensor

    /// Tables for positions 0 ..< maxPositions; `rotaryDim` = kv-channels × rotary-percent, even;
    /// `scalingFactor` applies Llama 3.1's scaling (`scaledInverseFrequency`).
    public init(rotaryDim: Int, base: Float = 10000, scalingFactor: Float? = nil, maxPositions: Int, on device: CPUDevice) throws {
        guard rotaryDim > 0, rotaryDim % 2 == 0 else {
            throw TensorError("RotaryEmbedding: rotary dimension \(rotaryDim) must be positive and even")
        }
        self.rotaryDim = rotaryDim
        self.maxPositions = maxPositions
        let half = rotaryDim / 2
        cosTable = try Tensor(shape: [maxPositions, half], on: device, zeroed: false)
        sinTable = try Tensor(shape: [maxPositions, half], on: device, zeroed: false)
        let inverseFrequency = (0 ..< half).map { i in
            let frequency = 1 / powf(base, Float(2 * i) / Float(rotaryDim))
            return scalingFactor.map { Self.scaledInverseFrequency(frequency, factor: $0) } ?? frequency
        }
        for t in 0 ..< maxPositions {
            for i in 0 ..< half {
                let angle = Float(t) * inverseFrequency[i]
                cosTable.floats[t * half + i] = cosf(angle)
                sinTable.floats[t * half + i] = sinf(angle)
            }
        }
    }

    /// Llama 3.1's rotary scaling of one inverse frequency f (Megatron's `--use-rope-scaling`, with its
    /// fixed low/high frequency factors 1 and 4 over an original context of 8192): wavelengths
    /// λ = 2π/f longer than 8192 slow down by `factor`, those shorter than 8192/4 stay, and between
    /// them f blends as (1 − s)·f/factor + s·f with s = (8192/λ − 1) / (4 − 1). In fp32, as Megatron.
    public static func scaledInverseFrequency(_ f: Float, factor: Float) -> Float {
        let originalContext: Float = 8192, lowFrequencyFactor: Float = 1, highFrequencyFactor: Float = 4
        let wavelength = 2 * Float.pi / f
        if wavelength < originalContext / highFrequencyFactor { return f }
        if wavelength > originalContext / lowFrequencyFactor { return f / factor }
        let smooth = (originalContext / wavelength - lowFrequencyFactor) / (highFrequencyFactor - lowFrequencyFactor)
        return (1 - smooth) * f / factor + smooth * f
    }

    /// Rotates in place the heads at columns `headOffsets` of each token row of `x` [tokens, width],
    /// token t at position positions[t]; `inverse` rotates back, which is the backward pass.
    public func apply(to x: Tensor, headOffsets: [Int], positions: Tensor, inverse: Bool = false,
                      on device: CPUDevice) throws {
        try x.expect(dtype: .float32, "RotaryEmbedding", "x")
        try positions.expect(shape: [x.rows], "RotaryEmbedding", "positions")
        try positions.expect(dtype: .int32, "RotaryEmbedding", "positions")
        guard headOffsets.allSatisfy({ $0 >= 0 && $0 + rotaryDim <= x.columns }) else {
            throw TensorError("RotaryEmbedding: head offsets \(headOffsets) + rotary dimension \(rotaryDim) exceed the \(x.columns) columns of \(x.shape)")
        }
        let bad = UnsafeBufferPointer(start: positions.int32s, count: positions.count).first { $0 < 0 || Int($0) >= maxPositions }
        if let bad { throw TensorError("RotaryEmbedding: position \(bad) outside 0 ..< \(maxPositions)") }
        // In memory order: Megatron's QKV rows interleave [queries | key | value] per group, and
        // walking the queries of every group and then the keys crosses each row twice with gaps,
        // which the hardware prefetcher does not follow; [32768, 2304] went 19.8 → 9.9 ms sorted.
        let offsets = headOffsets.sorted(), rope = self
        device.parallelRows(x.rows, columns: headOffsets.count * rotaryDim) { r, _ in
            mg_rope_apply(x.floats + r.lowerBound * x.columns, x.columns, offsets, offsets.count, r.count,
                          rope.rotaryDim, positions.int32s + r.lowerBound, rope.cosTable.floats, rope.sinTable.floats,
                          inverse ? -1 : 1)
        }
    }
}
