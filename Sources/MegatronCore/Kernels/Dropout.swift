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

/// Where a tensor's rows lie in the whole activation whose dropout masks they take: runs of rows,
/// `count` rows of the tensor from row `local` being rows `whole` ..< whole + count of the whole.
/// A sequence-parallel shard is one run; a context-parallel rank's rows are one per sequence chunk.
public struct DropoutRows: Sendable, Equatable {
    public struct Run: Sendable, Equatable {
        public let local: Int, whole: Int, count: Int
        public init(local: Int, whole: Int, count: Int) {
            self.local = local
            self.whole = whole
            self.count = count
        }
    }

    public let runs: [Run]

    public init(_ runs: [Run]) { self.runs = runs }

    /// `count` rows that are rows firstRow ..< firstRow + count of the whole.
    public static func contiguous(from firstRow: Int, count: Int) -> DropoutRows {
        DropoutRows([Run(local: 0, whole: firstRow, count: count)])
    }

    /// Throws unless the runs cover `tensor`'s rows in order.
    func check(_ tensor: Tensor, _ op: String) throws {
        var next = 0
        for run in runs {
            guard run.local == next, run.count >= 0, run.whole >= 0 else { next = -1; break }
            next += run.count
        }
        guard next == tensor.rows else {
            throw TensorError("\(op): dropout rows \(runs) do not cover the \(tensor.rows) rows in order")
        }
    }
}

/// Inverted dropout: y = x·m/(1 − p) with m ~ Bernoulli(1 − p) from a `PhiloxStream`.
public enum Dropout {
    /// y = dropout(x). The backward is the same call on the gradient with the same stream. When
    /// `input` holds rows firstRow ..< firstRow + rows of a whole activation (a sequence-parallel
    /// shard), it gets those rows' masks.
    public static func apply(_ input: Tensor, probability p: Float, rng: PhiloxStream, firstRow: Int = 0,
                             on device: CPUDevice) throws -> Tensor {
        try apply(input, probability: p, rng: rng, rows: .contiguous(from: firstRow, count: input.rows), on: device)
    }

    /// y = dropout(x), each row of `input` with the mask of its row of the whole activation (`rows`).
    public static func apply(_ input: Tensor, probability p: Float, rng: PhiloxStream, rows: DropoutRows,
                             on device: CPUDevice) throws -> Tensor {
        try input.expect(dtype: .float32, "Dropout", "input")
        try validate(p)
        try rows.check(input, "Dropout")
        let y = try Tensor(shape: input.shape, on: device, zeroed: false)
        let cols = input.columns
        for run in rows.runs {
            let local = run.local * cols, whole = run.whole * cols
            device.parallelElements(run.count * cols) { r in
                mg_dropout(y.floats + local + r.lowerBound, input.floats + local + r.lowerBound, r.count, UInt64(whole + r.lowerBound),
                           1 - p, rng.seed, rng.stream)
            }
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
        try forward(input, bias: bias, residual: residual, probability: p, rng: rng, rows: .contiguous(from: firstRow, count: input.rows),
                    on: device)
    }

    /// `forward`, each row with the mask of its row of the whole activation (`rows`).
    public static func forward(_ input: Tensor, bias: Tensor?, residual: Tensor, probability p: Float,
                               rng: PhiloxStream, rows: DropoutRows, on device: CPUDevice) throws -> Tensor {
        try input.expect(dtype: .float32, "BiasDropoutAdd", "input")
        try residual.expect(shape: input.shape, "BiasDropoutAdd", "residual")
        try bias?.expect(shape: [input.columns], "BiasDropoutAdd", "bias")
        try Dropout.validate(p)
        try rows.check(input, "BiasDropoutAdd")
        let out = try Tensor(shape: input.shape, on: device, zeroed: false)
        let cols = input.columns
        for run in rows.runs {
            device.parallelRows(run.count, columns: cols) { r, _ in
                let o = (run.local + r.lowerBound) * cols
                mg_bias_dropout_add(out.floats + o, input.floats + o, bias?.floats, residual.floats + o,
                                    run.whole + r.lowerBound, r.count, cols, 1 - p, rng.seed, rng.stream)
            }
        }
        return out
    }

    /// Gradient for x (the residual's is dout itself): dx = dropout(dout) with the forward's stream;
    /// adds Σ_rows dx into `gradBias` when given.
    public static func backward(_ gradOutput: Tensor, gradBias: Tensor?, probability p: Float,
                                rng: PhiloxStream, firstRow: Int = 0, on device: CPUDevice) throws -> Tensor {
        try backward(gradOutput, gradBias: gradBias, probability: p, rng: rng, rows: .contiguous(from: firstRow, count: gradOutput.rows),
                     on: device)
    }

    /// `backward`, each row with the mask of its row of the whole activation (`rows`).
    public static func backward(_ gradOutput: Tensor, gradBias: Tensor?, probability p: Float,
                                rng: PhiloxStream, rows: DropoutRows, on device: CPUDevice) throws -> Tensor {
        try gradBias?.expect(shape: [gradOutput.columns], "BiasDropoutAdd.backward", "gradBias")
        let dx = p == 0 ? gradOutput : try Dropout.apply(gradOutput, probability: p, rng: rng, rows: rows, on: device)
        if let gradBias { try Elementwise.accumulateColumnSums(of: dx, into: gradBias, on: device) }
        return dx
    }
}
