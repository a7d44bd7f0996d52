// Rotary position embedding (RoFormer; Megatron's non-interleaved "rotate half" layout).
#include "CKernels.h"
#include "kernel_math.h"

MG_KERNEL void mg_rope_apply(float *x, long ld, const long *head_offsets, long heads, long tokens, long rot_dim,
                             const int32_t *positions, const float *cos_table, const float *sin_table,
                             int direction) {
    long half = rot_dim / 2;
    float sign = direction < 0 ? -1.0f : 1.0f;
    float sines[half];
    for (long t = 0; t < tokens; t++) {
        const float *restrict cs = cos_table + (long)positions[t] * half;
        const float *restrict sn = sin_table + (long)positions[t] * half;
        for (long i = 0; i < half; i++) sines[i] = sign * sn[i];
        for (long h = 0; h < heads; h++) {
            float *restrict x1 = x + t * ld + head_offsets[h];
            float *restrict x2 = x1 + half;
            for (long i = 0; i < half; i++) {
                float a = x1[i], b = x2[i];
                x1[i] = a * cs[i] - b * sines[i];
                x2[i] = b * cs[i] + a * sines[i];
            }
        }
    }
}
