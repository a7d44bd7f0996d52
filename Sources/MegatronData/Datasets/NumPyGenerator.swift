/// NumPy's `numpy.random.default_rng(seed)`: a PCG64 bit generator (O'Neill's 128-bit LCG with the
/// XSL-RR output) seeded through `SeedSequence`, and `Generator.integers` for 32-bit results, which
/// draws with Lemire's multiply-and-reject method. Megatron's mock GPT data takes its document
/// lengths from `default_rng(0).integers(1, 4096, size=100000, dtype=int32)`.
public struct NumPyGenerator: Sendable {
    private var state: UInt128
    private let increment: UInt128
    /// PCG64 hands out 64-bit outputs; a 32-bit draw takes the low half and keeps the high half for the next.
    private var bufferedHalf: UInt32?

    private static let multiplier: UInt128 = (0x2360_ED05_1FC6_5DA4 << 64) | 0x4385_DF64_9FCC_F645

    /// default_rng(seed) for a non-negative integer seed.
    public init(seed: UInt64) {
        let words = Self.seedSequenceState(entropy: seed, words: 8)
        func word64(_ i: Int) -> UInt128 { UInt128(words[2 * i]) | UInt128(words[2 * i + 1]) << 32 }
        let initialState = word64(0) << 64 | word64(1), sequence = word64(2) << 64 | word64(3)
        // pcg_setseq_128_srandom_r
        increment = sequence << 1 | 1
        state = 0
        step()
        state &+= initialState
        step()
    }

    private mutating func step() { state = state &* Self.multiplier &+ increment }

    /// The next 64-bit output (pcg64_next64: step, then XSL-RR of the new state).
    public mutating func nextUInt64() -> UInt64 {
        step()
        let folded = UInt64(truncatingIfNeeded: state >> 64) ^ UInt64(truncatingIfNeeded: state)
        let rotation = UInt64(truncatingIfNeeded: state >> 122)
        return folded >> rotation | folded << ((64 &- rotation) & 63)
    }

    /// The next 32-bit output (pcg64_next32): halves of one 64-bit output, low first.
    public mutating func nextUInt32() -> UInt32 {
        if let half = bufferedHalf {
            bufferedHalf = nil
            return half
        }
        let next = nextUInt64()
        bufferedHalf = UInt32(truncatingIfNeeded: next >> 32)
        return UInt32(truncatingIfNeeded: next)
    }

    /// `integers(low, high, size=count, dtype=int32)`: uniform in low ..< high.
    public mutating func integers(low: Int32, high: Int32, count: Int) -> [Int32] {
        precondition(low < high, "NumPyGenerator.integers: low must be below high")
        let range = UInt32(bitPattern: high &- 1 &- low)   // inclusive span, as NumPy's rng
        return (0 ..< count).map { _ in low &+ Int32(bitPattern: boundedLemire(range)) }
    }

    /// bounded_lemire_uint32: a value in 0 ... range.
    private mutating func boundedLemire(_ range: UInt32) -> UInt32 {
        if range == 0 { return 0 }
        if range == .max { return nextUInt32() }
        let exclusive = UInt64(range) + 1
        var m = UInt64(nextUInt32()) * exclusive
        var leftover = UInt32(truncatingIfNeeded: m)
        if UInt64(leftover) < exclusive {
            let threshold = UInt32((UInt64(UInt32.max) - UInt64(range)) % exclusive)
            while leftover < threshold {
                m = UInt64(nextUInt32()) * exclusive
                leftover = UInt32(truncatingIfNeeded: m)
            }
        }
        return UInt32(truncatingIfNeeded: m >> 32)
    }

    /// SeedSequence(entropy).generate_state(words, uint32): the entropy as little-endian 32-bit
    /// words mixed into a pool of four (mix_entropy), then hashed out word by word.
    public static func seedSequenceState(entropy: UInt64, words: Int) -> [UInt32] {
        var entropyWords = [UInt32(truncatingIfNeeded: entropy)]
        if entropy >> 32 != 0 { entropyWords.append(UInt32(truncatingIfNeeded: entropy >> 32)) }
        var hashConstant: UInt32 = 0x43B0_D7E5
        func hashmix(_ value: UInt32) -> UInt32 {
            var v = value ^ hashConstant
            hashConstant &*= 0x931E_8875
            v &*= hashConstant
            return v ^ (v >> 16)
        }
        func mix(_ x: UInt32, _ y: UInt32) -> UInt32 {
            let r = 0xCA01_F9DD &* x &- 0x4973_F715 &* y
            return r ^ (r >> 16)
        }
        var pool = (0 ..< 4).map { hashmix($0 < entropyWords.count ? entropyWords[$0] : 0) }
        for source in 0 ..< 4 {
            for destination in 0 ..< 4 where source != destination {
                pool[destination] = mix(pool[destination], hashmix(pool[source]))
            }
        }
        for source in 4 ..< max(4, entropyWords.count) {
            for destination in 0 ..< 4 { pool[destination] = mix(pool[destination], hashmix(entropyWords[source])) }
        }
        var outputConstant: UInt32 = 0x8B51_F9DD
        return (0 ..< words).map { i in
            var v = pool[i % 4] ^ outputConstant
            outputConstant &*= 0x58F3_8DED
            v &*= outputConstant
            return v ^ (v >> 16)
        }
    }
}
