// fp32 ↔ fp16 / bfloat16 conversion, round to nearest even.
#include "CKernels.h"
#include "kernel_math.h"

static inline void f32_to_f16(uint16_t *restrict y, const float *restrict x, long n) {
    // The cast rounds to nearest even (vcvtps2ph in the AVX2 clone, compiler-rt otherwise),
    // with correct subnormals, overflow to ±inf and NaN kept NaN.
    for (long i = 0; i < n; i++) {
        _Float16 h = (_Float16)x[i];
        memcpy(&y[i], &h, 2);
    }
}

static inline void f16_to_f32(float *restrict y, const uint16_t *restrict x, long n) {
    for (long i = 0; i < n; i++) {
        _Float16 h;
        memcpy(&h, &x[i], 2);
        y[i] = (float)h;
    }
}

static inline void f32_to_bf16(uint16_t *restrict y, const float *restrict x, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t b = mg_float_to_bits(x[i]);
        uint32_t rounded = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
        int is_nan = (b & 0x7FFFFFFFu) > 0x7F800000u;
        y[i] = (uint16_t)(is_nan ? ((b >> 16) | 0x0040u) : rounded);
    }
}

static inline void bf16_to_f32(float *restrict y, const uint16_t *restrict x, long n) {
    for (long i = 0; i < n; i++) y[i] = mg_bits_to_float((uint32_t)x[i] << 16);
}

MG_KERNEL void mg_round(float *y, const float *x, long n, int precision) {
    if (precision == MG_PRECISION_F16) for (long i = 0; i < n; i++) y[i] = mg_round_f16(x[i]);
    else if (precision == MG_PRECISION_BF16) for (long i = 0; i < n; i++) y[i] = mg_round_bf16(x[i]);
    else if (y != x) for (long i = 0; i < n; i++) y[i] = x[i];
}

MG_KERNEL void mg_half_to_f32(float *restrict y, const uint16_t *restrict x, long n, int precision) {
    if (precision == MG_PRECISION_F16) f16_to_f32(y, x, n);
    else bf16_to_f32(y, x, n);
}

MG_KERNEL void mg_f32_to_half(uint16_t *restrict y, const float *restrict x, long n, int precision) {
    if (precision == MG_PRECISION_F16) f32_to_f16(y, x, n);
    else f32_to_bf16(y, x, n);
}

MG_KERNEL void mg_accumulate_half(uint16_t *restrict y, const float *restrict x, long n, int precision) {
    // In blocks, so that each conversion loop vectorises.
    float block[256];
    for (long i = 0; i < n; i += 256) {
        long m = n - i < 256 ? n - i : 256;
        if (precision == MG_PRECISION_F16) f16_to_f32(block, y + i, m);
        else bf16_to_f32(block, y + i, m);
        for (long j = 0; j < m; j++) block[j] += x[i + j];
        if (precision == MG_PRECISION_F16) f32_to_f16(y + i, block, m);
        else f32_to_bf16(y + i, block, m);
    }
}

MG_KERNEL void mg_join_remainders(float *restrict main, const uint16_t *restrict param, const int16_t *restrict remainder, long n) {
    for (long i = 0; i < n; i++) main[i] = mg_bits_to_float(((uint32_t)param[i] << 16) + (uint32_t)(int32_t)remainder[i]);
}

MG_KERNEL void mg_split_remainders(uint16_t *restrict param, int16_t *restrict remainder, const float *restrict main, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t b = mg_float_to_bits(main[i]);
        uint32_t high = (b + 0x8000u) >> 16;
        param[i] = (uint16_t)high;
        remainder[i] = (int16_t)(int32_t)(b - (high << 16));
    }
}
