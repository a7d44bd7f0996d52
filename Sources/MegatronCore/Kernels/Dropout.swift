import CKernels

/// A counter-based random stream for dropout: element i of a tensor is kept when 16 bits of
/// Philox4x32-10 under key `seed`, from block 32·⌊i / 256⌋ + i mod 32 of `stream` (half i / 32 mod 8
/// of its 128 bits, see Sources/CKernels/philox.c), scaled by 2¹⁶, are below p_keep·2³². Nothing is stored:
/// the backward pass and activation recomputation regenerate the same mask from (seed, stream, i).
/// Give every dropout site of every step its own `stream`.
public struct PhiloxStream: Sendable, Hashable {
    public let seed: UInt64
    public let stream: UInt64

    public init(seed: UInt64, stream: UInt64) {
        self.seed = seed
        self.stream = stream
    }
}

/// Inverted dropout: y = x·m/(1 − p) with m ~ Bernoulli(1 − p) from a `PhiloxStream`.
public enum Dropout {
    /// y = dropout(x). The backward is the same call on the gradient with the same stream. When
    /// `input` holds rows firstRow ..< firstRow + rows of a whole activation (a sequence-parallel
    /// shard), it gets those rows' masks.
    public static func apply(_ input: Tensor, probability p: Float, rng: PhiloxStream, firstRow: Int = 0,
                             on device: CPUDevice) throws -> Tensor {
        try input.expect(dtype: .float32, "Dropout", "input")
        try validate(p)
        let y = try Tensor(shape: input.shape, on: device, zeroed: false)
        let first = firstRow * input.columns
        device.parallelElements(input.count) { r in
            mg_dropout(y.floats + r.lowerBound, input.floats + r.lowerBound, r.count, UInt64(first + r.lowerBound),
                       1 - p, rng.seed, rng.stream)
        }
        return y
    }

    static func validate(_ p: Float) throws {
        guard p >= 0, p < 1 else { throw TensorError("dropout probability \(p): expected 0 ≤ p < 1") }
    }
}

/// Megatron's fused bias-dropout-add closing each sub-layer: out = residual + dropout(x + bias).
public enum BiasDropoutAdd {
    /// x [..., h], bias [h] or nil, residual [..., h] → out [..., h]; the rows are rows firstRow ...
    /// of the whole activation, for their dropout masks.
    public static func forward(_ input: Tensor, bias: Tensor?, residual: Tensor, probability p: Float,
                               rng: PhiloxStream, firstRow: Int = 0, on device: CPUDevice) throws -> Tensor {
        try input.expect(dtype: .float32, "BiasDropoutAdd", "input")
        try residual.expect(shape: input.shape, "BiasDropoutAdd", "residual")
        try bias?.expect(shape: [input.columns], "BiasDropoutAdd", "bias")
        try Dropout.validate(p)
        let out = try Tensor(shape: input.shape, on: device, zeroed: false)
        let cols = input.columns
        device.parallelRows(input.rows, columns: cols) { r, _ in
            let o = r.lowerBound * cols
            mg_bias_dropout_add(out.floats + o, input.floats + o, bias?.floats, residual.floats + o,
                                firstRow + r.lowerBound, r.count, cols, 1 - p, rng.seed, rng.stream)
        }
        return out
    }

    /// Gradient for x (the residual's is dout itself): dx = dropout(dout) with the forward's stream;
    /// adds Σ_rows dx into `gradBias` when given.
    public static func backward(_ gradOutput: Tensor, gradBias: Tensor?, probability p: Float,
                                rng: PhiloxStream, firstRow: Int = 0, on device: CPUDevice) throws -> Tensor {
        try gradBias?.expect(shape: [gradOutput.columns], "BiasDropoutAdd.backward", "gradBias")
        let dx = p == 0 ? gradOutput : try Dropout.apply(gradOutput, probability: p, rng: rng, firstRow: firstRow, on: device)
        if let gradBias { try Elementwise.accumulateColumnSums(of: dx, into: gradBias, on: device) }
        return dx
    }
}
