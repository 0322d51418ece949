"""Prediction intervals that hold beyond the fitted compute (numpy/scipy only, no I/O).

A law's error at a new point has three parts, kept apart (STYLE 27):
  parameter  the bootstrap spread of the fitted parameters (fit.bootstrap_form);
  noise      one run's scatter about the law (a resampled residual of the fit);
  form       the error of the form itself, which grows with the distance d (dex) that a prediction
             reaches outside the fitted design: sd = kappa * d in log loss.
The distance is measured in the space a user moves in, (log10 N, log10 D), against the design's box
(Design): beyond the largest or smallest fitted N, beyond the largest fitted D, beyond the largest
fitted C; d is the largest of these parts. The maximum, not a sum or a leverage: a step along the
fitted shape (+1 dex in C moves N and D ~0.5 dex each) then counts 1 dex, as the compute-only
distance did, so the form term of a query the old measure saw is unchanged; a bigger model or a
longer run at the fitted compute, which the old measure put at 0, now counts its own excess; and a
point inside the box has no form term at all. The excess beyond the fitted D/N range is recorded
beside the others but left out of the maximum: at a fixed C it moves twice as fast as N (2x N is 4x
fewer tokens per parameter), and counting it doubled the form term of an N query. In the simulation
of coverage.py (tiny design, broken power law, 30 draws each) both measures covered 100 % of queries
at 2x the largest N and at 3x beyond the D/N range; the median half-width was 3.9x and 2.7x the
median error without the D/N part, 5.3x and 3.6x with it.
kappa is measured on the study's back-tests along every axis (backtest.splits): the rollout (fit the
cheapest k compute groups, predict every dearer run), leave-the-largest-N-out and leave-the-extreme-
D/N-out; a prediction's log error r_i at distance d_i (from its split's own design) is modelled as
N(0, s^2 + kappa^2 d_i^2), s the full fit's residual sd (its noise), and kappa is the maximum-
likelihood value over all of them. The split fits' own parameter error is left in kappa on purpose:
taking it out (each split bootstrapped) left kappa ~ 0 on truths outside the candidate set and the
interval under-covered (80 %). Why the back-tests and not the spread between candidate forms: that
spread covered 100 % at 13-19x the median error. Both were exploratory runs of the simulation in
harness/fit/coverage.py at the tiny design, not committed; the committed coverage of this method is in
results/calibration/ (scripts/calibration.py). Where the forms' own intervals disagree at a query,
the reported interval is widened to cover them (frontier.cover_forms).

The compute-optimal size has no measured counterpart to roll out against, so its form part is the
spread of the other identified forms' N*(C) and approach 2's power law about the headline's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
KAPPA_MAX = 1.0  # sd of log loss per dex; beyond it the law says nothing at one dex


AXES = ("C", "N", "D", "D/N")  # the parts of a distance
DISTANCE_AXES = ("C", "N", "D")  # those the distance is the maximum of (D/N recorded only; see above)


@dataclass(frozen=True)
class Design:
    """The fitted region, in log10: N's range, D's largest, D/N's range, C's largest (C = 6 N D)."""

    n_lo: float
    n_hi: float
    d_hi: float
    r_lo: float
    r_hi: float
    c_hi: float

    @classmethod
    def of(cls, N, D) -> Design:
        n, d = np.log10(np.asarray(N, float)), np.log10(np.asarray(D, float))
        return cls(float(n.min()), float(n.max()), float(d.max()), float((d - n).min()), float((d - n).max()),
                   float(np.log10(6.0) + (n + d).max()))

    def parts(self, N, D) -> dict[str, np.ndarray]:
        """Dex outside the design along each axis (0 inside it)."""
        n, d = np.log10(np.asarray(N, float)), np.log10(np.asarray(D, float))
        r = d - n
        return {"C": np.maximum(0.0, np.log10(6.0) + n + d - self.c_hi),
                "N": np.maximum.reduce([np.zeros_like(n), n - self.n_hi, self.n_lo - n]),
                "D": np.maximum(0.0, d - self.d_hi),
                "D/N": np.maximum.reduce([np.zeros_like(r), r - self.r_hi, self.r_lo - r])}

    def distance(self, N, D) -> np.ndarray:
        """How far outside the fitted design (N, D) lies, in dex: the largest of its C, N, D parts."""
        parts = self.parts(N, D)
        return np.max(np.stack([parts[k] for k in DISTANCE_AXES]), axis=0)

    def describe(self, N, D) -> list[dict]:
        """Each point's distance and its parts (D/N's too), for fit.json and predictions.json."""
        parts = self.parts(N, D)
        dist = np.max(np.stack([parts[k] for k in DISTANCE_AXES]), axis=0)
        return [{"distance_dex": float(d), "distance_parts": {k: float(v[j]) for k, v in parts.items()}}
                for j, d in enumerate(dist)]

    def as_dict(self) -> dict:
        return {"N": [10 ** self.n_lo, 10 ** self.n_hi], "D_max": 10 ** self.d_hi,
                "tokens_per_param": [10 ** self.r_lo, 10 ** self.r_hi], "C_max": 10 ** self.c_hi}


@dataclass(frozen=True)
class FormError:
    """How a form's error grows with distance outside the fitted design, measured on its back-tests."""

    per_dex: float  # kappa: sd of the log-loss error per dex outside the design
    design: Design  # the fitted design (the fit's N convention): distance 0 inside it
    n_predictions: int  # back-test predictions it was measured on
    n_splits: int  # back-test splits (fits) those came from
    by_axis: dict | None = None  # {axis: number of predictions} of the splits along C, N and D/N
    method: str = ("maximum likelihood of r ~ N(0, noise^2 + (kappa d)^2) over the back-tests' log errors r at d "
                   "dex outside each split's fitted design (the largest of its excesses beyond the fitted C, N range "
                   "and D)")

    @property
    def c_max(self) -> float:
        return 10 ** self.design.c_hi

    def distance(self, N, D) -> np.ndarray:
        """Dex outside the fitted design (0 inside it)."""
        return self.design.distance(N, D)

    def sd(self, N, D) -> np.ndarray:
        return self.per_dex * self.distance(N, D)

    def as_dict(self) -> dict:
        return {"per_dex": self.per_dex, "c_max": self.c_max, "design": self.design.as_dict(),
                "n_predictions": self.n_predictions, "n_splits": self.n_splits, "by_axis": self.by_axis,
                "method": self.method}


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


def form_error(preds: list[dict], noise: float, design: Design) -> FormError | None:
    """kappa from back-test predictions' log errors beyond the fit's noise sd (each prediction with
    its split `k`, `axis` and `distance_dex`); None when the back-tests made no prediction."""
    if not preds:
        return None
    r = np.log1p([p["rel_error"] for p in preds])
    kappa = estimate_kappa(r, np.full(len(r), noise), [p["distance_dex"] for p in preds])
    axes = [p.get("axis", "C") for p in preds]
    return FormError(kappa, design, len(preds), len({(a, p["k"]) for a, p in zip(axes, preds)}),
                     {a: axes.count(a) for a in dict.fromkeys(axes)})


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
