// Causal self-attention core, flash-attention style on the CPU: one panel of query rows at a time,
// softmax statistics kept as a log-sum-exp per row, and the backward recomputing each panel's
// probabilities from it instead of storing the s × s matrix.
//
// The seven products per panel (QKᵀ and P·V forward; QKᵀ, dO·Vᵀ, Pᵀ·dO, dS·K, dSᵀ·Q backward) run
// through one register-tiled micro-kernel rather than OpenBLAS: with an inner dimension of d = 64,
// OpenBLAS spent a fifth of its time re-packing K and V for every panel and zeroing each result
// before accumulating into it (β = 0). Here K and V are packed once per head, a panel's operands
// stay in L1 and L2, and every product writes its result once.
#include "CKernels.h"
#include "kernel_math.h"

#define TILE_M 6
#define TILE_N 16

typedef float mg_v8 __attribute__((ext_vector_type(8)));

// Unaligned 8-float loads and stores (macros: a function taking or returning a 256-bit vector would
// change its ABI in the baseline clone).
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(mg_v8))
#define STORE8(p, v) memcpy((p), &(v), sizeof(mg_v8))
MG_INLINE long min_long(long a, long b) { return a < b ? a : b; }
MG_INLINE long round_up(long x, long to) { return (x + to - 1) / to * to; }

/// One 6 × 16 tile: c[r·ldc + j] = α·Σ_k A(r, k)·b[k·ldb + j] (+ c[r·ldc + j] when `accumulate`), for
/// r < m ≤ 6 and j < n ≤ 16, with A(r, k) = a[r·a_row + k·a_k] broadcast and 16 floats of b loaded
/// per k (b must hold 16 readable floats per k: packed operands are zero-padded). Twelve 8-float
/// accumulators, two loads and six broadcasts per twelve FMAs. A function of its own, not inlined:
/// inlined into the kernels, clang kept fewer accumulators in registers (backward 30 → 42 ms).
static MG_KERNEL void tile(long m, long n, long depth, const float *a, long a_row, long a_k, const float *b,
                           long ldb, float *c, long ldc, float alpha, int accumulate) {
    const float *rows[TILE_M];
    for (int r = 0; r < TILE_M; r++) rows[r] = a + (r < m ? r : 0) * a_row;  // rows past m repeat row 0, unstored
    mg_v8 acc[TILE_M][2];
    for (int r = 0; r < TILE_M; r++) acc[r][0] = acc[r][1] = (mg_v8)0.0f;
    for (long k = 0; k < depth; k++) {
        mg_v8 b0, b1;
        LOAD8(b0, b + k * ldb);
        LOAD8(b1, b + k * ldb + 8);
        for (int r = 0; r < TILE_M; r++) {
            mg_v8 x = rows[r][k * a_k];
            acc[r][0] += x * b0;
            acc[r][1] += x * b1;
        }
    }
    for (long r = 0; r < m; r++) {
        float *cr = c + r * ldc;
        mg_v8 lo = alpha * acc[r][0], hi = alpha * acc[r][1];
        if (n == TILE_N) {
            if (accumulate) {
                mg_v8 c0, c1;
                LOAD8(c0, cr);
                LOAD8(c1, cr + 8);
                lo += c0;
                hi += c1;
            }
            STORE8(cr, lo);
            STORE8(cr + 8, hi);
        } else {
            float t[TILE_N];
            STORE8(t, lo);
            STORE8(t + 8, hi);
            for (long j = 0; j < n; j++) cr[j] = accumulate ? cr[j] + t[j] : t[j];
        }
    }
}

// The three shapes of product in a panel of `rows` query rows starting at query i0. When causal
// (diag = i0; −1 otherwise) query row i0 + i sees keys 0 ... i0 + i, and each driver skips the work
// above that diagonal: whole score tiles, and the keys or query rows a tile cannot see.

/// Scores S[rows × n] = α·A·Xᵀ (QKᵀ, dO·Vᵀ): A rows a + i·lda, Xᵀ packed by pack_transposed.
MG_INLINE void gemm_scores(long rows, long n, long d, const float *a, long lda, const float *xt, float *c, long ldc,
                           float alpha, long diag) {
    for (long j = 0; j < n; j += TILE_N)
        for (long i = 0; i < rows; i += TILE_M) {
            long m = min_long(TILE_M, rows - i);
            if (diag >= 0 && j > diag + i + m - 1) continue;
            tile(m, min_long(TILE_N, n - j), d, a + i * lda, lda, 1, xt + j * d, TILE_N, c + i * ldc + j, ldc, alpha, 0);
        }
}

/// C[rows × d] = α·P·X (P·V, dS·K): P rows p + i·ldp over kv keys, X packed [kv × d16] by pack_rows.
MG_INLINE void gemm_rows_by_keys(long rows, long d, long kv, const float *p, long ldp, const float *x, long d16,
                                 float *c, long ldc, float alpha, long diag) {
    for (long j = 0; j < d; j += TILE_N)
        for (long i = 0; i < rows; i += TILE_M) {
            long m = min_long(TILE_M, rows - i), keys = diag >= 0 ? min_long(kv, diag + i + m) : kv;
            tile(m, min_long(TILE_N, d - j), keys, p + i * ldp, ldp, 1, x + j, d16, c + i * ldc + j, ldc, alpha, 0);
        }
}

/// C[kv × d] += α·Pᵀ·X (dV += P'ᵀ·dO, dK += dSᵀ·Q): P as above, X packed [rows × d16] by pack_rows.
MG_INLINE void gemm_keys_by_rows(long kv, long d, long rows, const float *p, long ldp, const float *x, long d16,
                                 float *c, long ldc, float alpha, long diag) {
    for (long j = 0; j < d; j += TILE_N)
        for (long key = 0; key < kv; key += TILE_M) {
            long first_row = diag >= 0 && key > diag ? key - diag : 0;   // rows before it cannot see these keys
            if (first_row >= rows) continue;
            tile(min_long(TILE_M, kv - key), min_long(TILE_N, d - j), rows - first_row, p + first_row * ldp + key, 1, ldp,
                 x + first_row * d16 + j, d16, c + key * ldc + j, ldc, alpha, 1);
        }
}

/// Row stride of a panel of scores over kv keys: a multiple of 16 floats, and an odd one, so that
/// walking down a column (the Pᵀ products) does not land every row in the same L1 set.
MG_INLINE long scores_stride(long kv) {
    long ld = round_up(kv, TILE_N);
    return (ld / TILE_N) % 2 ? ld : ld + TILE_N;
}

/// Rows [0, rows) of x (row stride ldx, d floats each) into p[rows × d16], zero-padded to d16 columns.
MG_INLINE void pack_rows(float *p, const float *x, long ldx, long rows, long d, long d16) {
    for (long r = 0; r < rows; r++) {
        for (long c = 0; c < d; c++) p[r * d16 + c] = x[r * ldx + c];
        for (long c = d; c < d16; c++) p[r * d16 + c] = 0.0f;
    }
}

/// Xᵀ for X = rows [0, seq) of x, in blocks of 16 rows: t[(j / 16)·16·d + c·16 + j mod 16] = x[j·ldx + c],
/// zero for seq ≤ j < s16: the 16 keys of a score tile are one contiguous d × 16 block.
MG_INLINE void pack_transposed(float *t, const float *x, long ldx, long seq, long s16, long d) {
    for (long j0 = 0; j0 < s16; j0 += TILE_N) {
        float *block = t + j0 * d;
        for (long j = j0; j < j0 + TILE_N; j++)
            for (long c = 0; c < d; c++) block[c * TILE_N + (j - j0)] = j < seq ? x[j * ldx + c] : 0.0f;
    }
}

long mg_attention_scratch_floats(long seq, long d, long block_rows) {
    long s16 = round_up(seq, TILE_N), d16 = round_up(d, TILE_N);
    // Backward: Kᵀ and Vᵀ in column blocks, K row-major; probabilities and their gradients for one
    // panel; the panel's Q and dO rows. The forward uses less.
    return 3 * s16 * d16 + 2 * block_rows * scores_stride(seq) + 2 * block_rows * d16;
}

/// Adds the bias of keys [lo, valid) to a row of scores: bias_table[bias_bucket[row + j]] (none when
/// bias_table is NULL).
MG_INLINE void add_bias(float *p, const float *bias_table, const int32_t *bias_bucket, long row, long lo, long valid) {
    if (!bias_table) return;
    const int32_t *bucket = bias_bucket + row;
    for (long j = lo; j < valid; j++) p[j] += bias_table[bucket[j]];
}

/// Keys row i may see end before this: the first `keys` of them, and when causal no later than i.
MG_INLINE long visible_keys(long i, long keys, int causal) { return causal ? min_long(i + 1, keys) : keys; }

/// Keys a panel of `rows` query rows from i0 may see end before this.
MG_INLINE long panel_keys(long i0, long rows, long keys, int causal) { return causal ? min_long(i0 + rows, keys) : keys; }

MG_KERNEL void mg_attention_forward(mg_attention_head head, float *lse, long queries, long seq, long keys, long d, float scale,
                                    int causal, const int32_t *first_key, const float *bias_table, const int32_t *bias_bucket,
                                    long block_rows, float p_keep, uint64_t seed, uint64_t stream, long head_index,
                                    float *scratch) {
    MG_ALLOW_REASSOCIATION
    long s16 = round_up(seq, TILE_N), d16 = round_up(d, TILE_N);
    float *kt = scratch, *vp = kt + s16 * d16, *scores = vp + s16 * d16;
    float *qp = scores + block_rows * scores_stride(seq), *inverse_sums = qp + block_rows * d16;
    pack_transposed(kt, head.k, head.ldk, seq, s16, d);
    pack_rows(vp, head.v, head.ldv, seq, d, d16);
    for (long i0 = 0; i0 < queries; i0 += block_rows) {
        long rows = min_long(block_rows, queries - i0);
        long kv = panel_keys(i0, rows, keys, causal), ld = scores_stride(kv), diag = causal ? i0 : -1;
        // scores[rows, kv] = scale · Q[i0 ..< i0+rows] · K[0 ..< kv]ᵀ, Q's rows packed: read for every
        // tile of keys, in place they would sit a fused-QKV row apart, a few L1 sets for all of them.
        pack_rows(qp, head.q + i0 * head.ldq, head.ldq, rows, d, d16);
        gemm_scores(rows, kv, d, qp, d16, kt, scores, ld, scale, diag);
        for (long r = 0; r < rows; r++) {
            long i = i0 + r, valid = visible_keys(i, keys, causal), lo = first_key ? first_key[i] : 0;
            float *p = scores + r * ld;
            add_bias(p, bias_table, bias_bucket, i * seq, lo, valid);
            float zmax = mg_row_max(p + lo, valid - lo);
            float sum = 0;
            // e^{z − max}, left unnormalised: the row's 1/Σ scales its output row after P·V.
            for (long j = lo; j < valid; j++) { float e = mg_exp(p[j] - zmax); p[j] = e; sum += e; }
            inverse_sums[r] = 1.0f / sum;
            for (long j = 0; j < lo; j++) p[j] = 0.0f;
            for (long j = valid; j < kv; j++) p[j] = 0.0f;
            lse[i] = zmax + logf(sum);
            if (p_keep < 1.0f) {
                mg_dropout(p + lo, p + lo, valid - lo, (uint64_t)((head_index * queries + i) * seq + lo), p_keep, seed, stream);
            }
        }
        // out[i0 ..< i0+rows] = P · V[0 ..< kv], P = e^{z − max} / Σ
        float *out = head.out + i0 * head.ldo;
        gemm_rows_by_keys(rows, d, kv, scores, ld, vp, d16, out, head.ldo, 1.0f, diag);
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < d; c++) out[r * head.ldo + c] *= inverse_sums[r];
    }
}

MG_KERNEL void mg_attention_backward(mg_attention_head head, const float *lse, const float *dout,
                                     float *dq, long lddq, float *dk, long lddk, float *dv, long lddv,
                                     long queries, long seq, long keys, long d, float scale, int causal, const int32_t *first_key,
                                     const float *bias_table, const int32_t *bias_bucket, float *dbias_table,
                                     long block_rows, float p_keep, uint64_t seed, uint64_t stream, long head_index,
                                     float *scratch) {
    MG_ALLOW_REASSOCIATION
    long s16 = round_up(seq, TILE_N), d16 = round_up(d, TILE_N);
    float *kt = scratch, *vt = kt + s16 * d16, *kp = vt + s16 * d16;
    float *probs = kp + s16 * d16, *dprobs = probs + block_rows * scores_stride(seq);
    float *qp = dprobs + block_rows * scores_stride(seq), *dop = qp + block_rows * d16;
    pack_transposed(kt, head.k, head.ldk, seq, s16, d);
    pack_transposed(vt, head.v, head.ldv, seq, s16, d);
    pack_rows(kp, head.k, head.ldk, seq, d, d16);
    float multipliers[MG_MASK_CHUNK];
    int dropping = p_keep < 1.0f;
    uint64_t threshold = mg_keep_threshold(p_keep);
    for (long i0 = 0; i0 < queries; i0 += block_rows) {
        long rows = min_long(block_rows, queries - i0);
        long kv = panel_keys(i0, rows, keys, causal), ld = scores_stride(kv), diag = causal ? i0 : -1;
        pack_rows(qp, head.q + i0 * head.ldq, head.ldq, rows, d, d16);
        pack_rows(dop, dout + i0 * head.ldo, head.ldo, rows, d, d16);
        // P = exp(scale · Q Kᵀ − lse), recomputed; dP' = dO · Vᵀ (gradient of the dropped P').
        gemm_scores(rows, kv, d, qp, d16, kt, probs, ld, scale, diag);
        gemm_scores(rows, kv, d, dop, d16, vt, dprobs, ld, 1.0f, diag);
        for (long r = 0; r < rows; r++) {
            long i = i0 + r, valid = visible_keys(i, keys, causal), lo = first_key ? first_key[i] : 0;
            float *p = probs + r * ld, *dp = dprobs + r * ld;
            const float *o = head.out + i * head.ldo, *g = dout + i * head.ldo;
            // D_i = dO_i · O_i = Σ_j P'_ij dP'_ij, the softmax backward's row term.
            float D = 0;
            for (long c = 0; c < d; c++) D += g[c] * o[c];
            float li = lse[i];
            add_bias(p, bias_table, bias_bucket, i * seq, lo, valid);
            if (!dropping) {
                for (long j = lo; j < valid; j++) {
                    float e = mg_exp(p[j] - li);
                    p[j] = e;
                    dp[j] = e * (dp[j] - D);
                }
            } else {
                for (long j = lo; j < valid; j++) p[j] = mg_exp(p[j] - li);
                // With keep multipliers m: dS = P·(m·dP' − D), and P' = m·P feeds dV.
                uint64_t row = (uint64_t)((head_index * queries + i) * seq);
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
            if (dbias_table) {
                const int32_t *bucket = bias_bucket + i * seq;
                for (long j = lo; j < valid; j++) dbias_table[bucket[j]] += dp[j];
            }
            for (long j = 0; j < lo; j++) { p[j] = 0.0f; dp[j] = 0.0f; }
            for (long j = valid; j < kv; j++) { p[j] = 0.0f; dp[j] = 0.0f; }
        }
        // dV[0 ..< kv] += P'ᵀ · dO;  dQ = scale · dS · K;  dK[0 ..< kv] += scale · dSᵀ · Q
        gemm_keys_by_rows(kv, d, rows, probs, ld, dop, d16, dv, lddv, 1.0f, diag);
        gemm_rows_by_keys(rows, d, kv, dprobs, ld, kp, d16, dq + i0 * lddq, lddq, scale, diag);
        gemm_keys_by_rows(kv, d, rows, dprobs, ld, qp, d16, dk, lddk, scale, diag);
    }
}
