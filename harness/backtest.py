"""Back-test: fit approach 3 on the cheaper runs, predict the most expensive ones (no I/O)."""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessError
from harness.fit import PARAMS, fit_parametric


def n_holdout(n_points: int, holdout: float) -> int:
    """holdout >= 1 is a count of runs; 0 < holdout < 1 a fraction (at least one run)."""
    if holdout < 0:
        raise HarnessError(f"holdout must be >= 0, got {holdout}")
    if holdout >= 1:
        return int(round(holdout))
    return max(1, int(round(holdout * n_points))) if holdout > 0 else 0


def backtest(N, D, L, C, holdout=0.1) -> dict:
    """Hold out the largest-C runs, fit the rest, report each prediction's relative error.

    Always returns a dict (the report carries it even when it cannot run, with the reason)."""
    N, D, L, C = (np.asarray(v, float) for v in (N, D, L, C))
    k = n_holdout(len(L), holdout)
    out = {"holdout": holdout, "n_holdout": k, "n_train": len(L) - k}
    if k == 0:
        return {**out, "skipped": "holdout=0"}
    if len(L) - k <= len(PARAMS):
        return {**out, "skipped": f"only {len(L) - k} points left to fit {len(PARAMS)} params"}
    order = np.argsort(C, kind="stable")
    train, test = order[:-k], order[-k:]
    fit = fit_parametric(N[train], D[train], L[train])
    pred = fit.predict(N[test], D[test])
    rel = (pred - L[test]) / L[test]
    return {**out, "C_cut": float(C[train].max()), "params": fit.params,
            "converged": fit.converged, "identifiable": fit.identifiable,
            "mean_abs_rel_error": float(np.mean(np.abs(rel))),
            "max_abs_rel_error": float(np.max(np.abs(rel))),
            "points": [{"N": float(N[i]), "D": float(D[i]), "C": float(C[i]),
                        "loss": float(L[i]), "pred": float(p), "rel_error": float(r)}
                       for i, p, r in zip(test, pred, rel)]}
