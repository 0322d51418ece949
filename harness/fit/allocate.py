"""Compute-optimal allocation of a fitted law: N*(C), D*(C), L*(C) with C = 6 N D (numpy only)."""
from __future__ import annotations

import numpy as np

from harness.fit.law import PARAMS, Fit, _columns


def allocation(fit: Fit, z: np.ndarray, C) -> dict:
    """Compute-optimal N*, D* and L* at budgets C (C = 6 N D) for parameter rows z (R, q).

    Chinchilla-type forms in closed form (datacon with unlimited unique data is Chinchilla);
    others by a grid over log N (step 1 %), which Kaplan's non-separable form needs."""
    C = np.atleast_1d(np.asarray(C, float))
    form = fit.form
    if form.name in ("chinchilla", "datacon"):
        p = form.physical(z)
        co = compute_optimal(*(p[k][:, None] for k in PARAMS), C=C[None, :])
        N, D = co["N_opt"], co["D_opt"]
    else:
        N = np.stack([_argmin_n(form, z, c) for c in C], -1)
        D = C[None, :] / (6 * N)
    with np.errstate(invalid="ignore", divide="ignore"):  # rows with no optimum carry NaN
        lopt = np.stack([np.exp(form.log_predict(z[i:i + 1], _columns(N[i], D[i]))[0]) if np.all(np.isfinite(N[i]))
                         else np.full(len(C), np.nan) for i in range(len(z))])
    return {"N_opt": N, "D_opt": D, "loss_opt": lopt}


def _argmin_n(form, z: np.ndarray, C: float, chunk=256) -> np.ndarray:
    """argmin over N of L(N, C/6N) per row: a grid of step 0.05 in ln N over +-25 around
    sqrt(C/6), refined by the vertex of a parabola through the best grid point and its neighbours
    (loss is unimodal along an IsoFLOP line for these forms). Rows in chunks to bound memory."""
    step = 0.05
    logn = np.log(C / 6) / 2 + np.arange(-25, 25 + step / 2, step)
    X = _columns(np.exp(logn), C / 6 / np.exp(logn))
    out = np.empty(len(z))
    for s in range(0, len(z), chunk):
        lp = form.log_predict(z[s:s + chunk], X)
        i = np.clip(np.argmin(lp, axis=1), 1, len(logn) - 2)
        rows = np.arange(len(i))
        lo, mid, hi = lp[rows, i - 1], lp[rows, i], lp[rows, i + 1]
        curv = lo - 2 * mid + hi
        shift = np.where(curv > 0, 0.5 * (lo - hi) / np.where(curv > 0, curv, 1.0), 0.0)
        out[s:s + chunk] = logn[i] + step * np.clip(shift, -1, 1)
    return np.exp(out)


def compute_optimal(E, A, B, alpha, beta, C):
    """Compute-optimal allocation under L = E + A/N^alpha + B/D^beta with C = 6 N D.

    N*(C) = G (C/6)^a, D*(C) = G^-1 (C/6)^b, a = beta/(alpha+beta), b = alpha/(alpha+beta),
    G = (alpha A / (beta B))^(1/(alpha+beta)) (Hoffmann et al. 2022, eq. 4). Parameters may be
    arrays (bootstrap samples); C broadcasts against them."""
    alpha, beta = np.asarray(alpha, float), np.asarray(beta, float)
    a = beta / (alpha + beta)
    b = alpha / (alpha + beta)
    ratio = alpha * np.asarray(A, float) / (beta * np.asarray(B, float))
    expo = 1.0 / (alpha + beta)
    # A bootstrap refit may end with a negative exponent: no optimum exists, so G is NaN (which
    # summarise drops), not a fractional power of a negative number.
    G = np.full(np.broadcast(ratio, expo).shape, np.nan)
    with np.errstate(over="ignore"):  # alpha + beta -> 0 sends G past the float range: inf is
        # the honest value and summarise reports such an interval as unbounded
        np.power(ratio, expo, out=G, where=ratio > 0)
        C6 = np.asarray(C, float) / 6.0
        N_opt = G * C6**a
        D_opt = C6**b / G
    return {"a": a, "b": b, "G": G, "N_opt": N_opt, "D_opt": D_opt}
