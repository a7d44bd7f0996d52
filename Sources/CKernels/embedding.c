// Embedding lookup (gather) and its backward (scatter-add).
#include "CKernels.h"
#include "kernel_math.h"

MG_KERNEL void mg_embedding_forward(float *restrict out, const float *restrict word, long vocab_start, long vocab_rows,
                                    const int32_t *restrict ids, const float *restrict position,
                                    const int32_t *restrict positions, long tokens, long hidden) {
    for (long t = 0; t < tokens; t++) {
        long row = (long)ids[t] - vocab_start;
        float *o = out + t * hidden;
        if (row < 0 || row >= vocab_rows) {
            if (position) memcpy(o, position + (long)positions[t] * hidden, (size_t)hidden * sizeof(float));
            else memset(o, 0, (size_t)hidden * sizeof(float));
            continue;
        }
        const float *w = word + row * hidden;
        if (position) {
            const float *p = position + (long)positions[t] * hidden;
            for (long c = 0; c < hidden; c++) o[c] = w[c] + p[c];
        } else {
            memcpy(o, w, (size_t)hidden * sizeof(float));
        }
    }
}

MG_KERNEL void mg_embedding_backward(float *restrict dword, long vocab_start, long vocab_rows, float *restrict dposition,
                                     const float *restrict dout, const int32_t *restrict ids,
                                     const int32_t *restrict positions, long tokens, long hidden, long col0, long col1) {
    for (long t = 0; t < tokens; t++) {
        const float *g = dout + t * hidden;
        long row = (long)ids[t] - vocab_start;
        if (row >= 0 && row < vocab_rows) {
            float *w = dword + row * hidden;
            for (long c = col0; c < col1; c++) w[c] += g[c];
        }
        if (dposition) {
            float *p = dposition + (long)positions[t] * hidden;
            for (long c = col0; c < col1; c++) p[c] += g[c];
        }
    }
}

MG_KERNEL void mg_embedding_forward_half(float *restrict out, const uint16_t *restrict word, int precision, long vocab_start,
                                         long vocab_rows, const int32_t *restrict ids, const float *restrict position,
                                         const int32_t *restrict positions, long tokens, long hidden) {
    for (long t = 0; t < tokens; t++) {
        long row = (long)ids[t] - vocab_start;
        float *o = out + t * hidden;
        if (row < 0 || row >= vocab_rows) memset(o, 0, (size_t)hidden * sizeof(float));
        else mg_half_to_f32(o, word + row * hidden, hidden, precision);
        if (position) {
            const float *p = position + (long)positions[t] * hidden;
            for (long c = 0; c < hidden; c++) o[c] += p[c];
        }
    }
}

MG_KERNEL void mg_embedding_backward_half(uint16_t *restrict dword, int precision, long vocab_start, long vocab_rows,
                                          const float *restrict dout, const int32_t *restrict ids, long tokens, long hidden,
                                          long col0, long col1) {
    for (long t = 0; t < tokens; t++) {
        long row = (long)ids[t] - vocab_start;
        if (row >= 0 && row < vocab_rows) mg_accumulate_half(dword + row * hidden + col0, dout + t * hidden + col0, col1 - col0, precision);
    }
}
