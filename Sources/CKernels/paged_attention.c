// Attention of one query row against keys and values held in a paged cache: the sequence's
// positions live in fixed-size blocks of a shared pool, found through the sequence's block table.
#include "CKernels.h"
#include "kernel_math.h"

MG_KERNEL void mg_paged_attention(float *out, const float *q, long d, const float *keys, const float *values, long ld,
                                  const int32_t *blocks, long block_size, long visible, float scale, float *scores) {
    MG_ALLOW_REASSOCIATION
    float largest = -INFINITY;
    for (long j = 0; j < visible; j++) {
        const float *restrict k = keys + ((long)blocks[j / block_size] * block_size + j % block_size) * ld;
        float dot = 0;
        for (long i = 0; i < d; i++) dot += q[i] * k[i];
        scores[j] = dot * scale;
        largest = scores[j] > largest ? scores[j] : largest;
    }
    float sum = 0;
    for (long j = 0; j < visible; j++) {
        scores[j] = mg_exp(scores[j] - largest);
        sum += scores[j];
    }
    float inverse = 1.0f / sum;
    for (long i = 0; i < d; i++) out[i] = 0;
    for (long j = 0; j < visible; j++) {
        const float *restrict v = values + ((long)blocks[j / block_size] * block_size + j % block_size) * ld;
        float p = scores[j] * inverse;
        for (long i = 0; i < d; i++) out[i] += p * v[i];
    }
}
