// Dropout keep multipliers from Philox4x32-10: eight blocks at a time in AVX2 registers where the
// CPU has AVX2, one block at a time otherwise. Both give the same bits (tests compare them with a
// reference written in Swift).
#include "kernel_math.h"

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define MG_HAVE_AVX2_PATH 1
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
/// Groups of eight blocks in flight per pass (measured: 2 → 1.0–1.1, 4 → 1.24 G elements/s per core).
#define PHILOX_GROUPS 4

static void multipliers_scalar(float out[MG_MASK_CHUNK], uint64_t seed, uint64_t stream, uint64_t first,
                               uint64_t threshold, float scale) {
    uint64_t block0 = first >> 2;
    for (int j = 0; j < MG_MASK_CHUNK / 4; j++) {
        uint64_t block = block0 + (uint64_t)j;
        uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
        mg_philox4x32(c, (uint32_t)seed, (uint32_t)(seed >> 32));
        for (int w = 0; w < 4; w++) out[4 * j + w] = (uint64_t)c[w] < threshold ? scale : 0.0f;
    }
}

#ifdef MG_HAVE_AVX2_PATH
/// (hi, lo) 32-bit halves of the eight products x·m, lane by lane.
__attribute__((target("avx2"), always_inline)) static inline void mulhilo8(__m256i x, __m256i m, __m256i *hi, __m256i *lo) {
    // Shuffles rather than 64-bit shifts move the halves: they issue on other ports on AMD Zen.
    __m256i even = _mm256_mul_epu32(x, m);                              // lanes 0, 2, 4, 6 as 64-bit products
    __m256i odd = _mm256_mul_epu32(_mm256_shuffle_epi32(x, 0xF5), m);   // lanes 1, 3, 5, 7
    *lo = _mm256_blend_epi32(even, _mm256_shuffle_epi32(odd, 0xA0), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_shuffle_epi32(even, 0xF5), odd, 0xAA);
}

/// Lanes of `words` below `threshold` (≤ 2³²) as all-ones, else zero: an unsigned compare.
__attribute__((target("avx2"), always_inline)) static inline __m256 below8(__m256i words, uint64_t threshold) {
    if (threshold > 0xFFFFFFFFu) return _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    __m256i t = _mm256_set1_epi32((int)((uint32_t)threshold ^ 0x80000000u));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(t, _mm256_xor_si256(words, sign)));
}

/// Stores the multipliers of eight blocks, whose words w are in c_w (lane l = block l), in element
/// order: word w of block l is element 4l + w, so a 4 × 8 transpose.
__attribute__((target("avx2"), always_inline)) static inline void store_multipliers(float *out, __m256i c0, __m256i c1, __m256i c2,
                                                                                    __m256i c3, uint64_t threshold, __m256 scales) {
    __m256 f0 = _mm256_and_ps(below8(c0, threshold), scales), f1 = _mm256_and_ps(below8(c1, threshold), scales);
    __m256 f2 = _mm256_and_ps(below8(c2, threshold), scales), f3 = _mm256_and_ps(below8(c3, threshold), scales);
    __m256 t0 = _mm256_unpacklo_ps(f0, f1), t1 = _mm256_unpackhi_ps(f0, f1);
    __m256 t2 = _mm256_unpacklo_ps(f2, f3), t3 = _mm256_unpackhi_ps(f2, f3);
    __m256 b04 = _mm256_shuffle_ps(t0, t2, 0x44), b15 = _mm256_shuffle_ps(t0, t2, 0xEE);  // blocks 0|4, 1|5
    __m256 b26 = _mm256_shuffle_ps(t1, t3, 0x44), b37 = _mm256_shuffle_ps(t1, t3, 0xEE);  // blocks 2|6, 3|7
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(b04, b15, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(b26, b37, 0x20));
    _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(b04, b15, 0x31));
    _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(b26, b37, 0x31));
}

__attribute__((target("avx2"))) static void multipliers_avx2(float out[MG_MASK_CHUNK], uint64_t seed, uint64_t stream,
                                                              uint64_t first, uint64_t threshold, float scale) {
    __m256i k0[10], k1[10];
    uint32_t key0 = (uint32_t)seed, key1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        k0[round] = _mm256_set1_epi32((int)key0);
        k1[round] = _mm256_set1_epi32((int)key1);
        key0 += PHILOX_W0; key1 += PHILOX_W1;
    }
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    const __m256i stream_lo = _mm256_set1_epi32((int)(uint32_t)stream), stream_hi = _mm256_set1_epi32((int)(uint32_t)(stream >> 32));
    const __m256 scales = _mm256_set1_ps(scale);
    uint64_t block0 = first >> 2;
    // PHILOX_GROUPS independent groups of eight blocks per pass: one group's rounds are a chain of
    // dependent multiplies, and the others fill the gaps in that chain.
    for (int j = 0; j < MG_MASK_CHUNK / 32; j += PHILOX_GROUPS) {
        __m256i c0[PHILOX_GROUPS], c1[PHILOX_GROUPS], c2[PHILOX_GROUPS], c3[PHILOX_GROUPS];
        #pragma clang loop unroll(full)
        for (int g = 0; g < PHILOX_GROUPS; g++) {
            // Counters of blocks block0 + 8(j + g) + lane: (low word, high word, stream low, stream high).
            uint32_t lo[8], hi[8];
            for (int lane = 0; lane < 8; lane++) {
                uint64_t block = block0 + (uint64_t)(8 * (j + g) + lane);
                lo[lane] = (uint32_t)block; hi[lane] = (uint32_t)(block >> 32);
            }
            c0[g] = _mm256_loadu_si256((const __m256i *)lo); c1[g] = _mm256_loadu_si256((const __m256i *)hi);
            c2[g] = stream_lo; c3[g] = stream_hi;
        }
        for (int round = 0; round < 10; round++) {
            #pragma clang loop unroll(full)
            for (int g = 0; g < PHILOX_GROUPS; g++) {
                __m256i hi0, lo0, hi1, lo1;
                mulhilo8(c0[g], m0, &hi0, &lo0);
                mulhilo8(c2[g], m1, &hi1, &lo1);
                c0[g] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[g]), k0[round]);
                c1[g] = lo1;
                c2[g] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[g]), k1[round]);
                c3[g] = lo0;
            }
        }
        #pragma clang loop unroll(full)
        for (int g = 0; g < PHILOX_GROUPS; g++) store_multipliers(out + 32 * (j + g), c0[g], c1[g], c2[g], c3[g], threshold, scales);
    }
}
#endif

void mg_dropout_multipliers_using(int vectorised, float *out, uint64_t seed, uint64_t stream, uint64_t first,
                                  uint64_t threshold, float scale) {
#ifdef MG_HAVE_AVX2_PATH
    if (vectorised && __builtin_cpu_supports("avx2")) { multipliers_avx2(out, seed, stream, first, threshold, scale); return; }
#endif
    multipliers_scalar(out, seed, stream, first, threshold, scale);
}

void mg_dropout_multipliers(float out[MG_MASK_CHUNK], uint64_t seed, uint64_t stream, uint64_t first,
                            uint64_t threshold, float scale) {
    mg_dropout_multipliers_using(1, out, seed, stream, first, threshold, scale);
}
