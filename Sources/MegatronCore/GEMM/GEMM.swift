import CBLAS
import CKernels

/// Single-precision matrix multiplication through OpenBLAS's `cblas_sgemm`.
///
/// A tensor enters as the matrix [rows, columns] of its flattened leading dimensions and its last
/// dimension (an activation [batch, seq, hidden] is the matrix [batch·seq, hidden]). Transposes are
/// flags to BLAS, never copies. Debian's OpenBLAS 0.3.21 declares `cblas_sbgemm` but does not export
/// it, so 16-bit tensors are converted to fp32 before a GEMM.
public enum GEMM {
    /// A·Bᵀ with at most this many rows of A (a decode step's tokens, B a layer's weight [out, in])
    /// runs `mg_skinny_gemm_nt`, reading B once: OpenBLAS's sgemm packs all of B for each call, and
    /// ran a 124M model's batch-1 decode at a third of the memory bandwidth (batch 4 and 16 no faster
    /// per step).
    public static let skinnyRows = 16

    /// C = α·op(A)·op(B) + β·C, with op(X) = Xᵀ when its flag is set.
    public static func matmul(_ a: Tensor, transposeA: Bool = false, _ b: Tensor, transposeB: Bool = false,
                              into c: Tensor, alpha: Float = 1, beta: Float = 0, on device: CPUDevice) throws {
        let (m, k, n) = try dimensions(a, transposeA, b, transposeB, c)
        if m <= skinnyRows && !transposeA && transposeB {
            device.timed("GEMM \(m)×\(n)×\(k) NT", flops: 2 * Double(m * n * k)) {
                // Columns of C (rows of B) split over the threads, in multiples of the kernel's tile of 4.
                device.parallelFor((n + 3) / 4, minimumPerTask: 64) { tiles, _ in
                    let first = tiles.lowerBound * 4, last = min(n, tiles.upperBound * 4)
                    mg_skinny_gemm_nt(c.floats + first, c.columns, a.floats, a.columns, b.floats + first * b.columns, b.columns,
                                      m, last - first, k, alpha, beta)
                }
            }
            return
        }
        device.claimBLASThreads()
        device.timed("GEMM \(m)×\(n)×\(k) \(transposeA ? "T" : "N")\(transposeB ? "T" : "N")", flops: 2 * Double(m * n * k)) {
            sgemm(transposeA, transposeB, m, n, k, alpha, a.floats, a.columns, b.floats, b.columns, beta, c.floats, c.columns)
        }
    }

    /// op(A)·op(B) in a new [m, n] tensor.
    public static func matmul(_ a: Tensor, transposeA: Bool = false, _ b: Tensor, transposeB: Bool = false,
                              on device: CPUDevice) throws -> Tensor {
        let m = transposeA ? a.columns : a.rows, n = transposeB ? b.rows : b.columns
        let c = try Tensor(shape: [m, n], on: device, zeroed: false)
        try matmul(a, transposeA: transposeA, b, transposeB: transposeB, into: c, on: device)
        return c
    }

    /// For each i in 0 ..< batch: C[i] = α·op(A[i])·op(B[i]) + β·C[i], with A, B, C of shape
    /// [batch, rows, columns]. Batches run on separate threads (BLAS single-threaded inside) when there
    /// are at least as many as threads; otherwise one after another on a threaded BLAS.
    public static func batchedMatmul(_ a: Tensor, transposeA: Bool = false, _ b: Tensor, transposeB: Bool = false,
                                     into c: Tensor, alpha: Float = 1, beta: Float = 0, on device: CPUDevice) throws {
        guard a.rank == 3, b.rank == 3, c.rank == 3, a.shape[0] == b.shape[0], a.shape[0] == c.shape[0] else {
            throw TensorError("batchedMatmul: A \(a.shape), B \(b.shape), C \(c.shape) must be [batch, rows, columns] with one batch size")
        }
        let batch = a.shape[0]
        let a0 = try a.slice(0 ..< min(1, batch)), b0 = try b.slice(0 ..< min(1, batch)), c0 = try c.slice(0 ..< min(1, batch))
        let (m, k, n) = try dimensions(a0, transposeA, b0, transposeB, c0)
        let strideA = a.count / max(batch, 1), strideB = b.count / max(batch, 1), strideC = c.count / max(batch, 1)
        let run: @Sendable (Range<Int>, Int) -> Void = { range, _ in
            for i in range {
                sgemm(transposeA, transposeB, m, n, k, alpha, a.floats + i * strideA, a.columns,
                      b.floats + i * strideB, b.columns, beta, c.floats + i * strideC, c.columns)
            }
        }
        if batch >= device.threads {
            device.withSingleThreadedBLAS { device.parallelFor(batch, run) }
        } else {
            device.claimBLASThreads()
            run(0 ..< batch, 0)
        }
    }

    /// (m, k, n) of op(A)[m, k]·op(B)[k, n] into C[m, n], or a shape error naming all three.
    private static func dimensions(_ a: Tensor, _ ta: Bool, _ b: Tensor, _ tb: Bool, _ c: Tensor) throws -> (Int, Int, Int) {
        for (name, t) in [("A", a), ("B", b), ("C", c)] { try t.expect(dtype: .float32, "matmul", name) }
        let (m, k) = ta ? (a.columns, a.rows) : (a.rows, a.columns)
        let (kb, n) = tb ? (b.columns, b.rows) : (b.rows, b.columns)
        guard k == kb, c.rows == m, c.columns == n else {
            throw TensorError("matmul: op(A) [\(m), \(k)] from \(a.shape)\(ta ? "ᵀ" : ""), op(B) [\(kb), \(n)] from \(b.shape)\(tb ? "ᵀ" : ""), C \(c.shape): expected inner dimensions to agree and C = [\(m), \(n)]")
        }
        return (m, k, n)
    }

    /// Row-major cblas_sgemm with leading dimensions given as row lengths.
    static func sgemm(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                      _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
