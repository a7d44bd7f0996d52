// Memory-bound elementwise kernels: residual add, bias, GELU, SwiGLU, dropout, reductions.
#include "CKernels.h"
#include "kernel_math.h"

// no_builtin: otherwise clang turns the loop into a memcpy call, whose large-size path (non-temporal
// stores) is slower here than plain vector stores.
MG_KERNEL __attribute__((no_builtin("memcpy"))) void mg_copy(float *restrict y, const float *restrict x, long n) {
    for (long i = 0; i < n; i++) y[i] = x[i];
}

MG_KERNEL void mg_add(float *restrict y, const float *a, const float *b, long n) {
    for (long i = 0; i < n; i++) y[i] = a[i] + b[i];
}

MG_KERNEL void mg_axpy(float *restrict y, const float *restrict x, float alpha, long n) {
    for (long i = 0; i < n; i++) y[i] += alpha * x[i];
}

MG_KERNEL void mg_scale(float *y, float alpha, long n) {
    for (long i = 0; i < n; i++) y[i] *= alpha;
}

MG_KERNEL void mg_bias_add(float *restrict x, const float *restrict bias, long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        float *row = x + r * cols;
        for (long c = 0; c < cols; c++) row[c] += bias[c];
    }
}

MG_KERNEL void mg_column_sum_accumulate(float *restrict sums, const float *restrict x, long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        for (long c = 0; c < cols; c++) sums[c] += row[c];
    }
}

MG_KERNEL double mg_sum_of_squares(const float *restrict x, long n) {
    // Eight float partial sums per block of 1024, folded into double: exact enough and vectorised.
    double total = 0;
    for (long start = 0; start < n; start += 1024) {
        long end = start + 1024 < n ? start + 1024 : n;
        float partial[8] = {0};
        long i = start;
        for (; i + 8 <= end; i += 8)
            for (int l = 0; l < 8; l++) partial[l] += x[i + l] * x[i + l];
        for (; i < end; i++) partial[0] += x[i] * x[i];
        for (int l = 0; l < 8; l++) total += partial[l];
    }
    return total;
}

// MARK: GELU (tanh approximation, Megatron's gelu_impl / bias_gelu)

#define GELU_K0 0.7978845608028654f   // √(2/π)
#define GELU_K1 0.044715f

// gelu(u) = ½·u·(1 + tanh(z)), z = √(2/π)·(u + 0.044715·u³), written as Megatron writes it.
MG_INLINE float gelu(float u) {
    float half = 0.5f * u;
    return half + half * mg_tanh(GELU_K0 * u * (1.0f + GELU_K1 * u * u));
}

// The exact GELU, PyTorch's F.gelu (approximate='none'): gelu(u) = ½·u·(1 + erf(u/√2)), and
// gelu′(u) = ½(1 + erf(u/√2)) + u·φ(u), φ(u) = e^{−u²/2}/√(2π).
#define SQRT_HALF 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

MG_INLINE float gelu_exact(float u) {
    float half = 0.5f * u;
    return half + half * mg_erf(u * SQRT_HALF);
}

MG_INLINE float gelu_exact_grad(float u) {
    return 0.5f + 0.5f * mg_erf(u * SQRT_HALF) + u * INV_SQRT_2PI * mg_exp(-0.5f * u * u);
}

MG_KERNEL void mg_gelu_forward(float *restrict y, const float *restrict x, const float *restrict bias,
                               long rows, long cols, int exact) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        if (exact) {
            if (bias) MG_INTERLEAVE_CHAINS for (long c = 0; c < cols; c++) yr[c] = gelu_exact(xr[c] + bias[c]);
            else MG_INTERLEAVE_CHAINS for (long c = 0; c < cols; c++) yr[c] = gelu_exact(xr[c]);
        } else {
            if (bias) MG_INTERLEAVE_CHAINS for (long c = 0; c < cols; c++) yr[c] = gelu(xr[c] + bias[c]);
            else MG_INTERLEAVE_CHAINS for (long c = 0; c < cols; c++) yr[c] = gelu(xr[c]);
        }
    }
}

// gelu′(u) = ½(1 + t) + ½·u·(1 − t²)·dz/du with t = tanh(z), dz/du = √(2/π)(1 + 3·0.044715·u²), computed
// as ½ + u·P(u²)/Q(u²): P and Q of degree 5 in u², fitted to gelu′ − ½ on [0, 5.5] by
// `scripts/fit_odd_rational.py gelu_grad`: absolute error 4e-7 in exact arithmetic, below 6.5e-7 in
// fp32 with or without FMA (absolute: where gelu′ is tiny, below u = −3, the relative error is large,
// as the old tanh form's was). From |u| = 5.5 on it is exactly 1 (or 0 below −5.5): true
// gelu′(5.5) = 1 + 5e-8, and it stays within that of 1 beyond (the fit left to itself there would grow
// like u, or overflow: the select discards those lanes).
#define GELU_GRAD_LIMIT 5.5f

MG_INLINE float gelu_grad(float u) {
    float c = u, s = c * c;
    float p = 1.700666451e-07f;
    p = p * s + 3.318517278e-05f;
    p = p * s + -1.586110198e-04f;
    p = p * s + 1.321290991e-02f;
    p = p * s + -3.903575696e-02f;
    p = p * s + 7.978845608e-01f;
    float q = 8.254579117e-06f;
    q = q * s + 1.416676384e-04f;
    q = q * s + 2.296113529e-03f;
    q = q * s + 3.564190508e-02f;
    q = q * s + 2.860691153e-01f;
    q = q * s + 1.0f;
    float g = 0.5f + c * p / q;
    return u >= GELU_GRAD_LIMIT ? 1.0f : (u <= -GELU_GRAD_LIMIT ? 0.0f : g);
}

MG_KERNEL void mg_gelu_backward(float *dx, float *restrict dbias, const float *dy, const float *restrict x,
                                const float *restrict bias, long rows, long cols, int exact) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        const float *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        if (exact) {
            if (bias) MG_INTERLEAVE_CHAINS for (long c = 0; c < cols; c++) dxr[c] = dyr[c] * gelu_exact_grad(xr[c] + bias[c]);
            else MG_INTERLEAVE_CHAINS for (long c = 0; c < cols; c++) dxr[c] = dyr[c] * gelu_exact_grad(xr[c]);
        } else {
            if (bias) MG_INTERLEAVE_CHAINS for (long c = 0; c < cols; c++) dxr[c] = dyr[c] * gelu_grad(xr[c] + bias[c]);
            else MG_INTERLEAVE_CHAINS for (long c = 0; c < cols; c++) dxr[c] = dyr[c] * gelu_grad(xr[c]);
        }
        // While the row is still in L1, rather than a second pass over dx from memory.
        if (dbias) for (long c = 0; c < cols; c++) dbias[c] += dxr[c];
    }
}

// MARK: SwiGLU

MG_KERNEL void mg_swiglu_forward(float *restrict y, const float *restrict x, long rows, long f) {
    for (long r = 0; r < rows; r++) {
        const float *x1 = x + r * 2 * f, *x2 = x1 + f;
        float *yr = y + r * f;
        MG_INTERLEAVE_CHAINS for (long c = 0; c < f; c++) yr[c] = x1[c] * mg_sigmoid(x1[c]) * x2[c];
    }
}

MG_KERNEL void mg_swiglu_backward(float *restrict dx, const float *restrict dy, const float *restrict x,
                                  long rows, long f) {
    for (long r = 0; r < rows; r++) {
        const float *x1 = x + r * 2 * f, *x2 = x1 + f;
        const float *dyr = dy + r * f;
        float *dx1 = dx + r * 2 * f, *dx2 = dx1 + f;
        MG_INTERLEAVE_CHAINS for (long c = 0; c < f; c++) {
            float s = mg_sigmoid(x1[c]);
            float silu = x1[c] * s;
            dx1[c] = dyr[c] * x2[c] * s * (1.0f + x1[c] * (1.0f - s));
            dx2[c] = dyr[c] * silu;
        }
    }
}

// MARK: dropout

/// Dropout of elements [lo, hi), all within one chunk; y[0] and x[0] are element `first`.
MG_INLINE void dropout_part_of_chunk(float *y, const float *x, uint64_t first, uint64_t lo, uint64_t hi,
                                     uint64_t threshold, float scale, uint64_t seed, uint64_t stream) {
    if (lo >= hi) return;
    float multipliers[MG_MASK_CHUNK];
    uint64_t base = lo & ~(uint64_t)(MG_MASK_CHUNK - 1);
    mg_dropout_multipliers(multipliers, seed, stream, base, threshold, scale);
    for (uint64_t i = lo; i < hi; i++) y[i - first] = x[i - first] * multipliers[i - base];
}

MG_KERNEL void mg_dropout(float *y, const float *x, long n, uint64_t first, float p_keep,
                          uint64_t seed, uint64_t stream) {
    uint64_t threshold = mg_keep_threshold(p_keep), end = first + (uint64_t)n;
    float scale = 1.0f / p_keep;
    // [first, whole) and [tail, end) are parts of chunks, [whole, tail) whole chunks (maybe none).
    uint64_t whole = (first + MG_MASK_CHUNK - 1) & ~(uint64_t)(MG_MASK_CHUNK - 1);
    whole = whole < end ? whole : end;
    uint64_t tail = end & ~(uint64_t)(MG_MASK_CHUNK - 1);
    tail = tail > whole ? tail : whole;
    dropout_part_of_chunk(y, x, first, first, whole, threshold, scale, seed, stream);
    mg_dropout_whole_chunks(y + (whole - first), x + (whole - first), (long)((tail - whole) / MG_MASK_CHUNK), whole,
                            seed, stream, threshold, scale);
    dropout_part_of_chunk(y, x, first, tail, end, threshold, scale, seed, stream);
}

MG_KERNEL void mg_bias_dropout_add(float *out, const float *x, const float *restrict bias, const float *residual,
                                   long row0, long rows, long cols, float p_keep, uint64_t seed, uint64_t stream) {
    uint64_t threshold = mg_keep_threshold(p_keep);
    float multipliers[MG_MASK_CHUNK];
    int dropping = p_keep < 1.0f;
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *rr = residual + r * cols;
        float *outr = out + r * cols;
        uint64_t first = (uint64_t)(row0 + r) * (uint64_t)cols, end = first + (uint64_t)cols;
        if (!dropping) {
            for (long c = 0; c < cols; c++) outr[c] = rr[c] + xr[c] + (bias ? bias[c] : 0.0f);
            continue;
        }
        for (uint64_t base = first & ~(uint64_t)(MG_MASK_CHUNK - 1); base < end; base += MG_MASK_CHUNK) {
            mg_dropout_multipliers(multipliers, seed, stream, base, threshold, 1.0f / p_keep);
            uint64_t lo = base > first ? base : first;
            uint64_t hi = base + MG_MASK_CHUNK < end ? base + MG_MASK_CHUNK : end;
            for (uint64_t i = lo; i < hi; i++) {
                long c = (long)(i - first);
                outr[c] = rr[c] + (xr[c] + (bias ? bias[c] : 0.0f)) * multipliers[i - base];
            }
        }
    }
}

int mg_cpu_has_avx2_fma(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}
