// Causal self-attention core, flash-attention style on the CPU: one panel of query rows at a time,
// scores through OpenBLAS, softmax statistics kept as a log-sum-exp per row, and the backward
// recomputing each panel's probabilities from it instead of storing the s × s matrix.
#include <cblas.h>
#include "CKernels.h"
#include "kernel_math.h"

long mg_attention_scratch_floats(long seq, long block_rows) { return 2 * block_rows * seq; }

MG_INLINE long min_long(long a, long b) { return a < b ? a : b; }

/// Keys row i may see end before this: all of them, or 0 ... i when causal.
MG_INLINE long visible_keys(long i, long kv, int causal) { return causal ? i + 1 : kv; }

MG_KERNEL void mg_attention_forward(mg_attention_head head, float *lse, long seq, long d, float scale, int causal,
                                    const int32_t *first_key, long block_rows, float p_keep, uint64_t seed,
                                    uint64_t stream, long head_index, float *scratch) {
    MG_ALLOW_REASSOCIATION
    float *scores = scratch;
    for (long i0 = 0; i0 < seq; i0 += block_rows) {
        long rows = min_long(block_rows, seq - i0);
        long kv = causal ? i0 + rows : seq;
        // scores[rows, kv] = scale · Q[i0 ..< i0+rows] · K[0 ..< kv]ᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kv, (int)d, scale,
                    head.q + i0 * head.ldq, (int)head.ldq, head.k, (int)head.ldk, 0.0f, scores, (int)kv);
        for (long r = 0; r < rows; r++) {
            long i = i0 + r, valid = visible_keys(i, kv, causal), lo = first_key ? first_key[i] : 0;
            float *p = scores + r * kv;
            float zmax = mg_row_max(p + lo, valid - lo);
            float sum = 0;
            for (long j = lo; j < valid; j++) { float e = mg_exp(p[j] - zmax); p[j] = e; sum += e; }
            float inv = 1.0f / sum;
            for (long j = lo; j < valid; j++) p[j] *= inv;
            for (long j = 0; j < lo; j++) p[j] = 0.0f;
            for (long j = valid; j < kv; j++) p[j] = 0.0f;
            lse[i] = zmax + logf(sum);
            if (p_keep < 1.0f) {
                mg_dropout(p + lo, p + lo, valid - lo, (uint64_t)((head_index * seq + i) * seq + lo), p_keep, seed, stream);
            }
        }
        // out[i0 ..< i0+rows] = P · V[0 ..< kv]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)kv, 1.0f,
                    scores, (int)kv, head.v, (int)head.ldv, 0.0f, head.out + i0 * head.ldo, (int)head.ldo);
    }
}

MG_KERNEL void mg_attention_backward(mg_attention_head head, const float *lse, const float *dout,
                                     float *dq, long lddq, float *dk, long lddk, float *dv, long lddv,
                                     long seq, long d, float scale, int causal, const int32_t *first_key,
                                     long block_rows, float p_keep, uint64_t seed, uint64_t stream, long head_index,
                                     float *scratch) {
    MG_ALLOW_REASSOCIATION
    float *probs = scratch, *dprobs = scratch + block_rows * seq;
    float multipliers[MG_MASK_CHUNK];
    int dropping = p_keep < 1.0f;
    uint64_t threshold = dropping ? (uint64_t)((double)p_keep * 4294967296.0) : 0;
    for (long i0 = 0; i0 < seq; i0 += block_rows) {
        long rows = min_long(block_rows, seq - i0);
        long kv = causal ? i0 + rows : seq;
        const float *q_panel = head.q + i0 * head.ldq, *do_panel = dout + i0 * head.ldo;
        // P = exp(scale · Q Kᵀ − lse), recomputed; dP' = dO · Vᵀ (gradient of the dropped P').
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kv, (int)d, scale,
                    q_panel, (int)head.ldq, head.k, (int)head.ldk, 0.0f, probs, (int)kv);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kv, (int)d, 1.0f,
                    do_panel, (int)head.ldo, head.v, (int)head.ldv, 0.0f, dprobs, (int)kv);
        for (long r = 0; r < rows; r++) {
            long i = i0 + r, valid = visible_keys(i, kv, causal), lo = first_key ? first_key[i] : 0;
            float *p = probs + r * kv, *dp = dprobs + r * kv;
            const float *o = head.out + i * head.ldo, *g = dout + i * head.ldo;
            // D_i = dO_i · O_i = Σ_j P'_ij dP'_ij, the softmax backward's row term.
            float D = 0;
            for (long c = 0; c < d; c++) D += g[c] * o[c];
            float li = lse[i];
            for (long j = lo; j < valid; j++) p[j] = mg_exp(p[j] - li);
            if (!dropping) {
                for (long j = lo; j < valid; j++) dp[j] = p[j] * (dp[j] - D);
            } else {
                // With keep multipliers m: dS = P·(m·dP' − D), and P' = m·P feeds dV.
                uint64_t row = (uint64_t)((head_index * seq + i) * seq);
                uint64_t first = row + (uint64_t)lo, end = row + (uint64_t)valid;
                for (uint64_t base = first & ~(uint64_t)(MG_MASK_CHUNK - 1); base < end; base += MG_MASK_CHUNK) {
                    mg_dropout_multipliers(multipliers, seed, stream, base, threshold, 1.0f / p_keep);
                    uint64_t from = base > first ? base : first;
                    uint64_t to = base + MG_MASK_CHUNK < end ? base + MG_MASK_CHUNK : end;
                    for (uint64_t x = from; x < to; x++) {
                        long j = (long)(x - row);
                        float m = multipliers[x - base];
                        dp[j] = p[j] * (m * dp[j] - D);
                        p[j] *= m;
                    }
                }
            }
            for (long j = 0; j < lo; j++) { p[j] = 0.0f; dp[j] = 0.0f; }
            for (long j = valid; j < kv; j++) { p[j] = 0.0f; dp[j] = 0.0f; }
        }
        // dV[0 ..< kv] += P'ᵀ · dO;  dQ = scale · dS · K;  dK[0 ..< kv] += scale · dSᵀ · Q
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kv, (int)d, (int)rows, 1.0f,
                    probs, (int)kv, do_panel, (int)head.ldo, 1.0f, dv, (int)lddv);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)kv, scale,
                    dprobs, (int)kv, head.k, (int)head.ldk, 0.0f, dq + i0 * lddq, (int)lddq);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kv, (int)d, (int)rows, scale,
                    dprobs, (int)kv, q_panel, (int)head.ldq, 1.0f, dk, (int)lddk);
    }
}
