"""Chinchilla approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta (numpy/scipy only, no I/O).

The fit follows Besiroglu et al. (2024, arXiv:2404.10102): in log space,
log L_hat = LSE(a - alpha*log N, b - beta*log D, e) with A = e^a, B = e^b, E = e^e, and a
Huber loss (delta = 1e-3) on log L - log L_hat, SUMMED over points (Hoffmann et al. took the mean,
whose tiny scale made their optimiser stop early).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, nnls

from harness.errors import HarnessError

PARAMS = ("E", "A", "B", "alpha", "beta")
HUBER_DELTA = 1e-3
# Options for L-BFGS-B. The summed Huber objective is ~1e-3 at the optimum and scipy's relative
# ftol test divides by max(|f|, 1), so with defaults it stops far from the optimum; we optimise
# objective/delta (order one) and ask for tight tolerances so the fit ends on the gradient.
_LBFGS = {"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9, "maxcor": 20}


@dataclass
class ParametricFit:
    """Approach-3 fit in physical parameters, plus bootstrap errors once `bootstrap` has run."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float  # summed Huber loss at the optimum (natural-log residuals)
    n_points: int
    converged: bool
    message: str
    n_iter: int
    n_starts: int
    delta: float = HUBER_DELTA
    identifiable: bool = True
    n_bootstrap: int = 0  # resamples refitted
    n_boot_failed: int = 0  # resamples whose refit did not converge (dropped)
    stderr: dict = field(default_factory=dict)
    ci95: dict = field(default_factory=dict)
    samples: np.ndarray | None = field(default=None, repr=False)  # bootstrap (n, 5), PARAMS order

    @property
    def params(self) -> dict:
        return {k: getattr(self, k) for k in PARAMS}

    def predict(self, N, D) -> np.ndarray:
        return predict(self.params, N, D)


def predict(p: dict, N, D) -> np.ndarray:
    """L(N, D) = E + A/N^alpha + B/D^beta for a dict of physical parameters."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def to_theta(p: dict) -> np.ndarray:
    return np.array([np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]])


def from_theta(theta) -> dict:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
            "alpha": alpha, "beta": beta}


def huber_objective(theta, logN, logD, logL, w, delta=HUBER_DELTA):
    """Weighted summed Huber loss of log residuals and its analytic gradient.

    theta = (a, b, e, alpha, beta); w are per-point weights (bootstrap counts)."""
    a, b, e, alpha, beta = theta
    t1 = a - alpha * logN
    t2 = b - beta * logD
    m = np.maximum(np.maximum(t1, t2), e)  # LSE shift for overflow safety
    x1, x2, x3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
    s = x1 + x2 + x3
    r = m + np.log(s) - logL
    absr = np.abs(r)
    small = absr <= delta
    loss = np.where(small, 0.5 * r * r, delta * (absr - 0.5 * delta))
    dr = w * np.where(small, r, delta * np.sign(r)) / s  # d loss / d r, folded with softmax norm
    g1, g2 = dr * x1, dr * x2
    grad = np.array([g1.sum(), g2.sum(), (dr * x3).sum(), -(g1 @ logN), -(g2 @ logD)])
    return float(w @ loss), grad


def _scaled(theta, logN, logD, logL, w, delta):
    f, g = huber_objective(theta, logN, logD, logL, w, delta)
    return f / delta, g / delta


def linearised_starts(N, D, L, n_keep=6, grid=None) -> list[np.ndarray]:
    """Starting points: for each (alpha, beta) on a grid, E, A, B >= 0 by NNLS in loss space.

    The model is linear in (E, A, B) once the exponents are fixed, so a cheap 2-D scan finds the
    basins a blind 5-D grid would need thousands of starts to hit."""
    grid = np.linspace(0.05, 1.5, 16) if grid is None else grid
    scored = []
    for alpha in grid:
        for beta in grid:
            X = np.column_stack([np.ones_like(N), N**-alpha, D**-beta])
            scale = X.max(axis=0)  # columns span many decades; NNLS wants them comparable
            coef, _ = nnls(X / scale, L)
            coef = np.maximum(coef / scale, 1e-8)
            rel = np.log(X @ coef) - np.log(L)
            scored.append((float(np.abs(rel).sum()), alpha, beta, coef))
    scored.sort(key=lambda s: s[0])
    starts = []
    for _, alpha, beta, (E, A, B) in scored[:n_keep]:
        starts.append(np.array([np.log(A), np.log(B), np.log(max(E, 1e-3)), alpha, beta]))
    return starts


def minimise(theta0, logN, logD, logL, w, delta=HUBER_DELTA):
    """One L-BFGS-B run from theta0 on the (scaled) weighted objective."""
    return minimize(_scaled, theta0, args=(logN, logD, logL, w, delta), jac=True,
                    method="L-BFGS-B", options=_LBFGS)


def converged(res, gtol=1e-4) -> bool:
    """L-BFGS-B success, or a line-search stop that is already at a stationary point.

    Near the optimum the Huber kinks make the line search give up at machine precision
    ("ABNORMAL_TERMINATION_IN_LNSRCH") although restarts move theta by < 1e-7; the scaled
    objective is order one, so a max-gradient test of 1e-4 separates those from real failures."""
    return bool(res.success or np.max(np.abs(res.jac)) < gtol)


def check_points(N, D, L, n_params=len(PARAMS)) -> tuple[np.ndarray, ...]:
    """Validate fitter input: finite, positive, and more points than parameters."""
    arrays = []
    for name, x in (("N", N), ("D", D), ("loss", L)):
        x = np.asarray(x, float)
        if x.ndim != 1:
            raise HarnessError(f"{name} must be one-dimensional, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise HarnessError(f"{name} has {int((~np.isfinite(x)).sum())} NaN/inf values")
        if np.any(x <= 0):
            raise HarnessError(f"{name} has {int((x <= 0).sum())} non-positive values")
        arrays.append(x)
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise HarnessError("N, D and loss have different lengths")
    if len(arrays[0]) <= n_params:
        raise HarnessError(f"{len(arrays[0])} points cannot determine {n_params} parameters "
                           f"(need more than {n_params})")
    return tuple(arrays)


def identifiable(N, D, min_spread=0.1) -> bool:
    """False when log D is (nearly) a linear function of log N, e.g. a fixed D/N ratio.

    Then A/N^alpha and B/D^beta are (nearly) the same curve and alpha, beta trade off freely.
    min_spread is the residual std of log D given log N (natural log; 0.1 ~ 10 % scatter)."""
    x, y = np.log(N), np.log(D)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return False
    X = np.column_stack([np.ones_like(x), x])
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    return bool(resid.std() >= min_spread)


def fit_parametric(N, D, L, *, delta=HUBER_DELTA, starts=None) -> ParametricFit:
    """Multi-start fit of approach 3; the best converged start wins."""
    N, D, L = check_points(N, D, L)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    w = np.ones_like(L)
    starts = linearised_starts(N, D, L) if starts is None else starts
    best = None
    for theta0 in starts:
        res = minimise(theta0, logN, logD, logL, w, delta)
        if best is None or (converged(res), -res.fun) > (converged(best), -best.fun):
            best = res
    p = from_theta(best.x)
    return ParametricFit(**p, objective=float(best.fun * delta), n_points=len(L),
                         converged=converged(best), message=str(best.message),
                         n_iter=int(best.nit), n_starts=len(starts), delta=delta,
                         identifiable=identifiable(N, D))


def bootstrap(fit: ParametricFit, N, D, L, n_resamples=1000, seed=0) -> ParametricFit:
    """Nonparametric bootstrap of the approach-3 fit; fills fit.samples, stderr, ci95.

    Each resample is a vector of integer counts over the original points (multinomial), so no
    arrays are copied, and each refit warm-starts from the full-data optimum: resampled optima
    sit close to it, which makes a refit take ~50 L-BFGS-B steps instead of a multi-start."""
    N, D, L = check_points(N, D, L)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    rng = np.random.default_rng(seed)
    n = len(L)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)
    theta0 = to_theta(fit.params)
    thetas = np.empty((n_resamples, len(PARAMS)))
    ok = np.zeros(n_resamples, bool)
    for i, w in enumerate(counts):
        res = minimise(theta0, logN, logD, logL, w, fit.delta)
        thetas[i], ok[i] = res.x, converged(res)
    with np.errstate(over="ignore"):  # a refit may run off to log A ~ 1e3, i.e. A = inf: kept, so
        # the interval can say "unbounded" (summarise), which is what such a design deserves
        p = np.column_stack([np.exp(thetas[:, 2]), np.exp(thetas[:, 0]), np.exp(thetas[:, 1]),
                             thetas[:, 3], thetas[:, 4]])[ok]  # PARAMS order: E, A, B, alpha, beta
    fit.samples = p
    fit.stderr, fit.ci95 = summarise({k: p[:, j] for j, k in enumerate(PARAMS)})
    fit.n_bootstrap, fit.n_boot_failed = n_resamples, int((~ok).sum())
    return fit


def summarise(samples: dict) -> tuple[dict, dict]:
    """Standard errors (std) and 95 % percentile intervals of named bootstrap samples."""
    stderr, ci95 = {}, {}
    for k, x in samples.items():
        x = np.asarray(x, float)
        x = x[~np.isnan(x)]
        finite = x[np.isfinite(x)]
        if len(finite) < 2:
            continue
        stderr[k] = _std(finite)
        # with infinite samples, interpolating between order statistics is undefined: take the
        # nearest one, so > 2.5 % of samples at infinity gives an infinite bound
        lo, hi = np.percentile(x, [2.5, 97.5], method="linear" if len(finite) == len(x) else "nearest")
        ci95[k] = [float(lo), float(hi)]
    return stderr, ci95


def _std(x) -> float:
    """Sample std that survives finite samples near the float limit (a refit's A ~ 1e200).

    np.std squares the deviations, which overflows above ~1e154; dividing by the largest |x|
    first keeps the squares <= 4 and gives the same value."""
    scale = np.abs(x).max()
    if scale == 0:
        return 0.0
    with np.errstate(over="ignore"):  # a spread beyond the float range is an unbounded SE: inf
        return float(scale * (x / scale).std(ddof=1))


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
