import Foundation

/// NumPy's legacy `numpy.random.RandomState(seed)`: the MT19937 generator seeded from a 32-bit
/// integer (Matsumoto and Nishimura's init_genrand, so also C++'s `std::mt19937(seed)`), the
/// Fisher–Yates `shuffle` (each swap index by NumPy's masked rejection sampling, `random_interval`),
/// and the draws Megatron's masked datasets make: `randint`, `random`, `choice` with
/// probabilities and `geometric`. Megatron shuffles its indices and masks its samples with it, so the same seed
/// gives Megatron's samples.
public struct NumPyRandomState: Sendable {
    private var state = [UInt32](repeating: 0, count: 624)
    private var position = 624

    public init(seed: UInt32) {
        state[0] = seed
        for i in 1 ..< 624 {
            state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
        }
    }

    /// The next 32-bit output of MT19937 (genrand_int32).
    public mutating func nextUInt32() -> UInt32 {
        if position == 624 { twist() }
        var y = state[position]
        position += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// Two outputs as one 64-bit value, the first in the high half (NumPy's next_uint64).
    mutating func nextUInt64() -> UInt64 {
        let high = UInt64(nextUInt32())
        return high << 32 | UInt64(nextUInt32())
    }

    private mutating func twist() {
        for i in 0 ..< 624 {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
            state[i] = state[(i + 397) % 624] ^ (y >> 1) ^ (y & 1 == 0 ? 0 : 0x9908_B0DF)
        }
        position = 0
    }

    /// A uniform integer in 0 ... max: draws masked to the smallest all-ones mask ≥ max until one
    /// is ≤ max (32-bit draws while max fits in 32 bits).
    mutating func randomInterval(_ max: UInt64) -> UInt64 {
        if max == 0 { return 0 }
        var mask = max
        for shift in [1, 2, 4, 8, 16, 32] as [UInt64] { mask |= mask >> shift }
        if max <= 0xFFFF_FFFF {
            while true {
                let value = UInt64(nextUInt32()) & mask
                if value <= max { return value }
            }
        }
        while true {
            let value = nextUInt64() & mask
            if value <= max { return value }
        }
    }

    /// `randint(low, high)`: a uniform integer in low ..< high (masked rejection sampling).
    public mutating func randint(_ low: Int, _ high: Int) -> Int {
        precondition(high > low, "randint: empty range \(low) ..< \(high)")
        return low + Int(randomInterval(UInt64(high - 1 - low)))
    }

    /// `random()`: a uniform double in [0, 1) of 53 random bits from two draws.
    public mutating func random() -> Double {
        let a = Double(nextUInt32() >> 5), b = Double(nextUInt32() >> 6)
        return (a * 67_108_864 + b) / 9_007_199_254_740_992
    }

    /// `choice(n, p=probabilities)`: an index drawn with `probabilities` (normalised by their
    /// cumulative sum, as NumPy does), by one `random()` searched in the cumulative sums.
    public mutating func choice(probabilities: [Double]) -> Int {
        var cumulative = probabilities
        for i in cumulative.indices.dropFirst() { cumulative[i] += cumulative[i - 1] }
        let total = cumulative.last!
        for i in cumulative.indices { cumulative[i] /= total }
        let u = random()
        return cumulative.firstIndex { $0 > u } ?? cumulative.count - 1
    }

    /// `geometric(p)`: the number of trials to the first success, by NumPy's legacy algorithms:
    /// inversion of one `random()` for p < 1/3, else a search of the cumulative distribution.
    public mutating func geometric(_ p: Double) -> Int {
        let u = random()
        guard p >= 1.0 / 3.0 else { return Int((log1p(-u) / log(1 - p)).rounded(.up)) }
        var trials = 1, probability = p, cumulative = p
        while u > cumulative {
            probability *= 1 - p
            cumulative += probability
            trials += 1
        }
        return trials
    }

    /// Shuffles `values` in place exactly as `RandomState.shuffle` shuffles a 1-D array.
    public mutating func shuffle<T>(_ values: inout [T]) {
        guard values.count > 1 else { return }
        for i in stride(from: values.count - 1, through: 1, by: -1) {
            values.swapAt(i, Int(randomInterval(UInt64(i))))
        }
    }
}
