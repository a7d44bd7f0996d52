/// C++'s `std::mt19937_64`: the 64-bit Mersenne Twister (Nishimura and Matsumoto), seeded by its
/// linear recurrence. Megatron's sample mapping (helpers.cpp `build_mapping`) shuffles with it.
struct MersenneTwister64 {
    private var state = [UInt64](repeating: 0, count: 312)
    private var position = 312

    init(seed: UInt64) {
        state[0] = seed
        for i in 1 ..< 312 {
            state[i] = 6_364_136_223_846_793_005 &* (state[i - 1] ^ (state[i - 1] >> 62)) &+ UInt64(i)
        }
    }

    mutating func next() -> UInt64 {
        if position == 312 { twist() }
        var x = state[position]
        position += 1
        x ^= (x >> 29) & 0x5555_5555_5555_5555
        x ^= (x << 17) & 0x71D6_7FFF_EDA6_0000
        x ^= (x << 37) & 0xFFF7_EEE0_0000_0000
        x ^= x >> 43
        return x
    }

    private mutating func twist() {
        for i in 0 ..< 312 {
            let y = (state[i] & 0xFFFF_FFFF_8000_0000) | (state[(i + 1) % 312] & 0x7FFF_FFFF)
            state[i] = state[(i + 156) % 312] ^ (y >> 1) ^ (y & 1 == 0 ? 0 : 0xB502_6F5A_A966_19E9)
        }
        position = 0
    }
}
