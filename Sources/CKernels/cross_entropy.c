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

// The pieces of the vocabulary-parallel form, between whose calls the ranks reduce the row maxima
// and the sums of exponentials over the tensor-parallel group.

MG_KERNEL void mg_row_maxima(const float *restrict logits, float *restrict row_max, long rows, long vocab) {
    for (long r = 0; r < rows; r++) row_max[r] = mg_row_max(logits + r * vocab, vocab);
}

MG_KERNEL void mg_exp_row_sums(float *restrict logits, const float *restrict row_max, float *restrict sum_exp,
                               long rows, long vocab, int store) {
    MG_ALLOW_REASSOCIATION
    for (long r = 0; r < rows; r++) {
        float *z = logits + r * vocab, zmax = row_max[r], sum = 0;
        if (store) {
            for (long j = 0; j < vocab; j++) { float e = mg_exp(z[j] - zmax); z[j] = e; sum += e; }
        } else {
            for (long j = 0; j < vocab; j++) sum += mg_exp(z[j] - zmax);
        }
        sum_exp[r] = sum;
    }
}

MG_KERNEL void mg_scale_rows(float *restrict logits, const float *restrict scale, long rows, long vocab) {
    for (long r = 0; r < rows; r++) {
        float *z = logits + r * vocab, s = scale[r];
        for (long j = 0; j < vocab; j++) z[j] *= s;
    }
}
