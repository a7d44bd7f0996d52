/// NumPy's legacy `numpy.random.RandomState(seed)`: the MT19937 generator seeded from a 32-bit
/// integer (Matsumoto and Nishimura's init_genrand) and the Fisher–Yates `shuffle` of a 1-D array,
/// which draws each swap index with NumPy's masked rejection sampling (`random_interval`). Megatron
/// shuffles its dataset indices with it, so the same seed gives the same sample order as Megatron.
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

    /// Shuffles `values` in place exactly as `RandomState.shuffle` shuffles a 1-D array.
    public mutating func shuffle<T>(_ values: inout [T]) {
        guard values.count > 1 else { return }
        for i in stride(from: values.count - 1, through: 1, by: -1) {
            values.swapAt(i, Int(randomInterval(UInt64(i))))
        }
    }
}
