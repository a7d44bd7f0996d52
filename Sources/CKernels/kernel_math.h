// Shared helpers of the C kernels: the dispatch attribute and vectorisable math.
//
// Every exported kernel carries MG_KERNEL: clang compiles it twice, for x86-64-v3
// (AVX2, FMA, F16C, …) and for the baseline, and the loader picks the clone by the CPU's feature
// bits. ("arch=haswell" would not do: its resolver tests for an Intel Haswell model, so every
// AMD CPU would get the baseline clone.)
// The helpers below are plain C that the loop vectoriser turns into 256-bit code inside the
// AVX2 clone; none calls libm in a hot loop.
#ifndef MG_KERNEL_MATH_H
#define MG_KERNEL_MATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) && defined(__clang__)
#define MG_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MG_KERNEL
#endif

#define MG_INLINE static inline __attribute__((always_inline))

/// Placed before a vectorised loop whose body is a long chain of arithmetic (GELU, SwiGLU, e^x):
/// clang interleaves four 8-wide iterations, four independent chains, instead of one. Left to
/// itself it picks one for such bodies, and each iteration's chain (tens of dependent operations,
/// a division among them) then waits on latency rather than throughput. Old and new kernels
/// alternated, in L2 on one core (medians of 1001 runs, G elements/s): GELU backward 1.19 → 1.36,
/// forward 1.75 → 2.03, SwiGLU forward 1.69 → 2.15, backward 1.25 → 1.56. The e^x loops of softmax
/// and cross-entropy, shorter chains, measured no faster with it and go without.
#define MG_INTERLEAVE_CHAINS _Pragma("clang loop interleave_count(4)")

/// Placed first in a function body: lets clang reorder float sums there so that row reductions
/// vectorise (8 partial sums). Results stay deterministic for a given binary and CPU.
#define MG_ALLOW_REASSOCIATION _Pragma("clang fp reassociate(on)")

MG_INLINE float mg_bits_to_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
MG_INLINE uint32_t mg_float_to_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/// e^x for float, relative error below 2 ulp on [-87.3, 88]; outside, x is clamped to that range
/// (e^−87.3 ≈ 1.2e-38 for any smaller x, e^88 ≈ 1.65e38 for any larger), which the callers (softmax
/// after max subtraction, sigmoid, tanh) cannot tell from underflow to 0 or overflow to inf. Cody-Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, a
/// degree-6 polynomial for e^r (Cephes' coefficients), and 2^n written into the exponent bits.
MG_INLINE float mg_exp(float x) {
    const float hi = 88.0f, lo = -87.3f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    float n = __builtin_rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * mg_bits_to_float((uint32_t)((int32_t)n + 127) << 23);
}

/// tanh(x) as a rational function x·P(x²)/Q(x²), P and Q of degree 4 in x², fitted to tanh on [0, 9]
/// for the least maximum error by `scripts/fit_odd_rational.py tanh`. No exponential and 15 vector
/// operations per eight values: GELU built on it streams 1.3× faster than on 1 − 2/(e^{2x} + 1). x is
/// clamped to ±9 and the result to ±1, and P's leading coefficient is raised so that the fit passes 1
/// at 9: tanh is exactly ±1 for |x| ≥ 9 (true tanh(9) = 1 − 3e-8), so 1 − tanh² is exactly 0 there.
/// Absolute error below 4.5e-7 (about 7 ulp of values near 1) in fp32, with or without FMA.
MG_INLINE float mg_tanh(float x) {
    x = x > 9.0f ? 9.0f : x;
    x = x < -9.0f ? -9.0f : x;
    float s = x * x;
    float p = 1.333741217e-08f;
    p = p * s + 2.059542498e-05f;
    p = p * s + 3.494721201e-03f;
    p = p * s + 1.338028741e-01f;
    p = p * s + 1.0f;
    float q = 7.769070128e-07f;
    q = q * s + 3.284241615e-04f;
    q = q * s + 2.587365405e-02f;
    q = q * s + 4.671360486e-01f;
    q = q * s + 1.0f;
    float t = x * p / q;
    t = t > 1.0f ? 1.0f : t;
    return t < -1.0f ? -1.0f : t;
}

/// erf(x) as a rational function x·P(x²)/Q(x²), P and Q of degree 5 in x², fitted to erf on [0, 4]
/// by `scripts/fit_odd_rational.py erf` as mg_tanh is: x is clamped to ±4 and the result to ±1, and
/// P's leading coefficient makes the fit pass 1 at 4, so erf is exactly ±1 for |x| ≥ 4 (true
/// erf(4) = 1 − 1.5e-8). Absolute error 2.3e-7 in exact arithmetic, below 5e-7 evaluated in fp32 (as mg_tanh).
MG_INLINE float mg_erf(float x) {
    x = x > 4.0f ? 4.0f : x;
    x = x < -4.0f ? -4.0f : x;
    float s = x * x;
    float p = 1.980606959e-06f;
    p = p * s + 2.856983120e-04f;
    p = p * s + 3.927982762e-03f;
    p = p * s + 5.323978537e-02f;
    p = p * s + 1.945653307e-01f;
    p = p * s + 1.128379167e+00f;
    float q = 3.741533605e-05f;
    q = q * s + 1.196636751e-03f;
    q = q * s + 1.529652069e-02f;
    q = q * s + 1.157744773e-01f;
    q = q * s + 5.057614671e-01f;
    q = q * s + 1.0f;
    float t = x * p / q;
    t = t > 1.0f ? 1.0f : t;
    return t < -1.0f ? -1.0f : t;
}

/// Whether x is NaN or ±inf.
MG_INLINE int mg_is_nonfinite(float x) { return (mg_float_to_bits(x) & 0x7F800000u) == 0x7F800000u; }

/// x rounded to the nearest fp16 (ties to even; overflow to ±inf, NaN stays NaN), kept in fp32.
MG_INLINE float mg_round_f16(float x) { return (float)(_Float16)x; }

/// x rounded to the nearest bfloat16 (ties to even; NaN stays NaN), kept in fp32.
MG_INLINE float mg_round_bf16(float x) {
    uint32_t b = mg_float_to_bits(x);
    uint32_t rounded = ((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16) << 16;
    int is_nan = (b & 0x7FFFFFFFu) > 0x7F800000u;
    return mg_bits_to_float(is_nan ? (b | 0x00400000u) & 0xFFFF0000u : rounded);
}

/// √x without errno handling, so that loops containing it vectorise.
MG_INLINE float mg_sqrt(float x) { return __builtin_elementwise_sqrt(x); }

/// max_j z[j], eight running maxima so that the loop vectorises.
MG_INLINE float mg_row_max(const float *z, long n) {
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    long j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) m[l] = z[j + l] > m[l] ? z[j + l] : m[l];
    for (; j < n; j++) m[0] = z[j] > m[0] ? z[j] : m[0];
    float result = m[0];
    for (int l = 1; l < 8; l++) result = m[l] > result ? m[l] : result;
    return result;
}

/// Logistic sigmoid 1 / (1 + e^{−x}).
MG_INLINE float mg_sigmoid(float x) {
    return 1.0f / (1.0f + mg_exp(-x));
}

/// One Philox4x32-10 block (Salmon et al., 2011): four 32-bit words from a 128-bit counter and a
/// 64-bit key. Counter-based, so any element's random word is recomputed from its index alone,
/// which lets backward passes and activation recomputation replay dropout masks exactly.
MG_INLINE void mg_philox4x32(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
}

/// The `threshold` of the dropout functions below: keep probability · 2³² (2³² keeps all).
MG_INLINE uint64_t mg_keep_threshold(float p_keep) {
    return p_keep >= 1.0f ? ((uint64_t)1 << 32) : (uint64_t)((double)p_keep * 4294967296.0);
}

/// Dropout multipliers for elements [first, first + MG_MASK_CHUNK) of stream (`seed`, `stream`):
/// element i is kept when its 16 random bits (philox.c says which) times 2^16 are below
/// `threshold` = keep probability · 2^32, and gets `scale` = 1 / keep probability, else 0.
/// `first` must be a multiple of MG_MASK_CHUNK.
#define MG_MASK_CHUNK 256
void mg_dropout_multipliers(float out[MG_MASK_CHUNK], uint64_t seed, uint64_t stream, uint64_t first,
                            uint64_t threshold, float scale);

/// y[i] = x[i] · multiplier of element first + i, for `chunks` whole chunks (`first` a multiple of
/// MG_MASK_CHUNK; y may be x). Faster than a chunk's multipliers followed by its product: the AVX2 path
/// streams one chunk while it computes the next one's multipliers.
void mg_dropout_whole_chunks(float *y, const float *x, long chunks, uint64_t first, uint64_t seed, uint64_t stream,
                             uint64_t threshold, float scale);

#endif
