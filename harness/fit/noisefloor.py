"""How wide approach 2's interval on a would be from seed noise alone, at a study's own design
(numpy only, no I/O).

Simulate the study many times: the fitted law as the truth, each fitted cell's loss drawn around it
with the seed noise measured at its D, approach 2 (harness/fit/isoflop.py) on each draw. The spread of a
over draws is the interval that noise alone allows with these cells; what the study's own interval
measures beyond it comes from design, form and tuning (issue 13 asks which).

Seed noise here depends strongly on D: below ~1M tokens these models are still leaving the early
loss plateau and two seeds differ by 0.04-0.09 nats, above it by < 0.01. So the noise model is the
measured per-cell sd, interpolated linearly in log D between the cells trained with several seeds
(flat beyond the ends). Each cell's draws are independent: branches of one WSD trunk share its seed,
so real noise is correlated along a trunk, across budgets (not within one, where every cell is a
different size).
"""
from __future__ import annotations

import numpy as np

from harness.fit import isoflop as iso

Z95 = 1.959964  # two-sided 95 % normal quantile


def sd_of_D(D_seeded, sd_seeded):
    """sd(D): the measured per-cell seed sd, linear in log D between the seeded cells' D, flat beyond.
    Several seeded cells at one D are pooled (root mean square)."""
    D_seeded, sd_seeded = np.asarray(D_seeded, float), np.asarray(sd_seeded, float)
    if len(D_seeded) == 0 or not np.all(np.isfinite(sd_seeded) & (sd_seeded >= 0)):
        raise ValueError("sd_of_D needs at least one seeded cell with a finite, non-negative sd")
    xs = np.unique(np.log(D_seeded))
    ys = np.array([np.sqrt(np.mean(sd_seeded[np.log(D_seeded) == x] ** 2)) for x in xs])
    return lambda D: np.interp(np.log(np.asarray(D, float)), xs, ys)


def simulate(truth, N, C, sd, *, n_draws=400, n_bootstrap=200, n_boot_draws=100, seed=0, tol_dex=0.02) -> dict:
    """Approach 2 on n_draws noisy copies of the truth at the design (N, C).

    truth: (n,) noiseless losses at the cells; sd: (n,) noise sd of each cell's loss (a seed-averaged
    cell's sd is the per-seed sd over sqrt(n_seeds)). Returns a at the noiseless truth, the spread of
    a over draws (sd and the 2.5-97.5 % half-width; at least 2 budgets must keep an inside minimum),
    and, over the first n_boot_draws draws, each interval estimator's median half-width and how often
    its 95 % interval covered the noiseless a: the calibration check of what the harness reports
    (`wild`, isoflop_wild_bootstrap) against resampling cells (`case`, isoflop_bootstrap)."""
    N, C, truth, sd = (np.asarray(v, float) for v in (N, C, truth, sd))
    rng = np.random.default_rng(seed)
    exact = iso.isoflop(N, truth, C, tol_dex=tol_dex)
    a0 = exact["a"] if exact else None
    a = np.full(n_draws, np.nan)
    width = {"wild": [], "case": []}
    covered = {"wild": [], "case": []}
    for r in range(n_draws):
        L = truth + rng.normal(0.0, 1.0, len(truth)) * sd
        res = iso.isoflop(N, L, C, tol_dex=tol_dex)
        if res is None or res["a"] is None or len(res["budgets"]) < 2:
            continue
        a[r] = res["a"]
        if r >= n_boot_draws or n_bootstrap == 0 or a0 is None:
            continue
        counts = rng.multinomial(len(L), np.full(len(L), 1.0 / len(L)), size=n_bootstrap)
        samples = {"wild": iso.isoflop_wild_bootstrap(N, L, C, n_bootstrap, seed=r, tol_dex=tol_dex),
                   "case": iso.isoflop_bootstrap(N, L, C, counts, tol_dex=tol_dex)}
        for k, s in samples.items():
            s = s.get("a", np.array([]))
            s = s[np.isfinite(s)]
            if len(s) > 1:
                lo, hi = np.percentile(s, [2.5, 97.5])
                width[k].append((hi - lo) / 2)
                covered[k].append(bool(lo <= a0 <= hi))
    ok = a[np.isfinite(a)]
    lo, hi = np.percentile(ok, [2.5, 97.5]) if len(ok) > 1 else (np.nan, np.nan)
    return {"a_noiseless": a0, "n_draws": int(n_draws), "n_failed": int(n_draws - len(ok)),
            "a_mean": float(ok.mean()) if len(ok) else None,
            "a_sd": float(ok.std(ddof=1)) if len(ok) > 1 else None,
            "half_width_95": float((hi - lo) / 2),
            "estimators": {k: {"median_half_width": float(np.median(width[k])) if width[k] else None,
                               "coverage": float(np.mean(covered[k])) if covered[k] else None,
                               "n_draws": len(width[k])} for k in width}}
