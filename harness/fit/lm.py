"""The fitter's solver: batched, iteratively reweighted Levenberg-Marquardt on a summed Huber loss.

numpy only, no I/O. A Huber loss is a weighted least squares with weights min(1, delta/|r|), so each
step is a Gauss-Newton step with those weights, kept only if the Huber objective falls. It refines
many parameter vectors at once (all starting points of a fit, or all bootstrap resamples as weight
rows), so 1000 refits cost one vectorised loop (fit.py builds fits on it).
"""
from __future__ import annotations

import numpy as np

HUBER_DELTA = 1e-3  # Besiroglu et al. (2024): Huber delta on log-loss residuals
LM_GTOL = 1e-2  # max |gradient| of objective/delta for a stopped LM row to count as converged


def huber(r: np.ndarray, w: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    """Weighted summed Huber loss over the last axis."""
    a = np.abs(r)
    return np.sum(w * np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)), axis=-1)


def lm(form, X, logL, W, z0, delta=HUBER_DELTA, max_iter=300):
    """Batched IRLS Levenberg-Marquardt from each row of z0 (R, q) with weight rows W (R, n).

    Returns (z, objective, converged, at_bound, iterations), one entry per row."""
    z, W = np.array(z0, float), np.broadcast_to(W, (len(z0), len(logL)))
    lo, hi = form.box()
    f = huber(logL - form.log_predict(z, X), W, delta)
    lam = np.full(len(z), 1e-3)
    done, iters = np.zeros(len(z), bool), np.zeros(len(z), int)
    eye = np.eye(z.shape[1])
    anchor, anchor_f, stalled = z.copy(), f.copy(), np.zeros(len(z), bool)
    for it in range(max_iter):
        idx = np.flatnonzero(~done)
        if not len(idx):
            break
        if it and it % 25 == 0:  # rows still drifting along a flat valley (to a bound): try a long jump
            _extrapolate(form, X, logL, W, z, f, anchor, idx, lo, hi, delta)
            # 25 steps that lowered the objective by < 1e-5 of itself: the row sits in a valley the
            # data cannot resolve; where along it does not change the fit (nor, much, an interval)
            stalled[idx] = anchor_f[idx] - f[idx] < 1e-5 * f[idx]
            done |= stalled
            anchor, anchor_f = z.copy(), f.copy()
            idx = np.flatnonzero(~done)
            if not len(idx):
                break
        zi, Wi = z[idx], W[idx]
        lp, J = form.log_predict_jac(zi, X)
        r = logL - lp
        a = np.abs(r)
        wi = Wi * np.where(a <= delta, 1.0, delta / np.maximum(a, delta))
        Jw = J.transpose(0, 2, 1) * wi[:, None, :]
        H = Jw @ J
        g = (Jw @ r[..., None])[..., 0]  # minus the gradient of the Huber objective
        # a coordinate on its box edge that the descent direction pushes outward is held there
        held = (np.isclose(zi, hi) & (g > 0)) | (np.isclose(zi, lo) & (g < 0))
        H = np.where(held[:, :, None] | held[:, None, :], 0.0, H) + held[:, :, None] * eye
        g = np.where(held, 0.0, g)
        diag = np.einsum("rpp->rp", H)
        # damping scaled by each row's curvature, floored so that a flat direction (a parameter the
        # data does not constrain at all, e.g. R_D when every run repeats its data equally) cannot
        # make the system singular
        floor = 1e-10 * diag.max(axis=1, keepdims=True) + 1e-300
        damp = lam[idx, None, None] * np.maximum(diag, floor)[:, :, None] * eye
        try:
            step = np.linalg.solve(H + damp, g[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a degenerate resample (few distinct points): least-norm step
            step = (np.linalg.pinv(H + damp) @ g[..., None])[..., 0]
        cand = np.clip(zi + step, lo, hi)
        fc = huber(logL - form.log_predict(cand, X), Wi, delta)
        better = fc <= f[idx]
        moved = np.max(np.abs(cand - zi), axis=1)
        z[idx[better]], f[idx[better]] = cand[better], fc[better]
        lam[idx] = np.where(better, lam[idx] / 3, lam[idx] * 4)
        iters[idx] += 1
        done[idx] = (better & (moved < 1e-10)) | (better & (f[idx] - fc < 1e-13 * delta) & (moved < 1e-6)) \
            | (lam[idx] > 1e8)
    grad = -gradient(form, X, logL, W, z, delta) / delta
    at_lo, at_hi = np.isclose(z, lo, atol=1e-9), np.isclose(z, hi, atol=1e-9)
    free = ~((at_lo & (grad > 0)) | (at_hi & (grad < 0)))  # a bound holding the fit back: not a gradient
    # LM stops when no damped step lowers the objective; near the Huber kinks that leaves a
    # gradient of ~3e-4 while the optimum agrees with L-BFGS-B's to ~1e-5 in log A (checked on
    # the Epoch points), so a stopped row counts as converged unless its gradient is still large.
    converged = done & ((np.max(np.abs(np.where(free, grad, 0.0)), axis=1) < LM_GTOL) | stalled)
    return z, f, converged, (at_lo | at_hi), iters


def _extrapolate(form, X, logL, W, z, f, anchor, idx, lo, hi, delta):
    """Continue each row's drift over the last 25 iterations up to 30x further; keep a jump where
    the objective is no worse. Refits that run off to infinity move almost in a straight line in log space, so
    this reaches the box edge in a few jumps instead of thousands of small damped steps."""
    for factor in (30.0, 10.0, 3.0):  # the longest jump that does not raise the objective wins
        cand = np.clip(z[idx] + factor * (z[idx] - anchor[idx]), lo, hi)
        fc = huber(logL - form.log_predict(cand, X), W[idx], delta)
        ok = fc <= f[idx]
        z[idx[ok]], f[idx[ok]] = cand[ok], fc[ok]
        idx = idx[~ok]


def gradient(form, X, logL, W, z, delta):
    """Minus the gradient of the Huber objective, (R, q)."""
    lp, J = form.log_predict_jac(z, X)
    r = logL - lp
    psi = np.clip(r, -delta, delta)
    return np.einsum("rnp,rn->rp", J, np.broadcast_to(W, r.shape) * psi)
