"""Fit a scaling-law form (forms.py) to (N, D, loss) points, bootstrap it, predict with intervals.

numpy/scipy only, no I/O. The objective follows Besiroglu et al. (2024, arXiv:2404.10102): a Huber
loss (delta = 1e-3) on log L - log L_hat, SUMMED over points (Hoffmann et al. took the mean, whose
tiny scale made their optimiser stop early). One machinery serves every form:

- `lm`: batched Levenberg-Marquardt on that objective, iteratively reweighted (a Huber loss is a
  weighted least squares with weights min(1, delta/|r|), so each step is a Gauss-Newton step with
  those weights; a step is kept only if the Huber objective falls). It refines many parameter
  vectors at once: all starting points of a fit, or all bootstrap resamples (as weight rows), so
  1000 refits cost one vectorised loop instead of 1000 optimiser calls.
- `fit_form`: LM from a grid of starts (forms.starts), then L-BFGS-B polishes the best to the
  gradient tolerance of the published fits.
- `bootstrap_form`: LM from the optimum for every resample; a refit that ends on its box edge
  has run off to infinity and makes that parameter "not identified" (`summarise`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from harness import forms
from harness.errors import HarnessError

PARAMS = forms.CHINCHILLA.params  # E, A, B, alpha, beta
HUBER_DELTA = 1e-3
GTOL = 1e-4  # max |gradient| of objective/delta at a converged fit (the objective is order one)
LM_GTOL = 1e-2  # the same for a stopped LM row (see `lm`)
MAX_DECADES = 6  # a scale parameter (A, B, N_c, ...) whose 95 % interval spans more is "not identified"
# L-BFGS-B polish: scipy's relative ftol divides by max(|f|, 1), so it runs on objective/delta
# with tight tolerances and ends on the gradient.
_LBFGS = {"maxiter": 300, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 20}


@dataclass
class Fit:
    """A fitted form in physical parameters, plus bootstrap errors once `bootstrap_form` has run."""

    form: forms.Form
    z: np.ndarray  # free internal coordinates at the optimum
    params: dict  # physical parameters
    objective: float  # summed Huber loss at the optimum (natural-log residuals)
    n_points: int
    converged: bool
    message: str
    n_iter: int
    n_starts: int
    residuals: np.ndarray = field(repr=False, default=None)  # log L - log L_hat at each point
    delta: float = HUBER_DELTA
    identifiable: bool = True
    n_bootstrap: int = 0  # resamples refitted
    n_boot_failed: int = 0  # resamples whose refit neither converged nor ran off to a bound (dropped)
    stderr: dict = field(default_factory=dict)
    ci95: dict = field(default_factory=dict)
    not_identified: list = field(default_factory=list)  # parameters whose interval reaches a bound
    samples: np.ndarray | None = field(default=None, repr=False)  # bootstrap (R, p), form.params order
    z_samples: np.ndarray | None = field(default=None, repr=False)  # the same in free coordinates

    def __getattr__(self, name):  # fit.alpha, fit.E, ...
        params = self.__dict__.get("params") or {}
        if name in params:
            return params[name]
        raise AttributeError(name)

    def predict(self, N, D, U=None) -> np.ndarray:
        X = _columns(N, D, U)
        return np.exp(self.form.log_predict(self.z[None], X)[0])

    @property
    def aic(self) -> float:
        return information(self)[0]

    @property
    def bic(self) -> float:
        return information(self)[1]


def _columns(N, D, U=None) -> dict:
    N, D = np.broadcast_arrays(np.atleast_1d(np.asarray(N, float)), np.atleast_1d(np.asarray(D, float)))
    X = {"N": N, "D": D, "logN": np.log(N), "logD": np.log(D)}
    X["U"] = np.full_like(D, np.inf) if U is None else np.broadcast_to(np.asarray(U, float), D.shape)
    return X


def predict(p: dict, N, D) -> np.ndarray:
    """L(N, D) = E + A/N^alpha + B/D^beta for a dict of physical parameters."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


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
    grad = -_gradient(form, X, logL, W, z, delta) / delta
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


def _gradient(form, X, logL, W, z, delta):
    """Minus the gradient of the Huber objective, (R, q)."""
    lp, J = form.log_predict_jac(z, X)
    r = logL - lp
    psi = np.clip(r, -delta, delta)
    return np.einsum("rnp,rn->rp", J, np.broadcast_to(W, r.shape) * psi)


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


def fit_form(form: forms.Form, X: dict, L, *, delta=HUBER_DELTA, starts=None, n_keep=16) -> Fit:
    """The n_keep best of many starts, refined together by LM, then polished by L-BFGS-B."""
    L = np.asarray(L, float)
    check_points(X["N"], X["D"], L, n_params=form.n_free)
    logL = np.log(L)
    z0 = forms.starts(form, X, L) if starts is None else np.atleast_2d(starts)
    z0 = z0[np.argsort(huber(logL - form.log_predict(z0, X), np.ones(len(L)), delta))[:n_keep]]
    z, f, ok, _, iters = lm(form, X, logL, np.ones(len(L)), z0, delta)
    best = np.lexsort((f, ~ok))[0]  # converged first, then the lowest objective
    res = _polish(form, X, logL, z[best], delta)
    zb, message = (res.x, str(res.message)) if res.fun * delta <= f[best] else (z[best], "LM")
    grad = -_gradient(form, X, logL, np.ones(len(L)), zb[None], delta)[0] / delta
    lo, hi = form.box()
    free = ~((np.isclose(zb, lo) & (grad > 0)) | (np.isclose(zb, hi) & (grad < 0)))
    converged = bool(np.max(np.abs(grad[free]), initial=0.0) < GTOL)
    r = logL - form.log_predict(zb[None], X)[0]
    return Fit(form, zb, {k: float(v[0]) for k, v in form.physical(zb).items()},
               objective=float(huber(r, np.ones_like(r), delta)), n_points=len(L), converged=converged,
               message=message, n_iter=int(iters[best]) + int(res.nit), n_starts=len(z0), residuals=r,
               delta=delta, identifiable=identifiable(X["N"], X["D"]))


def _polish(form, X, logL, z, delta):
    w = np.ones(len(logL))

    def fun(v):
        v = v[None]
        f = huber(logL - form.log_predict(v, X), w, delta)[0]
        return f / delta, -_gradient(form, X, logL, w, v, delta)[0] / delta

    lo, hi = form.box()
    return minimize(fun, z, jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)), options=_LBFGS)


def bootstrap_form(fit: Fit, X: dict, L, n_resamples=1000, seed=0) -> Fit:
    """Nonparametric bootstrap: each resample is a row of multinomial counts over the points (no
    copies), all refitted at once by LM from the full-data optimum. Fills samples, stderr, ci95
    and not_identified."""
    L = np.asarray(L, float)
    rng = np.random.default_rng(seed)
    n = len(L)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)
    # refits that run off along a flat valley crawl for thousands of steps before they reach the box
    z, _, ok, at_bound, _ = lm(fit.form, X, np.log(L), counts, np.repeat(fit.z[None], n_resamples, 0), fit.delta,
                               max_iter=3000)
    keep = ok | at_bound.any(axis=1)  # a refit that ran off to a bound is kept: it says "unbounded"
    fit.z_samples = z[keep]
    phys = fit.form.physical(z[keep])
    fit.samples = np.column_stack([phys[k] for k in fit.form.params])
    fit.stderr, fit.ci95 = summarise(phys)
    bound_share = at_bound[keep].mean(axis=0) if keep.any() else np.zeros(fit.form.n_free)
    form = fit.form
    fit.not_identified = [form.coord_param(k) for k, share in zip(form.free, bound_share) if share >= 0.025]
    if form.tie and form.coord_param(form.tie[0]) in fit.not_identified:
        fit.not_identified.append(form.coord_param(form.tie[1]))
    for k in form.free:  # a scale whose interval spans > MAX_DECADES says nothing either
        name = form.coord_param(k)
        lo, hi = fit.ci95.get(name, (np.nan, np.nan))
        wide = form.coords[k].startswith("log ") and lo > 0 and hi / lo > 10**MAX_DECADES
        if wide and name not in fit.not_identified:
            fit.not_identified.append(name)
    fit.n_bootstrap, fit.n_boot_failed = n_resamples, int((~keep).sum())
    return fit


def prediction_interval(fit: Fit, X: dict, level=0.95, seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, lo, hi) of the loss at new points: the bootstrap's parameter spread plus the
    fit's own residual noise (one resampled residual per draw), as percentiles in log space."""
    point = np.exp(fit.form.log_predict(fit.z[None], X)[0])
    z = fit.z_samples if fit.z_samples is not None and len(fit.z_samples) else fit.z[None]
    lp = fit.form.log_predict(z, X)
    rng = np.random.default_rng(seed)
    draws = max(len(z), 1000)
    lp = lp[rng.integers(0, len(lp), draws)] + rng.choice(fit.residuals, size=(draws, lp.shape[1]))
    q = 100 * (1 - level) / 2
    lo, hi = np.exp(np.percentile(lp, [q, 100 - q], axis=0))
    return point, lo, hi


def information(fit: Fit) -> tuple[float, float]:
    """(AIC, BIC) from the Gaussian likelihood of the log residuals: n ln(RSS/n) + 2k, + k ln n."""
    n, k = fit.n_points, fit.form.n_free
    rss = float(np.sum(fit.residuals ** 2))
    base = n * np.log(max(rss, 1e-300) / n)
    return base + 2 * k, base + k * np.log(n)


def fit_parametric(N, D, L, *, delta=HUBER_DELTA) -> Fit:
    """Approach 3 with the Chinchilla form."""
    N, D, L = check_points(N, D, L)
    return fit_form(forms.CHINCHILLA, _columns(N, D), L, delta=delta)


def bootstrap(fit: Fit, N, D, L, n_resamples=1000, seed=0) -> Fit:
    return bootstrap_form(fit, _columns(N, D), L, n_resamples, seed)


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
