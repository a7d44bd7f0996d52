// Softmax cross-entropy over the vocabulary, fused with its backward.
#include "CKernels.h"
#include "kernel_math.h"

MG_KERNEL void mg_cross_entropy(float *restrict logits, float *restrict loss, const int32_t *restrict target,
                                const float *restrict grad_weight, long rows, long vocab) {
    MG_ALLOW_REASSOCIATION
    for (long r = 0; r < rows; r++) {
        float *z = logits + r * vocab;
        float zmax = mg_row_max(z, vocab);
        long t = target[r];
        float z_target = z[t];
        float sum = 0;
        if (!grad_weight) {
            for (long j = 0; j < vocab; j++) sum += mg_exp(z[j] - zmax);
            loss[r] = zmax + logf(sum) - z_target;
            continue;
        }
        // The row (50K floats) stays in L2 across these passes: e^{z − max} is stored, then scaled.
        for (long j = 0; j < vocab; j++) { float e = mg_exp(z[j] - zmax); z[j] = e; sum += e; }
        loss[r] = zmax + logf(sum) - z_target;
        float w = grad_weight[r], scale = w / sum;
        for (long j = 0; j < vocab; j++) z[j] *= scale;
        z[t] -= w;
    }
}
