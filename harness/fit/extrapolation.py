"""Prediction intervals that hold beyond the fitted compute (numpy/scipy only, no I/O).

A law's error at a new point has three parts, kept apart (STYLE 27):
  parameter  the bootstrap spread of the fitted parameters (fit.bootstrap_form);
  noise      one run's scatter about the law (a resampled residual of the fit);
  form       the error of the form itself, which grows with the distance d = log10(C / C_max)
             that a prediction reaches beyond the largest fitted compute: sd = kappa * d in log loss.
kappa is measured on the study's own rollout (backtest.rollout): each split fits the cheapest k
compute groups and predicts every dearer run; a prediction's log error r_i at distance d_i is
modelled as N(0, s^2 + kappa^2 d_i^2), s the full fit's residual sd (its noise), and kappa is the
maximum-likelihood value. The split fits' own parameter error is left in kappa on purpose: taking
it out (each split bootstrapped) left kappa ~ 0 on truths outside the candidate set and the
interval under-covered (80 %). Why the rollout and not the spread between candidate forms: that
spread covered 100 % at 13-19x the median error. Both were exploratory runs of the simulation in
harness/fit/coverage.py at the tiny design, not committed; the committed coverage of this method is in
results/calibration/ (scripts/calibration.py).

The compute-optimal size has no measured counterpart to roll out against, so its form part is the
spread of the other identified forms' N*(C) and approach 2's power law about the headline's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
KAPPA_MAX = 1.0  # sd of log loss per dex; beyond it the law says nothing at one dex


@dataclass(frozen=True)
class FormError:
    """How a form's error grows with distance beyond the fitted compute, measured on its rollout."""

    per_dex: float  # kappa: sd of the log-loss error per dex beyond c_max
    c_max: float  # largest fitted C = 6 N D (the fit's N convention): distance 0
    n_predictions: int  # rollout predictions it was measured on
    n_splits: int  # rollout splits (fits) those came from
    method: str = ("maximum likelihood of r ~ N(0, noise^2 + (kappa d)^2) over the rollout's log errors r at d dex "
                   "beyond each split's fitted compute")

    def distance(self, N, D) -> np.ndarray:
        """Dex beyond the largest fitted C (0 inside the fitted range)."""
        C = 6.0 * np.asarray(N, float) * np.asarray(D, float)
        return np.maximum(0.0, np.log10(C / self.c_max))

    def sd(self, N, D) -> np.ndarray:
        return self.per_dex * self.distance(N, D)

    def as_dict(self) -> dict:
        return {"per_dex": self.per_dex, "c_max": self.c_max, "n_predictions": self.n_predictions,
                "n_splits": self.n_splits, "method": self.method}


def estimate_kappa(r, s, d) -> float:
    """Maximum-likelihood kappa for log errors r with known sd s at distances d (dex)."""
    r, s, d = (np.asarray(x, float) for x in (r, s, d))
    ok = np.isfinite(r) & np.isfinite(s) & (d > 0)
    r, v, d2 = r[ok], np.maximum(s[ok], 1e-6) ** 2, d[ok] ** 2
    if not len(r):
        return 0.0

    def nll(kappa):
        var = v + kappa * kappa * d2
        return 0.5 * np.sum(np.log(var) + r * r / var)

    best = minimize_scalar(nll, bounds=(0.0, KAPPA_MAX), method="bounded", options={"xatol": 1e-6})
    return float(best.x) if best.fun < nll(0.0) else 0.0


def form_error(rollout: dict, noise: float, c_max: float) -> FormError | None:
    """kappa from a rollout's log errors beyond the fit's noise sd; None when the rollout made no
    prediction (too few compute groups)."""
    preds = rollout.get("predictions") or []
    if not preds:
        return None
    r = np.log1p([p["rel_error"] for p in preds])
    kappa = estimate_kappa(r, np.full(len(r), noise), [p["projection_dex"] for p in preds])
    return FormError(kappa, float(c_max), len(preds), len({p["k"] for p in preds}))


def halfwidth(draws: np.ndarray, level=0.95) -> np.ndarray:
    """Half the central `level` range of log-space draws (R, n), per column."""
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(draws, [q, 100 - q], axis=0)
    return (hi - lo) / 2


def spread_sd(log_head: np.ndarray, log_others: list[np.ndarray]) -> np.ndarray:
    """RMS distance of the alternatives' log values from the headline's, per column."""
    alts = [x for x in log_others if x is not None and np.all(np.isfinite(x))]
    if not alts:
        return np.zeros_like(log_head)
    return np.sqrt(np.mean([(x - log_head) ** 2 for x in alts], axis=0))


def first_passing(dex: np.ndarray, width: np.ndarray, threshold: float) -> float | None:
    """The smallest distance at which width passes threshold (linear between grid points); None
    if it never does on the grid; 0.0 if it already does at the first point."""
    above = np.flatnonzero(width > threshold)
    if not len(above):
        return None
    i = above[0]
    if i == 0:
        return float(dex[0])
    w0, w1 = width[i - 1], width[i]
    return float(dex[i - 1] + (threshold - w0) / (w1 - w0) * (dex[i] - dex[i - 1]))
