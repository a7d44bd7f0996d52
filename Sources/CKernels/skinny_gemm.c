// y = α·x·wᵀ + β·y for few rows of x (a decode step's tokens): each row of w is read from memory
// once and multiplied with every row of x while it is in L1. OpenBLAS's sgemm packs all of w for
// every call, which at a few rows of x costs three passes over w instead of one.
#include "CKernels.h"
#include "kernel_math.h"

typedef float mg_v8 __attribute__((ext_vector_type(8)));
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(mg_v8))
#define X_TILE 2
#define W_TILE 4

/// The 8 lanes of an accumulator summed in a fixed order, so that a row's result does not depend on
/// the other rows or on the tile it sat in (a macro: a function taking a 256-bit vector would change
/// its ABI in the baseline clone).
#define SUM8(s, v)                             \
    do {                                       \
        float lanes_[8];                       \
        memcpy(lanes_, &(v), sizeof lanes_);   \
        (s) = 0;                               \
        for (int l_ = 0; l_ < 8; l_++) (s) += lanes_[l_]; \
    } while (0)

/// One row of x (batch-1 decode): eight rows of w at a time against it, no lane of work wasted.
MG_INLINE void row_times_rows(float *y, const float *x, const float *w, long ldw, long n, long k, float alpha, float beta) {
    long k8 = k & ~7L;
    for (long j0 = 0; j0 < n; j0 += 8) {
        long nj = n - j0 < 8 ? n - j0 : 8;
        const float *wr[8];
        for (int b = 0; b < 8; b++) wr[b] = w + (j0 + (b < nj ? b : 0)) * ldw;
        mg_v8 acc[8];
        for (int b = 0; b < 8; b++) acc[b] = (mg_v8)0.0f;
        for (long kk = 0; kk < k8; kk += 8) {
            mg_v8 xv;
            LOAD8(xv, x + kk);
            for (int b = 0; b < 8; b++) {
                mg_v8 wv;
                LOAD8(wv, wr[b] + kk);
                acc[b] += xv * wv;
            }
        }
        for (long b = 0; b < nj; b++) {
            float s;
            SUM8(s, acc[b]);
            for (long kk = k8; kk < k; kk++) s += x[kk] * wr[b][kk];
            y[j0 + b] = beta == 0 ? alpha * s : alpha * s + beta * y[j0 + b];
        }
    }
}

MG_KERNEL void mg_skinny_gemm_nt(float *y, long ldy, const float *x, long ldx, const float *w, long ldw,
                                 long m, long n, long k, float alpha, float beta) {
    if (m == 1) {
        row_times_rows(y, x, w, ldw, n, k, alpha, beta);
        return;
    }
    long k8 = k & ~7L;
    for (long j0 = 0; j0 < n; j0 += W_TILE) {
        long nj = n - j0 < W_TILE ? n - j0 : W_TILE;
        const float *wr[W_TILE];
        for (int b = 0; b < W_TILE; b++) wr[b] = w + (j0 + (b < nj ? b : 0)) * ldw;  // rows past n repeat, unstored
        for (long i0 = 0; i0 < m; i0 += X_TILE) {
            long mi = m - i0 < X_TILE ? m - i0 : X_TILE;
            const float *xr[X_TILE];
            for (int a = 0; a < X_TILE; a++) xr[a] = x + (i0 + (a < mi ? a : 0)) * ldx;
            mg_v8 acc[X_TILE][W_TILE];
            for (int a = 0; a < X_TILE; a++)
                for (int b = 0; b < W_TILE; b++) acc[a][b] = (mg_v8)0.0f;
            for (long kk = 0; kk < k8; kk += 8) {
                mg_v8 wv[W_TILE], xv[X_TILE];
                for (int b = 0; b < W_TILE; b++) LOAD8(wv[b], wr[b] + kk);
                for (int a = 0; a < X_TILE; a++) LOAD8(xv[a], xr[a] + kk);
                for (int a = 0; a < X_TILE; a++)
                    for (int b = 0; b < W_TILE; b++) acc[a][b] += xv[a] * wv[b];
            }
            for (long a = 0; a < mi; a++) {
                for (long b = 0; b < nj; b++) {
                    float s;
                    SUM8(s, acc[a][b]);
                    for (long kk = k8; kk < k; kk++) s += xr[a][kk] * wr[b][kk];
                    float *out = y + (i0 + a) * ldy + j0 + b;
                    *out = beta == 0 ? alpha * s : alpha * s + beta * *out;
                }
            }
        }
    }
}
