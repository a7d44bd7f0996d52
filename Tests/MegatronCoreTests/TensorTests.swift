import Foundation
import CBLAS
import MegatronCore
import Testing

@Suite struct ConversionTests {
    func bits(_ values: [Float], to dtype: DType) throws -> [UInt16] {
        let t = try tensor(values, [values.count]).converted(to: dtype, on: serial)
        return Array(UnsafeBufferPointer(start: t.halfBits, count: values.count))
    }

    func floats(_ bits: [UInt16], from dtype: DType) throws -> [Float] {
        let t = try Tensor(shape: [bits.count], dtype: dtype, on: serial)
        for (i, b) in bits.enumerated() { t.halfBits[i] = b }
        return try t.converted(to: .float32, on: serial).toFloatArray()
    }

    @Test func float16RoundsToNearestEven() throws {
        let values: [Float] = [
            0, -0.0, 1, -2, 65504,                  // exact
            1 + 0x1p-11,                          // halfway between 1 and 1+2⁻¹⁰: ties to even (1)
            1 + 3 * 0x1p-11,                      // halfway between 1+2⁻¹⁰ and 1+2⁻⁹: ties to even (1+2⁻⁹)
            1 + 0x1p-11 + 0x1p-20,                // just above halfway: rounds up
            65520,                                // halfway between 65504 and 2¹⁶: overflows to inf
            0x1p-24,                              // smallest subnormal
            0x1p-25,                              // half of it: ties to even (0)
            0x1p-25 + 0x1p-35,                    // just above: rounds up to the smallest subnormal
            3 * 0x1p-25,                          // halfway between subnormals 1 and 2: ties to even (2)
            .infinity, -.infinity, 1e10,
        ]
        let expected: [UInt16] = [0x0000, 0x8000, 0x3C00, 0xC000, 0x7BFF, 0x3C00, 0x3C02, 0x3C01, 0x7C00, 0x0001, 0x0000,
                                  0x0001, 0x0002, 0x7C00, 0xFC00, 0x7C00]
        #expect(try bits(values, to: .float16) == expected)
        let nan = try bits([.nan], to: .float16)[0]
        #expect(nan & 0x7C00 == 0x7C00 && nan & 0x03FF != 0)
        #expect(try floats([0x3C01, 0x0001, 0x7BFF, 0xFC00], from: .float16) == [1 + 0x1p-10, 0x1p-24, 65504, -.infinity])
    }

    @Test func bfloat16RoundsToNearestEven() throws {
        let values: [Float] = [
            1, -0.0,
            Float(bitPattern: 0x3F80_8000),  // halfway between 1 and next: ties to even (1)
            Float(bitPattern: 0x3F81_8000),  // halfway, odd below: rounds up to 0x3F82
            Float(bitPattern: 0x3F80_8001),  // just above halfway: up
            Float(bitPattern: 0x7F7F_FFFF),  // largest float: rounds to inf
            Float(bitPattern: 0x0000_8000),  // subnormal halfway: ties to even (0)
            Float(bitPattern: 0x0001_8000),  // subnormal halfway, odd: up
            .infinity, -.infinity,
        ]
        let expected: [UInt16] = [0x3F80, 0x8000, 0x3F80, 0x3F82, 0x3F81, 0x7F80, 0x0000, 0x0002, 0x7F80, 0xFF80]
        #expect(try bits(values, to: .bfloat16) == expected)
        // NaN stays NaN even when its payload sits only in the low bits that are dropped.
        let nan = try bits([Float(bitPattern: 0x7F80_0001)], to: .bfloat16)[0]
        #expect(nan & 0x7F80 == 0x7F80 && nan & 0x007F != 0)
        #expect(try floats([0x3F82, 0x0001, 0xFF80], from: .bfloat16) == [Float(bitPattern: 0x3F82_0000), Float(bitPattern: 0x0001_0000), -.infinity])
    }

    /// Rounding in place gives exactly what a 16-bit copy converted back holds, for the tie, overflow,
    /// subnormal and NaN cases above and for random values of every magnitude.
    @Test(arguments: [DType.float16, .bfloat16])
    func roundingInPlaceMatchesTheConversions(precision: DType) throws {
        var rng = TestRandom(seed: 61)
        let special: [Float] = [1 + 0x1p-11, 1 + 0x3p-11, 1 + 0x1p-8, 1 + 0x3p-8, 65504, 65519, 65520, 0x1p-24, 0x1p-25,
                                Float(bitPattern: 0x7F7F_FFFF), Float(bitPattern: 0x0001_8000), .infinity, -.infinity, -0.0]
        let x = special + rng.floats(100_000, scale: 1).enumerated().map { $1 * Float(sign: .plus, exponent: $0 % 60 - 30, significand: 1) }
        let rounded = tensor(x, [x.count], on: parallel)
        try rounded.round(to: precision, on: parallel)
        let expected = try tensor(x, [x.count]).converted(to: precision, on: serial).converted(to: .float32, on: serial).toFloatArray()
        #expect(rounded.toFloatArray().map(\.bitPattern) == expected.map(\.bitPattern))
        let nan = tensor([Float(bitPattern: 0x7F80_0001)], [1])
        try nan.round(to: precision, on: serial)
        #expect(nan.toFloatArray()[0].isNaN)
    }

    @Test func roundTripAcrossThreads() throws {
        var rng = TestRandom(seed: 60)
        let x = rng.floats(300_000, scale: 100)
        for dtype in [DType.float16, .bfloat16] {
            let narrow = try tensor(x, [x.count], on: parallel).converted(to: dtype, on: parallel)
            let serialNarrow = try tensor(x, [x.count]).converted(to: dtype, on: serial)
            #expect(Array(UnsafeBufferPointer(start: narrow.halfBits, count: x.count)) ==
                    Array(UnsafeBufferPointer(start: serialNarrow.halfBits, count: x.count)))
            let back = try narrow.converted(to: .float32, on: parallel).toFloatArray()
            let tolerance: Float = dtype == .float16 ? 0x1p-11 : 0x1p-8  // half an ulp, relative
            #expect(zip(x, back).allSatisfy { abs($0 - $1) <= abs($0) * tolerance + 0x1p-24 })
        }
    }
}

@Suite struct TensorTests {
    @Test func viewsShareMemory() throws {
        let t = try Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2], on: serial)
        let row = try t.slice(1 ..< 2)
        row.floats[0] = 30
        #expect(t.toFloatArray() == [1, 2, 30, 4, 5, 6])
        #expect(try t.reshaped([2, 3]).shape == [2, 3])
        #expect(try t.view(offset: 4, shape: [2]).toFloatArray() == [5, 6])
        #expect(Int(bitPattern: t.rawPointer) % 64 == 0)
    }

    @Test func badShapesAreErrorsNamingBoth() throws {
        let t = try Tensor(shape: [3, 2], on: serial)
        #expect { try t.reshaped([4, 2]) } throws: { "\($0)" == "reshape: cannot view shape [3, 2] (6 elements) as [4, 2]" }
        #expect(throws: TensorError.self) { try t.slice(2 ..< 4) }
        #expect(throws: TensorError.self) { try t.view(offset: 5, shape: [2]) }
        #expect(throws: TensorError.self) { try Tensor([1, 2, 3], shape: [2, 2], on: serial) }
    }

    @Test func allocatorReusesFreedBlocks() throws {
        let device = CPUDevice(threads: 1)
        for _ in 0 ..< 10 {
            let a = try Tensor(shape: [1000, 768], on: device), b = try Tensor(shape: [77], on: device)
            #expect(Int(bitPattern: a.rawPointer) % 64 == 0 && Int(bitPattern: b.rawPointer) % 64 == 0)
        }
        let stats = device.allocator.statistics
        #expect(stats.requests == 20)
        #expect(stats.reuses == 18)
        #expect(stats.liveBytes == 0)
        #expect(stats.peakLiveBytes == CachingAllocator.sizeClass(1000 * 768 * 4) + CachingAllocator.sizeClass(77 * 4))
        #expect(abs(stats.reuseRate - 0.9) < 1e-12)
        device.allocator.releaseCachedBlocks()
        #expect(device.allocator.statistics.cachedBytes == 0)
    }

    /// Past the device's memory limit a tensor is refused with an error naming the size asked for,
    /// what is in use and the limit; the refused request leaves the rest of the limit usable.
    @Test func aTensorPastTheMemoryLimitIsAnErrorNamingTheSizes() throws {
        let device = CPUDevice(threads: 1, memoryLimitBytes: 1 << 20)
        let held = try Tensor(shape: [128, 1024], on: device)  // 512 KiB
        #expect(throws: OutOfMemoryError(requestedBytes: 4 << 20, liveBytes: 512 << 10, limitBytes: 1 << 20)) {
            try Tensor(shape: [1 << 20], on: device)
        }
        let message = "\(OutOfMemoryError(requestedBytes: 4 << 20, liveBytes: 512 << 10, limitBytes: 1 << 20))"
        #expect(message.contains("4194304 bytes") && message.contains("524288 bytes in use") && message.contains("limit of 1048576 bytes"))
        #expect(device.allocator.statistics.liveBytes == 512 << 10)
        _ = held
        let second = try Tensor(shape: [128, 1024], on: device)
        #expect(second.count == 128 * 1024)
    }

    @Test func bigBlocksStartOnAHugePage() throws {
        let device = CPUDevice(threads: 1)
        let big = try Tensor(shape: [1024, 768], on: device)  // 3 MiB
        #expect(Int(bitPattern: big.rawPointer) % CachingAllocator.hugePageBytes == 0)
    }

    @Test(arguments: [1, 64, 65, 4096, 4097, 3_000_000, 1 << 20])
    func sizeClassesWasteAtMostAQuarter(bytes: Int) {
        let size = CachingAllocator.sizeClass(bytes)
        #expect(size >= bytes && size % 64 == 0)
        #expect(Double(size) <= max(Double(bytes) * 1.25, Double(bytes + 63)))
    }
}

@Suite struct GEMMTests {
    func reference(_ a: [Float], _ ar: Int, _ ac: Int, _ ta: Bool, _ b: [Float], _ br: Int, _ bc: Int, _ tb: Bool) -> [Double] {
        let m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc
        var c = [Double](repeating: 0, count: m * n)
        for i in 0 ..< m {
            for j in 0 ..< n {
                for p in 0 ..< k {
                    let aip: Float = ta ? a[p * ac + i] : a[i * ac + p]
                    let bpj: Float = tb ? b[j * bc + p] : b[p * bc + j]
                    c[i * n + j] += Double(aip) * Double(bpj)
                }
            }
        }
        return c
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func transposesAreFlags(ta: Bool, tb: Bool) throws {
        var rng = TestRandom(seed: 70)
        let (m, k, n) = (5, 7, 3)
        let a = rng.floats(m * k), b = rng.floats(k * n)
        let (ar, ac) = ta ? (k, m) : (m, k), (br, bc) = tb ? (n, k) : (k, n)
        let c = try GEMM.matmul(tensor(a, [ar, ac]), transposeA: ta, tensor(b, [br, bc]), transposeB: tb, on: serial)
        #expect(c.shape == [m, n])
        expectClose(c.toFloatArray(), reference(a, ar, ac, ta, b, br, bc, tb), tolerance: 1e-6, "C")
        // β = 1 accumulates, as weight-gradient accumulation over micro-batches needs.
        try GEMM.matmul(tensor(a, [ar, ac]), transposeA: ta, tensor(b, [br, bc]), transposeB: tb, into: c, alpha: 2, beta: 1, on: serial)
        expectClose(c.toFloatArray(), reference(a, ar, ac, ta, b, br, bc, tb).map { 3 * $0 }, tolerance: 1e-6, "C += 2AB")
    }

    /// A·Bᵀ of up to 16 rows (a decode step) runs the kernel that streams B once: it computes the
    /// product (odd sizes, α and β, split over threads), and each row's result is bit for bit that
    /// row's alone, whatever the other rows.
    @Test(arguments: [1, 2, 3, 5, 16])
    func fewRowsTimesTransposedWeightsStreamTheWeights(m: Int) throws {
        var rng = TestRandom(seed: 72)
        let (k, n) = (19, 517)  // 130 tiles of 4 columns: two threads take 64 or more each
        let a = rng.floats(m * k), b = rng.floats(n * k), c0 = rng.floats(m * n)
        for device in [serial, parallel] {
            let c = tensor(c0, [m, n], on: device)
            try GEMM.matmul(tensor(a, [m, k], on: device), tensor(b, [n, k], on: device), transposeB: true, into: c, alpha: 2, beta: 0.5,
                            on: device)
            let product = reference(a, m, k, false, b, n, k, true)
            expectClose(c.toFloatArray(), (0 ..< m * n).map { 2 * product[$0] + 0.5 * Double(c0[$0]) }, tolerance: 1e-5, "C")
            let all = try GEMM.matmul(tensor(a, [m, k], on: device), tensor(b, [n, k], on: device), transposeB: true, on: device)
            for row in 0 ..< m {
                let alone = try GEMM.matmul(tensor(Array(a[row * k ..< (row + 1) * k]), [1, k], on: device), tensor(b, [n, k], on: device),
                                            transposeB: true, on: device)
                #expect(alone.toFloatArray() == Array(all.toFloatArray()[row * n ..< (row + 1) * n]), "row \(row) of \(m)")
            }
        }
    }

    /// The first device shortens OpenBLAS's thread timeout (or keeps the user's) and restarts its
    /// workers, which then compute a GEMM split over two threads correctly.
    @Test func openBLASWorkersRestartWithTheShortenedTimeout() throws {
        let device = CPUDevice(threads: 2)
        let expected = ProcessInfo.processInfo.environment["OPENBLAS_THREAD_TIMEOUT"].flatMap { Int32($0) }
        #expect(expected != nil && openblas_thread_timeout() == expected!)
        var rng = TestRandom(seed: 71)
        let (m, k, n) = (256, 192, 224)  // large enough for OpenBLAS to use both threads
        let a = rng.floats(m * k), b = rng.floats(k * n)
        let c = try GEMM.matmul(tensor(a, [m, k], on: device), tensor(b, [k, n], on: device), on: device)
        expectClose(c.toFloatArray(), reference(a, m, k, false, b, k, n, false), tolerance: 1e-5, "C")
    }

    /// A device with a timer reports each GEMM under its shape and transposes, with its FLOPs.
    @Test func timerRecordsEachGEMMShape() throws {
        let timer = KernelTimer()
        let device = CPUDevice(threads: 1, timer: timer)
        let a = tensor([Float](repeating: 1, count: 6), [2, 3], on: device), b = tensor([Float](repeating: 1, count: 12), [4, 3], on: device)
        for _ in 0 ..< 3 { _ = try GEMM.matmul(a, b, transposeB: true, on: device) }
        let entry = try #require(timer.snapshot["GEMM 2×4×3 NT"])
        #expect(entry.calls == 3 && entry.flops == 3 * 2 * 2 * 4 * 3 && entry.seconds > 0)
        timer.reset()
        #expect(timer.snapshot.isEmpty)
    }

    @Test func batchedMatchesPerBatch() throws {
        var rng = TestRandom(seed: 71)
        let (batch, m, k, n) = (4, 3, 5, 2)
        let a = rng.floats(batch * m * k), b = rng.floats(batch * n * k)
        for device in [serial, parallel] {
            let c = try Tensor(shape: [batch, m, n], on: device)
            try GEMM.batchedMatmul(tensor(a, [batch, m, k], on: device), tensor(b, [batch, n, k], on: device), transposeB: true,
                                   into: c, on: device)
            var expected: [Double] = []
            for i in 0 ..< batch {
                let ai = Array(a[i * m * k ..< (i + 1) * m * k]), bi = Array(b[i * n * k ..< (i + 1) * n * k])
                expected += reference(ai, m, k, false, bi, n, k, true)
            }
            expectClose(c.toFloatArray(), expected, tolerance: 1e-6, "batched")
        }
    }

    @Test func mismatchedInnerDimensionsAreNamed() {
        #expect {
            try GEMM.matmul(tensor([Float](repeating: 0, count: 6), [2, 3]), tensor([Float](repeating: 0, count: 8), [4, 2]), on: serial)
        } throws: { "\($0)".hasPrefix("matmul: op(A) [2, 3] from [2, 3], op(B) [4, 2] from [4, 2]") }
    }
}
