"""Fit a scaling-law form (forms.py) to (N, D, loss) points, bootstrap it, predict with intervals.

numpy/scipy only, no I/O. The objective follows Besiroglu et al. (2024, arXiv:2404.10102): a Huber
loss (delta = 1e-3) on log L - log L_hat, SUMMED over points (Hoffmann et al. took the mean, whose
tiny scale made their optimiser stop early). One machinery serves every form:

- `lm` (lm.py): batched Levenberg-Marquardt on that objective, iteratively reweighted (a Huber loss is a
  weighted least squares with weights min(1, delta/|r|), so each step is a Gauss-Newton step with
  those weights; a step is kept only if the Huber objective falls). It refines many parameter
  vectors at once: all starting points of a fit, or all bootstrap resamples (as weight rows), so
  1000 refits cost one vectorised loop instead of 1000 optimiser calls.
- `fit_form`: LM from a grid of starts (forms.starts), then L-BFGS-B polishes the best to the
  gradient tolerance of the published fits.
- `bootstrap_form`: LM from the optimum for every resample; a refit that ends on its box edge
  has run off to infinity and makes that parameter "not identified" (`summarise`).
The compute-optimal allocation of a fitted form is in allocate.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import erfinv

from harness.errors import HarnessError
from harness.fit import forms
from harness.fit.extrapolation import halfwidth
from harness.fit.lm import HUBER_DELTA, gradient, huber, lm

PARAMS = forms.CHINCHILLA.params  # E, A, B, alpha, beta
GTOL = 1e-4  # max |gradient| of objective/delta at a converged fit (the objective is order one)
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
    form_error: object = None  # extrapolation.FormError once its rollout has measured it (calibrate)

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
    grad = -gradient(form, X, logL, np.ones(len(L)), zb[None], delta)[0] / delta
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
        return f / delta, -gradient(form, X, logL, w, v, delta)[0] / delta

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
    """(prediction, lo, hi) of the loss at new points (interval_parts without the parts)."""
    out = interval_parts(fit, X, level, seed)
    return out["point"], out["lo"], out["hi"]


def interval_parts(fit: Fit, X: dict, level=0.95, seed=0) -> dict:
    """The loss at new points with its prediction interval and the interval's parts.

    Each draw in log space is a bootstrap parameter row + one resampled residual of the fit (noise)
    + a normal form error of sd kappa * distance beyond the fitted compute (extrapolation.py; none
    until the fit's rollout has measured kappa). lo, hi are the draws' percentiles; `parts` holds
    each part's own half-width (log units, ~ relative), so a reader sees what makes an interval wide."""
    point = np.exp(fit.form.log_predict(fit.z[None], X)[0])
    z = fit.z_samples if fit.z_samples is not None and len(fit.z_samples) else fit.z[None]
    lp = fit.form.log_predict(z, X)
    rng = np.random.default_rng(seed)
    draws = max(len(z), 1000)
    param = lp[rng.integers(0, len(lp), draws)]
    noise = rng.choice(fit.residuals, size=(draws, lp.shape[1]))
    sd = fit.form_error.sd(X["N"], X["D"]) if fit.form_error is not None else np.zeros(lp.shape[1])
    total = param + noise + rng.standard_normal((draws, lp.shape[1])) * sd
    q = 100 * (1 - level) / 2
    lo, hi = np.exp(np.percentile(total, [q, 100 - q], axis=0))
    z_level = float(np.sqrt(2) * erfinv(level))
    return {"point": point, "lo": lo, "hi": hi,
            "parts": {"parameter": halfwidth(param, level), "noise": halfwidth(noise, level),
                      "form": z_level * sd}}


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
