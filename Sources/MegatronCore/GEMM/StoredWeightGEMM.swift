import CKernels

/// The GEMMs of a linear layer whose weight W [n, k] is stored in fp16 or bf16 (a vocabulary-sized
/// table under 16-bit parameter storage, too large to convert whole): OpenBLAS reads only fp32, so W
/// is converted one panel of `panelRows` rows at a time into a scratch buffer that each panel reuses,
/// and each panel's product goes to its columns (or rows) of the result.
public enum StoredWeightGEMM {
    /// Rows of W per panel: 4096 rows of h = 768 are 12 MiB of fp32.
    public static let panelRows = 4096

    /// Y [T, n] = X [T, k]·Wᵀ, in fp32 or rounded to a 16-bit `outputDType` (the logits under 16-bit
    /// storage, as a 16-bit GEMM writes them: each panel's columns go through an fp32 block [T, panel]).
    public static func forward(_ x: Tensor, weight w: Tensor, outputDType: DType = .float32, on device: CPUDevice) throws -> Tensor {
        let (n, k) = try shape(of: w, inner: x.columns, "forward")
        let y = try Tensor(shape: [x.rows, n], dtype: outputDType, on: device, zeroed: false)
        let block = try ColumnBlock(of: y, on: device)
        try withExtendedLifetime(block) {
            try forEachPanel(of: w, tokens: x.rows, "NT", on: device) { rows, panel in
                guard let block else {
                    return GEMM.sgemm(false, true, x.rows, rows.count, k, 1, x.floats, k, panel.floats, k, 0, y.floats + rows.lowerBound, n)
                }
                GEMM.sgemm(false, true, x.rows, rows.count, k, 1, x.floats, k, panel.floats, k, 0, block.floats, rows.count)
                block.store(columns: rows)
            }
        }
        return y
    }

    /// ∂X [T, k] = ∂Y [T, n]·W, ∂Y in fp32 or 16 bits.
    public static func inputGradient(_ dy: Tensor, weight w: Tensor, on device: CPUDevice) throws -> Tensor {
        let (n, k) = try shape(of: w, inner: nil, "inputGradient")
        guard dy.columns == n else { throw TensorError.shape("StoredWeightGEMM.inputGradient", "∂Y", dy.shape, expected: [dy.rows, n]) }
        let dx = try Tensor(shape: [dy.rows, k], on: device, zeroed: false)
        let block = try ColumnBlock(of: dy, on: device)
        try withExtendedLifetime(block) {
            try forEachPanel(of: w, tokens: dy.rows, "NN", on: device) { rows, panel in
                let (a, lda) = block.map { ($0.load(columns: rows), rows.count) } ?? (dy.floats + rows.lowerBound, n)
                GEMM.sgemm(false, false, dy.rows, k, rows.count, 1, a, lda, panel.floats, k, rows.lowerBound == 0 ? 0 : 1, dx.floats, k)
            }
        }
        return dx
    }

    /// G [n, k] += ∂Yᵀ·X for ∂Y [T, n] (fp32 or 16 bits) and X [T, k]: straight into an fp32 G, or
    /// through an fp32 panel added into a 16-bit G (`Tensor.accumulate`).
    public static func accumulateWeightGradient(_ dy: Tensor, input x: Tensor, into g: Tensor, on device: CPUDevice) throws {
        let (n, k) = try shape(of: g, inner: x.columns, "accumulateWeightGradient", sixteenBit: false)
        guard dy.columns == n, dy.rows == x.rows else {
            throw TensorError.shape("StoredWeightGEMM.accumulateWeightGradient", "∂Y", dy.shape, expected: [x.rows, n])
        }
        let panel = g.dtype == .float32 ? nil : try Tensor(shape: [min(panelRows, n), k], on: device, zeroed: false)
        let block = try ColumnBlock(of: dy, on: device)
        try withExtendedLifetime(block) {
            for start in stride(from: 0, to: n, by: panelRows) {
                let rows = start ..< min(n, start + panelRows)
                device.claimBLASThreads()
                device.timed("GEMM \(rows.count)×\(k)×\(x.rows) TN (16-bit operands)", flops: 2 * Double(rows.count * k * x.rows)) {
                    let (a, lda) = block.map { ($0.load(columns: rows), rows.count) } ?? (dy.floats + start, n)
                    if let panel {
                        GEMM.sgemm(true, false, rows.count, k, x.rows, 1, a, lda, x.floats, k, 0, panel.floats, k)
                    } else {
                        GEMM.sgemm(true, false, rows.count, k, x.rows, 1, a, lda, x.floats, k, 1, g.floats + start * k, k)
                    }
                }
                if let panel {
                    try g.view(offset: start * k, shape: [rows.count * k]).accumulate(panel.view(offset: 0, shape: [rows.count * k]), on: device)
                }
            }
        }
    }

    /// Calls `body` with each panel of W's rows converted to fp32 ([rows.count, k] at the start of one
    /// scratch buffer), timing its GEMM over `tokens` rows of the activations.
    private static func forEachPanel(of w: Tensor, tokens: Int, _ transposes: String, on device: CPUDevice,
                                     _ body: (Range<Int>, Tensor) -> Void) throws {
        let n = w.shape[0], k = w.columns
        let panel = try Tensor(shape: [min(panelRows, n), k], on: device, zeroed: false)
        for start in stride(from: 0, to: n, by: panelRows) {
            let rows = start ..< min(n, start + panelRows)
            try panel.view(offset: 0, shape: [rows.count * k]).assign(converting: w.view(offset: start * k, shape: [rows.count * k]), on: device)
            device.claimBLASThreads()
            device.timed("GEMM \(tokens)×\(rows.count)×\(k) \(transposes) (16-bit operands)", flops: 2 * Double(tokens * rows.count * k)) {
                body(rows, panel)
            }
        }
    }

    /// (n, k) of a matrix [n, k] (a weight, or its gradient), 16-bit when `sixteenBit`, whose inner
    /// dimension must be `inner` when given.
    private static func shape(of w: Tensor, inner: Int?, _ operation: String, sixteenBit: Bool = true) throws -> (Int, Int) {
        guard w.rank == 2, w.dtype == .float16 || w.dtype == .bfloat16 || (!sixteenBit && w.dtype == .float32) else {
            throw TensorError("StoredWeightGEMM.\(operation): \(w.dtype) \(w.shape) must be a \(sixteenBit ? "16-bit" : "floating-point") matrix [n, k]")
        }
        if let inner, inner != w.columns {
            throw TensorError("StoredWeightGEMM.\(operation): input of \(inner) columns against a weight \(w.shape)")
        }
        return (w.shape[0], w.columns)
    }

    /// The fp32 block [T, panel] through which a panel of columns of a 16-bit activation matrix M [T, n]
    /// (logits or their gradient) goes in or out of a GEMM; nil for an fp32 M, which GEMMs read in place.
    /// Its conversions run inside the GEMMs' timings (a profile shows them as GEMM time).
    private struct ColumnBlock {
        let matrix: Tensor
        let block: Tensor
        let rounding: Int32
        let device: CPUDevice

        init?(of matrix: Tensor, on device: CPUDevice) throws {
            guard matrix.dtype != .float32 else { return nil }
            self.matrix = matrix
            rounding = try matrix.dtype.roundingCode("StoredWeightGEMM")
            block = try Tensor(shape: [matrix.rows, min(StoredWeightGEMM.panelRows, matrix.columns)], on: device, zeroed: false)
            self.device = device
        }

        var floats: UnsafeMutablePointer<Float> { block.floats }

        /// The block [T, columns.count] ← M[:, columns] in fp32; returns its start.
        func load(columns: Range<Int>) -> UnsafeMutablePointer<Float> {
            let (m, b, code, n, width) = (matrix, block, rounding, matrix.columns, columns.count)
            device.parallelFor(m.rows) { r, _ in
                for t in r { mg_half_to_f32(b.floats + t * width, m.halfBits + t * n + columns.lowerBound, width, code) }
            }
            return b.floats
        }

        /// M[:, columns] ← the block [T, columns.count], rounded to M's 16 bits.
        func store(columns: Range<Int>) {
            let (m, b, code, n, width) = (matrix, block, rounding, matrix.columns, columns.count)
            device.parallelFor(m.rows) { r, _ in
                for t in r { mg_f32_to_half(m.halfBits + t * n + columns.lowerBound, b.floats + t * width, width, code) }
            }
        }
    }
}
