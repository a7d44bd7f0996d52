#!/usr/bin/env python3
"""Fits the rational tanh of Sources/CKernels/kernel_math.h (mg_tanh) and prints its coefficients.

tanh(x) ≈ x·P(x²)/Q(x²), P and Q of degree 4 in x² with P(0) = Q(0) = 1, on [0, 9], for the least
maximum absolute error: linearised least squares (x·P − tanh·Q = 0, divided by the previous Q),
reweighted by Lawson's rule towards the minimax solution. P's leading coefficient is then raised so
that the fit reaches 1 + 3e-7 at x = 9: after rounding to fp32, the kernel's clamp of the result to ±1
makes tanh exactly ±1 from |x| = 9 on. Needs numpy only; run by hand when changing the fit:
    python3 scripts/fit_tanh_rational.py
"""
import numpy as np

DEGREE, LIMIT, OVERSHOOT = 4, 9.0, 3e-7


def polyval(c, s):
    return np.polyval(c[::-1], s)


def fit():
    x = np.unique(np.concatenate([np.linspace(1e-4, LIMIT, 20000),
                                  LIMIT * (1 - np.cos(np.linspace(0, np.pi / 2, 20000)))[1:]]))
    s, t = x * x, np.tanh(x)
    powers = np.arange(1, DEGREE + 1)
    # Unknowns p1..p4, q1..q4:  x·Σ p_k s^k − t·Σ q_k s^k = t − x.
    a = np.concatenate([x[:, None] * s[:, None] ** powers, -t[:, None] * s[:, None] ** powers], axis=1)
    weights, previous_q, best = np.ones_like(x), np.ones_like(x), None
    for _ in range(80):
        row = np.sqrt(weights) / previous_q
        c, *_ = np.linalg.lstsq(a * row[:, None], (t - x) * row, rcond=None)
        p, q = np.concatenate([[1.0], c[:DEGREE]]), np.concatenate([[1.0], c[DEGREE:]])
        error = x * polyval(p, s) / polyval(q, s) - t
        if best is None or np.abs(error).max() < best[0]:
            best = (np.abs(error).max(), p, q)
        previous_q = polyval(q, s)
        weights = weights * np.abs(error) / np.abs(error).mean()
        weights /= weights.sum()
    return best


max_error, p, q = fit()
s9 = LIMIT * LIMIT
p[DEGREE] += ((1 + OVERSHOOT) * polyval(q, s9) / LIMIT - polyval(p, s9)) / s9 ** DEGREE
x = np.linspace(0, LIMIT, 200001)
error = np.minimum(x * polyval(p, x * x) / polyval(q, x * x), 1) - np.tanh(x)
print(f"minimax fit: max |error| {max_error:.3g}; after raising p{DEGREE} and clamping at 1: {np.abs(error).max():.3g}")
print("P:", ", ".join(f"{v:.9e}" for v in p))
print("Q:", ", ".join(f"{v:.9e}" for v in q))
