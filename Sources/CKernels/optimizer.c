// Optimizer updates over flat fp32 buffers.
#include "CKernels.h"
#include "kernel_math.h"

MG_KERNEL void mg_adamw(float *restrict param, const float *restrict grad, float *restrict exp_avg,
                        float *restrict exp_avg_sq, long n, float lr, float beta1, float beta2, float eps,
                        float weight_decay, float bias_correction1, float bias_correction2, float grad_scale) {
    float inv_bc1 = 1.0f / bias_correction1, inv_bc2 = 1.0f / bias_correction2;
    for (long i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float m = beta1 * exp_avg[i] + (1.0f - beta1) * g;
        float v = beta2 * exp_avg_sq[i] + (1.0f - beta2) * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float update = (m * inv_bc1) / (mg_sqrt(v * inv_bc2) + eps) + weight_decay * param[i];
        param[i] -= lr * update;
    }
}

MG_KERNEL void mg_sgd(float *restrict param, const float *restrict grad, float *restrict momentum_buffer, long n,
                      float lr, float momentum, float weight_decay, float grad_scale, int first_step) {
    for (long i = 0; i < n; i++) {
        float g = grad[i] * grad_scale + weight_decay * param[i];
        float b = g;
        if (momentum_buffer) {
            b = first_step ? g : momentum * momentum_buffer[i] + g;
            momentum_buffer[i] = b;
        }
        param[i] -= lr * b;
    }
}

MG_KERNEL int mg_unscale_gradients(float *g, long n, float inverse_scale, int precision) {
    uint32_t any = 0;
    // One loop per precision, so that each vectorises without a branch inside.
    #define UNSCALE(ROUND) for (long i = 0; i < n; i++) { \
        float v = ROUND(g[i]); \
        any |= mg_is_nonfinite(v); \
        g[i] = v * inverse_scale; \
    }
    #define AS_IS(x) (x)
    if (precision == MG_PRECISION_F16) UNSCALE(mg_round_f16)
    else if (precision == MG_PRECISION_BF16) UNSCALE(mg_round_bf16)
    else UNSCALE(AS_IS)
    #undef UNSCALE
    #undef AS_IS
    return any != 0;
}
