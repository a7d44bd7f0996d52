// LayerNorm and RMSNorm, forward and backward, one row (token) at a time.
#include "CKernels.h"
#include "kernel_math.h"

MG_KERNEL void mg_layernorm_forward(float *restrict y, float *restrict mean, float *restrict rstd,
                                    const float *restrict x, const float *restrict gamma,
                                    const float *restrict beta, long rows, long cols, float eps) {
    MG_ALLOW_REASSOCIATION
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float sum = 0;
        for (long c = 0; c < cols; c++) sum += xr[c];
        float mu = sum / (float)cols;
        float sq = 0;
        for (long c = 0; c < cols; c++) { float d = xr[c] - mu; sq += d * d; }
        float rho = 1.0f / sqrtf(sq / (float)cols + eps);
        for (long c = 0; c < cols; c++) yr[c] = (xr[c] - mu) * rho * gamma[c] + (beta ? beta[c] : 0.0f);
        mean[r] = mu;
        rstd[r] = rho;
    }
}

MG_KERNEL void mg_layernorm_backward(float *restrict dx, float *restrict dgamma, float *restrict dbeta,
                                     const float *restrict dy, const float *restrict x,
                                     const float *restrict gamma, const float *restrict mean,
                                     const float *restrict rstd, long rows, long cols, int accumulate) {
    MG_ALLOW_REASSOCIATION
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        float mu = mean[r], rho = rstd[r];
        float g_mean = 0, gx_mean = 0;
        for (long c = 0; c < cols; c++) {
            float xhat = (xr[c] - mu) * rho;
            float g = dyr[c] * gamma[c];
            g_mean += g;
            gx_mean += g * xhat;
            dgamma[c] += dyr[c] * xhat;
        }
        if (dbeta)
            for (long c = 0; c < cols; c++) dbeta[c] += dyr[c];
        g_mean /= (float)cols;
        gx_mean /= (float)cols;
        // Two loops rather than β·dx with β = 0: a fresh dx may hold NaN bit patterns, and 0·NaN is NaN.
        if (accumulate)
            for (long c = 0; c < cols; c++) dxr[c] += rho * (dyr[c] * gamma[c] - g_mean - (xr[c] - mu) * rho * gx_mean);
        else
            for (long c = 0; c < cols; c++) dxr[c] = rho * (dyr[c] * gamma[c] - g_mean - (xr[c] - mu) * rho * gx_mean);
    }
}

MG_KERNEL void mg_rmsnorm_forward(float *restrict y, float *restrict rstd, const float *restrict x,
                                  const float *restrict gamma, long rows, long cols, float eps) {
    MG_ALLOW_REASSOCIATION
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float sq = 0;
        for (long c = 0; c < cols; c++) sq += xr[c] * xr[c];
        float rho = 1.0f / sqrtf(sq / (float)cols + eps);
        for (long c = 0; c < cols; c++) yr[c] = xr[c] * rho * gamma[c];
        rstd[r] = rho;
    }
}

MG_KERNEL void mg_rmsnorm_backward(float *restrict dx, float *restrict dgamma, const float *restrict dy,
                                   const float *restrict x, const float *restrict gamma,
                                   const float *restrict rstd, long rows, long cols, int accumulate) {
    MG_ALLOW_REASSOCIATION
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        float rho = rstd[r];
        float gx_mean = 0;
        for (long c = 0; c < cols; c++) {
            float xhat = xr[c] * rho;
            gx_mean += dyr[c] * gamma[c] * xhat;
            dgamma[c] += dyr[c] * xhat;
        }
        gx_mean /= (float)cols;
        if (accumulate)
            for (long c = 0; c < cols; c++) dxr[c] += rho * (dyr[c] * gamma[c] - xr[c] * rho * gx_mean);
        else
            for (long c = 0; c < cols; c++) dxr[c] = rho * (dyr[c] * gamma[c] - xr[c] * rho * gx_mean);
    }
}
