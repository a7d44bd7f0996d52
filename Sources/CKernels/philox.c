// Dropout keep multipliers from Philox4x32-10, 16 random bits per element.
//
// A chunk of MG_MASK_CHUNK = 256 elements starting at a multiple of 256 takes its bits from the 32
// Philox blocks 32·(first / 256) + b, b = 0 ..< 32 (counter: block index, then the stream; key: the
// seed). Element 32·h + b of the chunk uses 16-bit half h mod 2 (0: low) of word h / 2 of block b,
// h = 0 ..< 8, and is kept when that half · 2^16 is below `threshold` = keep probability · 2^32:
// the keep probability is honoured to 1/65536 (FlashAttention's dropout uses 8 bits). The layout
// puts eight consecutive elements in eight consecutive blocks, so the AVX2 path, which runs eight
// blocks per register, stores its multipliers without a transpose. The portable path, one block at
// a time, gives the same bits; tests compare both with a reference written in Swift.
#include "kernel_math.h"

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define MG_HAVE_AVX2_PATH 1
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define BLOCKS_PER_CHUNK (MG_MASK_CHUNK / 8)

/// One chunk being applied: y = x · multipliers, MG_MASK_CHUNK elements each.
typedef struct {
    float *y;
    const float *x;
    const float *multipliers;
} mg_dropout_chunk;

static void multipliers_scalar(float out[MG_MASK_CHUNK], uint64_t seed, uint64_t stream, uint64_t first,
                               uint64_t threshold, float scale) {
    uint64_t block0 = (first / MG_MASK_CHUNK) * BLOCKS_PER_CHUNK;
    for (int b = 0; b < BLOCKS_PER_CHUNK; b++) {
        uint64_t block = block0 + (uint64_t)b;
        uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
        mg_philox4x32(c, (uint32_t)seed, (uint32_t)(seed >> 32));
        for (int h = 0; h < 8; h++) {
            uint64_t bits = (uint64_t)((c[h / 2] >> (16 * (h % 2))) & 0xFFFFu) << 16;
            out[BLOCKS_PER_CHUNK * h + b] = bits < threshold ? scale : 0.0f;
        }
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

/// Multipliers of the eight lanes whose random bits (in the high half of each 32-bit lane, low
/// half zero) are below `threshold` ≤ 2³²: `scales` there, else 0. An unsigned compare.
__attribute__((target("avx2"), always_inline)) static inline __m256 keep8(__m256i bits, uint64_t threshold, __m256 scales) {
    if (threshold > 0xFFFFFFFFu) return scales;
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    __m256i t = _mm256_set1_epi32((int)((uint32_t)threshold ^ 0x80000000u));
    return _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(t, _mm256_xor_si256(bits, sign))), scales);
}

/// The multipliers of the chunk at `first` into `out`. When `previous` is given, its chunk is applied
/// meanwhile, 32 elements after each of the first eight rounds: y = x · multipliers of the chunk
/// before, so that its loads and stores stream while the multiplies run instead of after them.
__attribute__((target("avx2"))) static void multipliers_avx2(float out[MG_MASK_CHUNK], uint64_t seed, uint64_t stream,
                                                              uint64_t first, uint64_t threshold, float scale,
                                                              const mg_dropout_chunk *previous) {
    enum { GROUPS = BLOCKS_PER_CHUNK / 8 };  // four independent groups of eight blocks fill each other's multiply latency
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    const __m256i high_half = _mm256_set1_epi32((int)0xFFFF0000u);
    const __m256 scales = _mm256_set1_ps(scale);
    uint64_t block0 = (first / MG_MASK_CHUNK) * BLOCKS_PER_CHUNK;
    __m256i c0[GROUPS], c1[GROUPS], c2[GROUPS], c3[GROUPS];
    for (int g = 0; g < GROUPS; g++) {
        // Counters of blocks block0 + 8g + lane: (low word, high word, stream low, stream high).
        uint32_t lo[8], hi[8];
        for (int lane = 0; lane < 8; lane++) {
            uint64_t block = block0 + (uint64_t)(8 * g + lane);
            lo[lane] = (uint32_t)block; hi[lane] = (uint32_t)(block >> 32);
        }
        c0[g] = _mm256_loadu_si256((const __m256i *)lo); c1[g] = _mm256_loadu_si256((const __m256i *)hi);
        c2[g] = _mm256_set1_epi32((int)(uint32_t)stream); c3[g] = _mm256_set1_epi32((int)(uint32_t)(stream >> 32));
    }
    uint32_t key0 = (uint32_t)seed, key1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        const __m256i k0 = _mm256_set1_epi32((int)key0), k1 = _mm256_set1_epi32((int)key1);
        #pragma clang loop unroll(full)
        for (int g = 0; g < GROUPS; g++) {
            __m256i hi0, lo0, hi1, lo1;
            mulhilo8(c0[g], m0, &hi0, &lo0);
            mulhilo8(c2[g], m1, &hi1, &lo1);
            c0[g] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[g]), k0);
            c1[g] = lo1;
            c2[g] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[g]), k1);
            c3[g] = lo0;
        }
        key0 += PHILOX_W0; key1 += PHILOX_W1;
        if (previous && round < MG_MASK_CHUNK / 32) {
            for (int v = 0; v < 4; v++) {
                long i = 32 * round + 8 * v;
                _mm256_storeu_ps(previous->y + i, _mm256_mul_ps(_mm256_loadu_ps(previous->x + i),
                                                                _mm256_loadu_ps(previous->multipliers + i)));
            }
        }
    }
    #pragma clang loop unroll(full)
    for (int g = 0; g < GROUPS; g++) {
        __m256i words[4] = {c0[g], c1[g], c2[g], c3[g]};
        for (int w = 0; w < 4; w++) {
            // Half 2w (low 16 bits) and 2w + 1 (high 16 bits), each moved to the high half.
            _mm256_storeu_ps(out + BLOCKS_PER_CHUNK * (2 * w) + 8 * g,
                             keep8(_mm256_slli_epi32(words[w], 16), threshold, scales));
            _mm256_storeu_ps(out + BLOCKS_PER_CHUNK * (2 * w + 1) + 8 * g,
                             keep8(_mm256_and_si256(words[w], high_half), threshold, scales));
        }
    }
}
#endif

void mg_dropout_multipliers_using(int vectorised, float *out, uint64_t seed, uint64_t stream, uint64_t first,
                                  uint64_t threshold, float scale) {
#ifdef MG_HAVE_AVX2_PATH
    if (vectorised && __builtin_cpu_supports("avx2")) { multipliers_avx2(out, seed, stream, first, threshold, scale, NULL); return; }
#endif
    multipliers_scalar(out, seed, stream, first, threshold, scale);
}

void mg_dropout_whole_chunks(float *y, const float *x, long chunks, uint64_t first, uint64_t seed, uint64_t stream,
                             uint64_t threshold, float scale) {
    float multipliers[2][MG_MASK_CHUNK];
#ifdef MG_HAVE_AVX2_PATH
    if (chunks > 0 && __builtin_cpu_supports("avx2")) {
        // Chunk k's multipliers are made while chunk k − 1 is applied; the last is applied after.
        multipliers_avx2(multipliers[0], seed, stream, first, threshold, scale, NULL);
        for (long k = 1; k < chunks; k++) {
            mg_dropout_chunk previous = {y + (k - 1) * MG_MASK_CHUNK, x + (k - 1) * MG_MASK_CHUNK, multipliers[(k - 1) % 2]};
            multipliers_avx2(multipliers[k % 2], seed, stream, first + (uint64_t)k * MG_MASK_CHUNK, threshold, scale, &previous);
        }
        long last = (chunks - 1) * MG_MASK_CHUNK;
        for (long i = 0; i < MG_MASK_CHUNK; i++) y[last + i] = x[last + i] * multipliers[(chunks - 1) % 2][i];
        return;
    }
#endif
    for (long k = 0; k < chunks; k++) {
        multipliers_scalar(multipliers[0], seed, stream, first + (uint64_t)k * MG_MASK_CHUNK, threshold, scale);
        for (long i = 0; i < MG_MASK_CHUNK; i++) y[k * MG_MASK_CHUNK + i] = x[k * MG_MASK_CHUNK + i] * multipliers[0][i];
    }
}

void mg_dropout_multipliers(float out[MG_MASK_CHUNK], uint64_t seed, uint64_t stream, uint64_t first,
                            uint64_t threshold, float scale) {
    mg_dropout_multipliers_using(1, out, seed, stream, first, threshold, scale);
}
