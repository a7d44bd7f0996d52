#!/usr/bin/env python3
"""Fits the rational tanh and erf of Sources/CKernels/kernel_math.h (mg_tanh, mg_erf), and the GELU
derivative of Sources/CKernels/elementwise.c (gelu_grad), and prints their coefficients:
    python3 scripts/fit_odd_rational.py tanh|erf|gelu_grad

f(x) ≈ x·P(x²)/Q(x²) on [0, LIMIT], P and Q of one degree in x² (4 for tanh, 5 for erf) with
Q(0) = 1 and P(0) = f′(0) (1 for tanh, 2/√π for erf), for the least maximum absolute error: linearised least squares
(x·P − f·Q = 0, divided by the previous Q), reweighted by Lawson's rule towards the minimax
solution. P's leading coefficient is then raised so that the fit reaches 1 + 3e-7 at LIMIT: after
rounding to fp32, the kernel's clamp of the result to ±1 makes f exactly ±1 from |x| = LIMIT on
(tanh(9) = 1 − 3e-8, erf(4) = 1 − 1.5e-8: both round to 1 in fp32).

gelu_grad fits f = gelu′ − ½ of Megatron's tanh GELU, an odd function with a bump above its limit ½
(gelu′ peaks at 1.13 near u = 1.5), so its fit is left as it is and the kernel saturates by a select:
gelu′ is exactly 1 from u = 5.5 on and 0 below −5.5 (true gelu′(5.5) = 1 + 5e-8).
Needs numpy only; run by hand when changing a fit.
"""
import math
import sys

import numpy as np

OVERSHOOT = 3e-7
GELU_K0, GELU_K1 = math.sqrt(2 / math.pi), 0.044715


def gelu_grad_minus_half(u):
    t = np.tanh(GELU_K0 * u * (1 + GELU_K1 * u * u))
    return 0.5 * t + 0.5 * u * (1 - t * t) * GELU_K0 * (1 + 3 * GELU_K1 * u * u)


FUNCTIONS = {  # name: (f, LIMIT, f′(0), degree, whether f saturates at 1 by a clamp)
    "tanh": (np.tanh, 9.0, 1.0, 4, True),
    "erf": (np.vectorize(math.erf), 4.0, 2 / math.sqrt(math.pi), 5, True),
    "gelu_grad": (gelu_grad_minus_half, 5.5, GELU_K0, 5, False),
}


def polyval(c, s):
    return np.polyval(c[::-1], s)


def fit(f, limit, slope, degree):
    x = np.unique(np.concatenate([np.linspace(1e-4, limit, 20000),
                                  limit * (1 - np.cos(np.linspace(0, np.pi / 2, 20000)))[1:]]))
    s, t = x * x, f(x)
    powers = np.arange(1, degree + 1)
    # Unknowns p1..pn, q1..qn:  x·Σ p_k s^k − t·Σ q_k s^k = t − slope·x.
    a = np.concatenate([x[:, None] * s[:, None] ** powers, -t[:, None] * s[:, None] ** powers], axis=1)
    weights, previous_q, best = np.ones_like(x), np.ones_like(x), None
    for _ in range(80):
        row = np.sqrt(weights) / previous_q
        c, *_ = np.linalg.lstsq(a * row[:, None], (t - slope * x) * row, rcond=None)
        p, q = np.concatenate([[slope], c[:degree]]), np.concatenate([[1.0], c[degree:]])
        error = x * polyval(p, s) / polyval(q, s) - t
        if best is None or np.abs(error).max() < best[0]:
            best = (np.abs(error).max(), p, q)
        previous_q = polyval(q, s)
        weights = weights * np.abs(error) / np.abs(error).mean()
        weights /= weights.sum()
    return best


name = sys.argv[1] if len(sys.argv) > 1 else "tanh"
f, limit, slope, degree, clamped = FUNCTIONS[name]
max_error, p, q = fit(f, limit, slope, degree)
x = np.linspace(0, limit, 200001)
if clamped:
    s_limit = limit * limit
    p[degree] += ((1 + OVERSHOOT) * polyval(q, s_limit) / limit - polyval(p, s_limit)) / s_limit ** degree
    error = np.minimum(x * polyval(p, x * x) / polyval(q, x * x), 1) - f(x)
    print(f"{name}: minimax fit: max |error| {max_error:.3g}; after raising p{degree} and clamping at 1: {np.abs(error).max():.3g}")
else:
    error = x * polyval(p, x * x) / polyval(q, x * x) - f(x)
    beyond = np.abs(0.5 - f(np.linspace(limit, 4 * limit, 10000))).max()
    print(f"{name}: minimax fit: max |error| {max_error:.3g} on [0, {limit}]; |½ − f| beyond it at most {beyond:.3g}")
print("P:", ", ".join(f"{v:.9e}" for v in p))
print("Q:", ", ".join(f"{v:.9e}" for v in q))
