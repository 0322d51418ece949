"""The data mixing law: each domain's held-out loss as a function of the mixture's weights, fitted at one
model size and budget, and the weights it predicts best for a target (numpy/scipy only, no I/O).

Form (Ye et al. 2024, "Data Mixing Laws", eq. 5): L_i(r) = c_i + k_i exp(sum_j t_ij r_j), r the
domains' shares (summing to 1). Because the shares sum to 1, one t_ij per domain is redundant with k_i, so
the last domain's is fixed at 0: K + 1 parameters per domain for K domains (3 for two). Fitted per domain
by least squares on the loss from a grid of starting exponents, on the mixtures that train on that domain
(a share of 0 is another regime: a model that never saw a domain scores it above ln V, which no smooth law
in the share joins to the trained ones; measured in results/data_mix). Uncertainty by residual bootstrap
(residuals inflated by sqrt(n / (n - p)) for the parameters fitted) and, in a prediction interval, the
run-to-run noise added in quadrature (an interval states its parts: parameter, noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from harness.errors import HarnessError

T_STARTS = (-8.0, -3.0, -1.0, 0.0, 1.0, 3.0)  # starting exponents t (per unit share), both signs


@dataclass(frozen=True)
class DomainLaw:
    c: float  # the loss no share of this mixture's domains removes (nats per token)
    k: float
    t: tuple  # t_ij for j = 1..K-1 (the last domain's is 0)
    rmse: float  # of the fit, nats

    def loss(self, r: np.ndarray) -> np.ndarray:
        """Predicted loss at shares r, (n, K) or (K,)."""
        r = np.atleast_2d(r)
        return self.c + self.k * np.exp(r[:, :-1] @ np.asarray(self.t))


def _fit_one(r: np.ndarray, y: np.ndarray, start: DomainLaw | None = None) -> DomainLaw:
    """Least squares from a grid of starts, or from `start` alone (a bootstrap refit near the fit)."""
    K = r.shape[1]

    def resid(p):
        return p[0] + np.exp(p[1]) * np.exp(r[:, :-1] @ p[2:]) - y

    if start is not None:
        starts = [np.r_[min(start.c, y.min() * (1 - 1e-9)), math.log(start.k), start.t]]
    else:
        starts = [np.r_[frac * y.min(), math.log(max(y.mean() - frac * y.min(), 1e-3)), np.full(K - 1, t0)]
                  for t0 in T_STARTS for frac in (0.3, 0.7)]
    best = None
    for p0 in starts:
        try:
            sol = least_squares(resid, p0, bounds=([0.0, -20.0, *[-50.0] * (K - 1)],
                                                   [y.min(), 20.0, *[50.0] * (K - 1)]))
        except ValueError:
            continue
        if best is None or sol.cost < best.cost:
            best = sol
    p = best.x
    return DomainLaw(float(p[0]), float(np.exp(p[1])), tuple(float(v) for v in p[2:]),
                     float(np.sqrt(np.mean(resid(p) ** 2))))


@dataclass(frozen=True)
class MixingLaw:
    domains: tuple  # names, in the order of the shares' columns
    laws: tuple  # a DomainLaw per domain
    shares: np.ndarray  # (n, K) the fitted mixtures (a domain's law: those with its share > 0)
    losses: np.ndarray  # (n, K) their measured per-domain losses
    draws: tuple  # bootstrap refits: a tuple of DomainLaws per draw

    def predict(self, r) -> np.ndarray:
        """(K,) predicted per-domain losses at shares r."""
        return np.array([law.loss(np.asarray(r, float))[0] for law in self.laws])

    def predict_draws(self, r) -> np.ndarray:
        """(draws, K): the bootstrap's predictions at shares r."""
        r = np.asarray(r, float)
        return np.array([[law.loss(r)[0] for law in draw] for draw in self.draws])


def fit(domains: list[str], shares: np.ndarray, losses: np.ndarray, n_bootstrap: int = 400,
        seed: int = 0) -> MixingLaw:
    """Fit each domain's law to n mixtures: shares (n, K) rows summing to 1, losses (n, K)."""
    shares, losses = np.asarray(shares, float), np.asarray(losses, float)
    K = len(domains)
    if shares.shape != losses.shape or shares.shape[1] != K:
        raise HarnessError(f"mixing law: shares {shares.shape} and losses {losses.shape} for {K} domains")
    if K < 2:
        raise HarnessError("mixing law: a mixture needs at least two domains")
    trained = [shares[:, i] > 0 for i in range(K)]  # each domain's law: the mixtures that train on it
    for i, used in enumerate(trained):
        n_distinct = len({tuple(np.round(s, 9)) for s in shares[used]})
        if n_distinct < K + 2:
            raise HarnessError(f"mixing law: {n_distinct} distinct mixtures train on {domains[i]}, to fit {K + 1} "
                               f"parameters with no degree of freedom to spare; train at least {K + 2}")
    if not np.all(np.isfinite(losses)):
        raise HarnessError("mixing law: a loss is missing or not finite")
    laws = tuple(_fit_one(shares[used], losses[used, i]) for i, used in enumerate(trained))
    rng = np.random.default_rng(seed)
    parts = []  # per domain: its mixtures, the law's losses there, the inflated residuals
    for i, used in enumerate(trained):
        r, n = shares[used], int(used.sum())
        fitted = laws[i].loss(r)
        parts.append((r, fitted, (losses[used, i] - fitted) * math.sqrt(n / (n - (K + 1)))))
    draws = []
    for _ in range(n_bootstrap):  # each domain's residuals resampled among its own mixtures
        draws.append(tuple(_fit_one(r, fitted + resid[rng.integers(0, len(r), size=len(r))], law)
                           for (r, fitted, resid), law in zip(parts, laws)))
    return MixingLaw(tuple(domains), laws, shares, losses, tuple(draws))


def interval(law: MixingLaw, r, noise_sd: float) -> dict:
    """Per domain: predicted loss at shares r, its 95 % prediction interval and the interval's parts
    (parameter sd from the bootstrap, noise sd as given: a new run's own seed-to-seed spread)."""
    mid, draws = law.predict(r), law.predict_draws(r)
    out = {}
    for i, name in enumerate(law.domains):
        param = float(np.std(draws[:, i]))
        half = 1.96 * math.hypot(param, noise_sd)
        out[name] = {"predicted": float(mid[i]), "pi95": [float(mid[i] - half), float(mid[i] + half)],
                     "param_sd": param, "noise_sd": noise_sd}
    return out


def target_interval(law: MixingLaw, weights: dict[str, float], r, noise_sd: float) -> dict:
    """The target at shares r with its 95 % prediction interval (bootstrap parameter sd and the target's
    own run-to-run noise sd, in quadrature)."""
    f = target_of(law, weights)
    mid, draws = f(r), np.array([f(r, d) for d in law.draws])
    param = float(np.std(draws))
    half = 1.96 * math.hypot(param, noise_sd)
    return {"predicted": mid, "pi95": [mid - half, mid + half], "param_sd": param, "noise_sd": noise_sd}


def target_of(law: MixingLaw, weights: dict[str, float]) -> callable:
    """The target as a function of shares: sum_i weights[i] * L_i(r) (e.g. 1 / (K ln 2 bytes per token)
    per domain for the mean bits per byte, or 1 for one named domain's loss)."""
    w = np.array([weights.get(name, 0.0) for name in law.domains])
    return lambda r, laws=None: float(w @ np.array([lw.loss(np.asarray(r, float))[0]
                                                     for lw in (laws or law.laws)]))


def optimum(law: MixingLaw, weights: dict[str, float]) -> dict:
    """The shares that minimise the target within the fitted range of shares where every domain is trained
    (two domains: a bounded search along the first domain's share; beyond the fitted mixtures the law is not
    trusted), with the bootstrap's spread of that optimum."""
    if len(law.domains) != 2:
        raise HarnessError("mixing law: the optimum search takes two domains (the law itself takes any number)")
    every = law.shares[np.all(law.shares > 0, axis=1)]
    lo, hi = float(every[:, 0].min()), float(every[:, 0].max())
    f = target_of(law, weights)

    def best(laws=None) -> float:
        return float(minimize_scalar(lambda a: f([a, 1 - a], laws), bounds=(lo, hi), method="bounded",
                                     options={"xatol": 1e-4}).x)

    a = best()
    spread = np.array([best(d) for d in law.draws])
    return {"shares": {law.domains[0]: a, law.domains[1]: 1 - a}, "target": f([a, 1 - a]),
            "share_ci95": [float(v) for v in np.percentile(spread, [2.5, 97.5])],
            "searched": [lo, hi], "at_bound": bool(min(a - lo, hi - a) < 1e-3)}
