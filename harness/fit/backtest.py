"""Held-out tests of a law (no I/O): the classic back-test and the rollout used for model choice.

backtest: fit on the cheaper runs, predict the most expensive ones, each with a 95 % prediction
interval. rollout (as OLMo-core's ladder does): fit on the k cheapest compute groups, predict
every more expensive run, for each k; the error is reported against how far beyond the fitted
compute the prediction reaches, and its mean ranks the forms (analysis.model_choice), so the
choice rests on held-out error, not on the fit's own residuals.
"""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessError
from harness.fit import forms
from harness.fit.isoflop import group_budgets
from harness.fit.law import bootstrap_form, fit_form, interval_parts

MAX_GROUPS = 8  # rollout steps: more compute groups are pooled into this many (equal counts)
DISTANCE_BINS = ((0.0, 0.5), (0.5, 1.0), (1.0, np.inf))  # dex beyond the largest fitted C


def n_holdout(n_points: int, holdout: float) -> int:
    """holdout >= 1 is a count of runs; 0 < holdout < 1 a fraction (at least one run)."""
    if holdout < 0:
        raise HarnessError(f"holdout must be >= 0, got {holdout}")
    if holdout >= 1:
        return int(round(holdout))
    return max(1, int(round(holdout * n_points))) if holdout > 0 else 0


def backtest(form: forms.Form, X: dict, L, C, holdout=0.1, n_bootstrap=200, seed=0, tol_dex=0.02) -> dict:
    """Hold out the largest-C runs, fit the rest, report each prediction's error and 95 % PI.

    Always returns a dict (the report carries it even when it cannot run, with the reason)."""
    L, C = np.asarray(L, float), np.asarray(C, float)
    k = n_holdout(len(L), holdout)
    out = {"form": form.label, "holdout": holdout, "n_holdout": k, "n_train": len(L) - k}
    if k == 0:
        return {**out, "skipped": "holdout=0"}
    if len(L) - k <= form.n_free:
        return {**out, "skipped": f"only {len(L) - k} points left to fit {form.n_free} params"}
    order = np.argsort(C, kind="stable")
    train, test = order[:-k], order[-k:]
    fit = fit_form(form, forms.subset(X, train), L[train])
    if n_bootstrap:
        bootstrap_form(fit, forms.subset(X, train), L[train], n_bootstrap, seed)
        calibrate(fit, forms.subset(X, train), L[train], C[train], tol_dex)  # its own rollout: the form part
    iv = interval_parts(fit, forms.subset(X, test), seed=seed)
    pred, lo, hi = iv["point"], iv["lo"], iv["hi"]
    rel = (pred - L[test]) / L[test]
    c_cut = float(C[train].max())
    return {**out, "C_cut": c_cut, "params": fit.params, "converged": fit.converged,
            "identifiable": fit.identifiable, "mean_abs_rel_error": float(np.mean(np.abs(rel))),
            "max_abs_rel_error": float(np.max(np.abs(rel))),
            "inside_pi95": int(np.sum((L[test] >= lo) & (L[test] <= hi))),
            "points": [{"N": float(X["N"][i]), "D": float(X["D"][i]), "C": float(C[i]), "loss": float(L[i]),
                        "pred": float(p), "pi95": [float(a), float(b)], "rel_error": float(r),
                        "projection_dex": float(np.log10(C[i] / c_cut)),
                        "parts": {k: float(v[j]) for k, v in iv["parts"].items()}}
                       for j, (i, p, a, b, r) in enumerate(zip(test, pred, lo, hi, rel))],
            "form_error": fit.form_error.as_dict() if fit.form_error is not None else None}


def compute_groups(C, tol_dex=0.02) -> np.ndarray:
    """Compute groups, cheapest first: budgets that differ by < tol_dex, pooled into at most
    MAX_GROUPS groups of similar size when a grid design has many distinct C."""
    labels = group_budgets(C, tol_dex)
    n = labels.max() + 1
    if n <= MAX_GROUPS:
        return labels
    sizes = np.bincount(labels)
    edges = np.searchsorted(np.cumsum(sizes) / sizes.sum(), np.linspace(0, 1, MAX_GROUPS + 1)[1:-1])
    return np.searchsorted(edges, labels, side="right")


def rollout(form: forms.Form, X: dict, L, C, tol_dex=0.02) -> dict:
    """Fit on the cheapest k groups and predict every dearer run, for every k that leaves more
    points than the form has parameters. Returns each prediction and error summaries."""
    L, C = np.asarray(L, float), np.asarray(C, float)
    groups = compute_groups(C, tol_dex)
    preds = []
    for k in range(1, groups.max() + 1):
        train = groups < k
        if train.sum() <= form.n_free + 1:
            continue
        c_cut = C[train].max()
        preds += [{**p, "projection_dex": float(np.log10(p["C"] / c_cut))}
                  for p in _predict_held_out(form, X, L, C, train, "C", k)]
    out = {"form": form.label, "n_groups": int(groups.max() + 1), "predictions": preds}
    if not preds:
        return {**out, "skipped": "too few compute groups below the largest to fit this form"}
    err = np.abs([p["rel_error"] for p in preds])
    dist = np.array([p["projection_dex"] for p in preds])
    out["mean_abs_rel_error"] = float(err.mean())
    out["distance_weighted_abs_rel_error"] = float(np.sum(dist * err) / np.sum(dist))
    out["by_distance"] = [{"dex": [lo, hi if np.isfinite(hi) else None], "n": int(m.sum()),
                           "mean_abs_rel_error": float(err[m].mean()) if m.any() else None}
                          for lo, hi in DISTANCE_BINS for m in [(dist >= lo) & (dist < hi)]]
    return out


def _predict_held_out(form: forms.Form, X: dict, L, C, train: np.ndarray, axis: str, k: int) -> list[dict]:
    """Fit the `train` mask, predict every other run; each prediction with its distance outside the
    split's own design (extrapolation.Design) and that distance's parts."""
    from harness.fit.extrapolation import Design

    fit = fit_form(form, forms.subset(X, train), L[train], n_keep=4)
    test = np.flatnonzero(~train)
    pred = np.exp(form.log_predict(fit.z[None], forms.subset(X, ~train))[0])
    where = Design.of(X["N"][train], X["D"][train]).describe(X["N"][test], X["D"][test])
    return [{"axis": axis, "k": k, "N": float(X["N"][i]), "D": float(X["D"][i]), "C": float(C[i]),
             "loss": float(L[i]), "pred": float(p), "rel_error": float((p - L[i]) / L[i]), **w}
            for i, p, w in zip(test, pred, where)]


def axis_masks(N, D) -> list[tuple[str, int, np.ndarray]]:
    """(axis, k, training mask) of each back-test across the design: the largest k sizes left out
    (k = 1, 2, where 3 sizes remain), then the highest and the lowest fifth of D/N."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    sizes = np.unique(N)
    ratio = np.log(D / N)
    masks = [("N", k, N < sizes[-k]) for k in (1, 2) if len(sizes) > k + 2]
    return masks + [("D/N", 1, ratio <= np.quantile(ratio, 0.8)), ("D/N", 2, ratio >= np.quantile(ratio, 0.2))]


def axis_splits(form: forms.Form, X: dict, L, C) -> list[dict]:
    """Back-tests across the design rather than up it: leave the largest one and two model sizes out
    (a bigger model than any fitted, at the compute it was trained with), and leave the highest and
    the lowest fifth of D/N out (longer or shorter training per parameter than any fitted)."""
    L, C = np.asarray(L, float), np.asarray(C, float)
    return [p for axis, k, train in axis_masks(X["N"], X["D"]) if form.n_free + 1 < train.sum() < len(L)
            for p in _predict_held_out(form, X, L, C, train, axis, k)]


def calibrate(fit, X: dict, L, C, tol_dex=0.02) -> dict:
    """The fit's rollout, its back-tests along N and D/N (`axes`), and the form error they measure
    together set on the fit (fit.form_error, which prediction intervals then carry). Returns the
    rollout, with the axis back-tests and the form error in it."""
    from harness.fit.extrapolation import Design, form_error

    ro = rollout(fit.form, X, L, C, tol_dex)
    ro["axes"] = axis_splits(fit.form, X, L, C)
    fit.form_error = form_error(ro["predictions"] + ro["axes"], noise_sd(fit), Design.of(X["N"], X["D"]))
    if fit.form_error is not None:
        ro["form_error"] = fit.form_error.as_dict()
    return ro


def noise_sd(fit) -> float:
    """The fit's residual sd of log loss, dof-corrected (a study has few points to spare)."""
    return float(np.sqrt(np.sum(fit.residuals ** 2) / max(fit.n_points - fit.form.n_free, 1)))
