import MegatronCore
import CKernels
import Testing

@Suite struct DropoutTests {
    @Test func keepsTheExpectedShareAndScales() throws {
        let n = 200_000, p: Float = 0.3
        let ones = tensor([Float](repeating: 1, count: n), [n], on: parallel)
        let y = try Dropout.apply(ones, probability: p, rng: PhiloxStream(seed: 42, stream: 7), on: parallel).toFloatArray()
        let kept = y.filter { $0 != 0 }
        #expect(kept.allSatisfy { abs($0 - 1 / (1 - p)) < 1e-6 })
        let share = Double(kept.count) / Double(n)
        // Binomial standard deviation √(p(1−p)/n) ≈ 0.001: six of them.
        #expect(abs(share - 0.7) < 0.006, "kept \(share)")
    }

    /// Rows given as runs of the whole activation (a context-parallel rank's chunks) take exactly
    /// those rows' masks, in dropout and in bias-dropout-add; runs that do not cover the rows in
    /// order are an error.
    @Test func rowRunsTakeTheirRowsMasksOfTheWhole() throws {
        let rng = PhiloxStream(seed: 9, stream: 4), h = 16
        let whole = try Dropout.apply(tensor([Float](repeating: 1, count: 12 * h), [12, h]), probability: 0.4, rng: rng, on: serial)
        // Local rows 0..<3 are whole rows 6..<9, local rows 3..<5 whole rows 1..<3.
        let runs = DropoutRows([.init(local: 0, whole: 6, count: 3), .init(local: 3, whole: 1, count: 2)])
        let expected = ([6, 7, 8, 1, 2] as [Int]).flatMap { row in (0 ..< h).map { whole.floats[row * h + $0] } }
        let ones = tensor([Float](repeating: 1, count: 5 * h), [5, h]), zeros = tensor([Float](repeating: 0, count: 5 * h), [5, h])
        #expect(try Dropout.apply(ones, probability: 0.4, rng: rng, rows: runs, on: parallel).toFloatArray() == expected)
        #expect(try BiasDropoutAdd.forward(ones, bias: nil, residual: zeros, probability: 0.4, rng: rng, rows: runs, on: serial)
            .toFloatArray() == expected)
        #expect(throws: TensorError.self) {
            try Dropout.apply(ones, probability: 0.4, rng: rng, rows: DropoutRows([.init(local: 0, whole: 0, count: 4)]), on: serial)
        }
    }

    @Test func maskIsAFunctionOfSeedStreamAndIndex() throws {
        let n = 300_000
        let x = tensor([Float](repeating: 1, count: n), [n], on: parallel)
        let rng = PhiloxStream(seed: 1, stream: 2)
        let a = try Dropout.apply(x, probability: 0.5, rng: rng, on: parallel).toFloatArray()
        let b = try Dropout.apply(tensor([Float](repeating: 1, count: n), [n], on: serial), probability: 0.5, rng: rng, on: serial).toFloatArray()
        #expect(a == b, "the split across threads must not change the mask")
        let other = try Dropout.apply(x, probability: 0.5, rng: PhiloxStream(seed: 1, stream: 3), on: parallel).toFloatArray()
        let agreement = zip(a, other).filter { $0 == $1 }.count
        #expect(abs(Double(agreement) / Double(n) - 0.5) < 0.01, "another stream gives an independent mask")
        // A slice sees the same mask as the same elements of the whole: index = flat position.
        let rows = try BiasDropoutAdd.forward(tensor([Float](repeating: 1, count: 1000), [10, 100]), bias: nil,
                                              residual: tensor([Float](repeating: 0, count: 1000), [10, 100]),
                                              probability: 0.5, rng: rng, on: serial)
        #expect(rows.toFloatArray() == Array(a[0 ..< 1000]))
    }

    /// Rows of 33 columns (chunks straddle rows), of 512 (two whole chunks per row), and 13 rows of
    /// 768 from row 3 on (blocks of x + bias that start mid-chunk and span several rows), with and
    /// without a bias, split over threads.
    @Test(arguments: [(33, 5, 0), (512, 5, 0), (768, 13, 3)], [true, false])
    func biasDropoutAddForwardAndBackward(shape: (columns: Int, rows: Int, firstRow: Int), withBias: Bool) throws {
        var rng = TestRandom(seed: 20)
        let (r, c, firstRow) = (shape.rows, shape.columns, shape.firstRow)
        let x = rng.floats(r * c), b = withBias ? rng.floats(c) : [Float](repeating: 0, count: c)
        let res = rng.floats(r * c), dy = rng.floats(r * c)
        let stream = PhiloxStream(seed: 9, stream: 1), p: Float = 0.25
        let out = try BiasDropoutAdd.forward(tensor(x, [r, c]), bias: withBias ? tensor(b, [c]) : nil, residual: tensor(res, [r, c]),
                                             probability: p, rng: stream, firstRow: firstRow, on: parallel).toFloatArray()
        let mask = try Dropout.apply(tensor([Float](repeating: 1, count: r * c), [r, c]), probability: p, rng: stream,
                                     firstRow: firstRow, on: serial).toFloatArray()
        expectClose(out, (0 ..< r * c).map { Double(res[$0]) + (Double(x[$0]) + Double(b[$0 % c])) * Double(mask[$0]) },
                    tolerance: 1e-6, "out")
        let db = tensor([Float](repeating: 0, count: c), [c])
        let dx = try BiasDropoutAdd.backward(tensor(dy, [r, c]), gradBias: db, probability: p, rng: stream, firstRow: firstRow,
                                             on: serial)
        let expectedDx = (0 ..< r * c).map { Double(dy[$0]) * Double(mask[$0]) }
        expectClose(dx.toFloatArray(), expectedDx, tolerance: 1e-6, "dx")
        expectClose(db.toFloatArray(), (0 ..< c).map { col in (0 ..< r).map { expectedDx[$0 * c + col] }.reduce(0, +) },
                    tolerance: 1e-6, "dbias")
    }

    @Test func rejectsProbabilityOne() {
        #expect(throws: TensorError.self) {
            try Dropout.apply(tensor([1], [1]), probability: 1, rng: PhiloxStream(seed: 0, stream: 0), on: serial)
        }
    }

    /// Philox4x32-10 written out from its definition (Salmon et al., 2011).
    static func philox(block: UInt64, stream: UInt64, seed: UInt64) -> [UInt32] {
        var c = [UInt32(truncatingIfNeeded: block), UInt32(block >> 32), UInt32(truncatingIfNeeded: stream), UInt32(stream >> 32)]
        var k0 = UInt32(truncatingIfNeeded: seed), k1 = UInt32(seed >> 32)
        for _ in 0 ..< 10 {
            let p0 = UInt64(0xD251_1F53) * UInt64(c[0]), p1 = UInt64(0xCD9E_8D57) * UInt64(c[2])
            c = [UInt32(p1 >> 32) ^ c[1] ^ k0, UInt32(truncatingIfNeeded: p1), UInt32(p0 >> 32) ^ c[3] ^ k1, UInt32(truncatingIfNeeded: p0)]
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        return c
    }

    /// The random bits deciding dropout element `element`, as philox.c defines them: 16 bits of
    /// block 32·⌊element / 256⌋ + element mod 32, half (element mod 256) / 32 of its four words
    /// (low half first), moved to the high half of a 32-bit word.
    static func randomBits(element: UInt64, stream: UInt64, seed: UInt64) -> UInt64 {
        let k = Int(element % 256), block = element / 256 * 32 + UInt64(k % 32), half = k / 32
        let word = philox(block: block, stream: stream, seed: seed)[half / 2]
        return UInt64((word >> (16 * UInt32(half % 2))) & 0xFFFF) << 16
    }

    /// Both multiplier paths (AVX2, 32 blocks per call; portable, one block at a time) against the
    /// definition, including chunks whose block counters sit just below and above 2³².
    @Test(arguments: [Int32(1), Int32(0)])
    func multiplierPathsFollowPhilox(vectorised: Int32) {
        let seed: UInt64 = 0xDEAD_BEEF_0123_4567, stream: UInt64 = 0x0000_0001_FFFF_FFFF, keep: Float = 0.7
        let threshold = UInt64(Double(keep) * 4_294_967_296.0)
        for first: UInt64 in [0, 256 * 1_000_003, (UInt64(1) << 35) - 256, (UInt64(1) << 35) + 256 * 5] {
            var out = [Float](repeating: -1, count: 256)
            mg_dropout_multipliers_using(vectorised, &out, seed, stream, first, threshold, 1 / keep)
            for i in 0 ..< 256 {
                let bits = Self.randomBits(element: first + UInt64(i), stream: stream, seed: seed)
                #expect(out[i] == (bits < threshold ? 1 / keep : 0), "first \(first), element \(i)")
            }
        }
    }

    /// Masks over several chunks, with a 64-bit seed and stream, against Philox4x32-10 written out here.
    /// 1500 elements: five whole chunks (made and applied in a pipeline on AVX2) and part of a sixth;
    /// each kept element is x·(1/keep) exactly, so a chunk applied with another's multipliers or
    /// another's x shows.
    @Test func masksFollowPhiloxForAnySeedStreamAndOffset() throws {
        let seed: UInt64 = 0x1234_5678_9ABC_DEF0, stream: UInt64 = 0x0FED_CBA9_8765_4321, n = 1500, p: Float = 0.3
        let x = (0 ..< n).map { Float($0 % 7 + 1) }
        let y = try Dropout.apply(tensor(x, [n]), probability: p, rng: PhiloxStream(seed: seed, stream: stream),
                                  on: serial).toFloatArray()
        let threshold = UInt64((Double(1 - p) * 4_294_967_296.0)), scale = 1 / (1 - p)
        for i in 0 ..< n {
            let bits = Self.randomBits(element: UInt64(i), stream: stream, seed: seed)
            #expect(y[i] == (bits < threshold ? x[i] * scale : 0), "element \(i)")
        }
    }

    /// Philox4x32-10 known-answer vector from Random123 (Salmon et al.): counter 0, key 0 →
    /// 6627e8d5 e169c58d bc57ac4c 9b00dbd8, whose eight 16-bit halves (low first) decide elements
    /// 0, 32, …, 224 of seed 0, stream 0.
    @Test func philoxMatchesTheReferenceVector() throws {
        let words: [UInt32] = [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        let halves = words.flatMap { [$0 & 0xFFFF, $0 >> 16] }
        let x = tensor([Float](repeating: 1, count: 256), [256])
        for (h, half) in halves.enumerated() {
            // Kept iff half < p_keep·2¹⁶: with p_keep half a step above, kept; half a step below, dropped.
            let above = Float((Double(half) + 0.5) / 65536), below = Float((Double(half) - 0.5) / 65536)
            let keptAbove = try Dropout.apply(x, probability: 1 - above, rng: PhiloxStream(seed: 0, stream: 0), on: serial)
            let keptBelow = try Dropout.apply(x, probability: 1 - below, rng: PhiloxStream(seed: 0, stream: 0), on: serial)
            #expect(keptAbove.toFloatArray()[32 * h] != 0, "half \(h) should be kept")
            #expect(keptBelow.toFloatArray()[32 * h] == 0, "half \(h) should be dropped")
        }
    }
}
