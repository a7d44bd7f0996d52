import MegatronCore
import Testing

/// The kernels of 16-bit parameter storage: GEMMs over 16-bit weights, embedding lookups in 16-bit
/// tables, 16-bit accumulation, and the main parameters' remainders.
struct SixteenBitKernelTests {
    /// A weight with more rows than a panel (so that two panels meet), as bf16 and as its fp32 values.
    static func weight(rows: Int = StoredWeightGEMM.panelRows + 37, columns: Int = 8) throws -> (stored: Tensor, values: Tensor) {
        var random = TestRandom(seed: 11)
        let stored = try tensor(random.floats(rows * columns), [rows, columns], on: parallel).converted(to: .bfloat16, on: parallel)
        return (stored, try stored.converted(to: .float32, on: parallel))
    }

    static func expectClose(_ a: Tensor, _ b: Tensor, _ what: String, tolerance: Float = 1e-5) {
        let (x, y) = (a.toFloatArray(), b.toFloatArray())
        #expect(x.count == y.count)
        let worst = zip(x, y).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst <= tolerance, "\(what): worst relative difference \(worst)")
    }

    @Test func gemmsOverA16BitWeightMatchFP32GEMMs() throws {
        let (stored, values) = try Self.weight()
        var random = TestRandom(seed: 12)
        let x = tensor(random.floats(5 * 8), [5, 8], on: parallel)
        let dy = tensor(random.floats(5 * values.shape[0]), [5, values.shape[0]], on: parallel)
        Self.expectClose(try StoredWeightGEMM.forward(x, weight: stored, on: parallel),
                         try GEMM.matmul(x, values, transposeB: true, on: parallel), "X·Wᵀ")
        Self.expectClose(try StoredWeightGEMM.inputGradient(dy, weight: stored, on: parallel),
                         try GEMM.matmul(dy, values, on: parallel), "∂Y·W")
        // G += ∂Yᵀ·X, into fp32 and into bf16 (rounded once per call).
        let start = TestRandom(seed: 13)
        var r = start
        let g32 = tensor(r.floats(values.count), values.shape, on: parallel)
        r = start
        let expected = tensor(r.floats(values.count), values.shape, on: parallel)
        try GEMM.matmul(dy, transposeA: true, x, into: expected, beta: 1, on: parallel)
        try StoredWeightGEMM.accumulateWeightGradient(dy, input: x, into: g32, on: parallel)
        Self.expectClose(g32, expected, "fp32 G += ∂Yᵀ·X")
        r = start
        let g16 = try tensor(r.floats(values.count), values.shape, on: parallel).converted(to: .bfloat16, on: parallel)
        let rounded = try g16.converted(to: .float32, on: parallel)
        try GEMM.matmul(dy, transposeA: true, x, into: rounded, beta: 1, on: parallel)
        try StoredWeightGEMM.accumulateWeightGradient(dy, input: x, into: g16, on: parallel)
        #expect(g16.dtype == .bfloat16)
        Self.expectClose(try g16.converted(to: .float32, on: parallel), rounded, "bf16 G += ∂Yᵀ·X", tolerance: 1.0 / 128)
    }

    /// 16-bit logits and logit gradients (16-bit storage's output layer): the forward writes X·Wᵀ
    /// rounded once, panel by panel; the backward reads a 16-bit ∂Y as its fp32 values, into fp32
    /// and 16-bit weight gradients alike.
    @Test func gemmsOver16BitActivationsRoundOnceAndReadExactly() throws {
        let (stored, values) = try Self.weight()
        let n = values.shape[0]
        var random = TestRandom(seed: 16)
        let x = tensor(random.floats(5 * 8), [5, 8], on: parallel)
        let y16 = try StoredWeightGEMM.forward(x, weight: stored, outputDType: .bfloat16, on: parallel)
        #expect(y16.dtype == .bfloat16 && y16.shape == [5, n])
        let product = try StoredWeightGEMM.forward(x, weight: stored, on: parallel)
        let rounded = try product.converted(to: .bfloat16, on: parallel).converted(to: .float32, on: parallel)
        #expect(try y16.converted(to: .float32, on: parallel).toFloatArray() == rounded.toFloatArray())
        let dy16 = try tensor(random.floats(5 * n), [5, n], on: parallel).converted(to: .bfloat16, on: parallel)
        let dy = try dy16.converted(to: .float32, on: parallel)
        Self.expectClose(try StoredWeightGEMM.inputGradient(dy16, weight: stored, on: parallel),
                         try GEMM.matmul(dy, values, on: parallel), "16-bit ∂Y·W")
        let g = try Tensor(shape: values.shape, on: parallel), expected = try Tensor(shape: values.shape, on: parallel)
        try StoredWeightGEMM.accumulateWeightGradient(dy16, input: x, into: g, on: parallel)
        try StoredWeightGEMM.accumulateWeightGradient(dy16, input: x, into: g, on: parallel)
        try GEMM.matmul(dy, transposeA: true, x, into: expected, beta: 1, on: parallel)
        try GEMM.matmul(dy, transposeA: true, x, into: expected, beta: 1, on: parallel)
        Self.expectClose(g, expected, "fp32 G += 16-bit ∂Yᵀ·X, twice")
        let g16 = try Tensor(shape: values.shape, dtype: .bfloat16, on: parallel)
        try StoredWeightGEMM.accumulateWeightGradient(dy16, input: x, into: g16, on: parallel)
        let once = try GEMM.matmul(dy, transposeA: true, x, on: parallel).converted(to: .bfloat16, on: parallel)
        Self.expectClose(try g16.converted(to: .float32, on: parallel), try once.converted(to: .float32, on: parallel),
                         "bf16 G += 16-bit ∂Yᵀ·X", tolerance: 1.0 / 128)
    }

    @Test func a16BitWordTableLooksUpAndAccumulatesAsItsFP32Values() throws {
        let (stored, values) = try Self.weight(rows: 10, columns: 6)
        var random = TestRandom(seed: 14)
        let position = tensor(random.floats(4 * 6), [4, 6])
        let tokens = ids([3, 9, 3, 12, 0]), positions = ids([0, 1, 2, 3, 0])
        // A shard of rows 2 ..< 12 of a vocabulary of 16: ids 0 and 12 look up zeros.
        let looked = try Embedding.forward(ids: tokens, word: stored, vocabStart: 2, vocabSize: 16, position: position, positions: positions,
                                           on: serial)
        let expected = try Embedding.forward(ids: tokens, word: values, vocabStart: 2, vocabSize: 16, position: position, positions: positions,
                                             on: serial)
        #expect(looked.toFloatArray() == expected.toFloatArray())
        let dout = tensor(random.floats(5 * 6), [5, 6])
        let grad16 = try Tensor(shape: [10, 6], dtype: .bfloat16, on: serial), grad32 = try Tensor(shape: [10, 6], on: serial)
        let dposition16 = try Tensor(shape: [4, 6], on: serial), dposition32 = try Tensor(shape: [4, 6], on: serial)
        try Embedding.backward(dout, ids: tokens, positions: positions, gradWord: grad16, vocabStart: 2, vocabSize: 16,
                               gradPosition: dposition16, on: serial)
        try Embedding.backward(dout, ids: tokens, positions: positions, gradWord: grad32, vocabStart: 2, vocabSize: 16,
                               gradPosition: dposition32, on: serial)
        Self.expectClose(try grad16.converted(to: .float32, on: serial), grad32, "bf16 word gradients", tolerance: 1.0 / 128)
        #expect(dposition16.toFloatArray() == dposition32.toFloatArray())
    }

    @Test func accumulatingInto16BitRoundsEachSum() throws {
        let y = try tensor([1, 1, 256, -2], [4]).converted(to: .bfloat16, on: serial)
        try y.accumulate(tensor([0.001953125, 0.0078125, 1, 0.5], [4]), on: serial)
        // 1 + 2⁻⁹ rounds back to 1 (bf16 keeps 8 bits), 1 + 2⁻⁷ is kept, 256 + 1 ties to even 256.
        #expect(try y.converted(to: .float32, on: serial).toFloatArray() == [1, 1.0078125, 256, -1.5])
    }

    @Test func remaindersKeepTheMainParametersExactly() throws {
        var random = TestRandom(seed: 15)
        var values = random.floats(4096, scale: 3)
        // Ties: the low 16 bits exactly half way, for an even and an odd bf16 value.
        values += [Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), -Float(bitPattern: 0x3F80_8000), 0, -0.0]
        let main = tensor(values, [values.count], on: parallel)
        let params = try Tensor(shape: [values.count], dtype: .bfloat16, on: parallel)
        let remainders = try Tensor(shape: [values.count], dtype: .uint16, on: parallel)
        try ParamRemainders.split(main, into: params, remainders: remainders, on: parallel)
        let joined = try Tensor(shape: [values.count], on: parallel)
        try ParamRemainders.join(params, remainders: remainders, into: joined, on: parallel)
        #expect(joined.toFloatArray().map(\.bitPattern) == values.map(\.bitPattern), "bit for bit")
        // The bf16 values are the nearest ones (ties away from zero).
        let nearest = try main.converted(to: .bfloat16, on: parallel).converted(to: .float32, on: parallel).toFloatArray()
        let kept = try params.converted(to: .float32, on: parallel).toFloatArray()
        for (i, (a, b)) in zip(kept, nearest).enumerated().dropLast(5) { #expect(a == b, "element \(i): \(a) vs \(b)") }
        #expect(Array(kept.suffix(5)) == [Float(bitPattern: 0x3F81_0000), Float(bitPattern: 0x3F82_0000), -Float(bitPattern: 0x3F81_0000), 0, -0.0])
    }
}
