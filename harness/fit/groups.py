"""Laws side by side: fit each group of runs (e.g. group_by=arch) with one form, test the difference.

This answers "is architecture X a better scaling lever?": each group gets its own law and
bootstrap; the groups are resampled independently, so sample-wise differences of their bootstrap
draws give the difference's distribution. Compared: every exponent of the form, and the
compute-optimal loss at a reference compute (the largest C the groups share). numpy only, no I/O.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.fit import forms
from harness.fit.allocate import allocation
from harness.fit.analysis import isoflop_section
from harness.fit.law import bootstrap_form, fit_form

EXPONENTS = ("alpha", "beta", "alpha_N", "alpha_D")


def difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Estimate, 95 % interval and two-sided bootstrap p-value of a - b from independent draws."""
    n = min(len(a), len(b))
    d = a[:n] - b[:n]
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return {"n": int(len(d))}
    p = 2 * min(np.mean(d <= 0), np.mean(d >= 0))
    lo, hi = np.percentile(d, [2.5, 97.5])
    return {"median": float(np.median(d)), "ci95": [float(lo), float(hi)], "p_value": float(min(1.0, p)),
            "n": int(len(d))}


def compare(table: pd.DataFrame, column: str, form: forms.Form, n_bootstrap=1000, seed=0, tol_dex=0.02) -> dict:
    """Fit `form` to each group of `table[column]`; the laws and their differences (first group
    minus each other one)."""
    names = [g for g in pd.unique(table[column]) if isinstance(g, str) or np.isfinite(g)]
    if len(names) < 2:
        raise HarnessError(f"group_by={column}: the runs hold {len(names)} group(s) {names}; need >= 2")
    c_ref = float(min(table.loc[table[column] == g, "C"].max() for g in names))
    laws, draws = {}, {}
    for g in names:
        part = table[table[column] == g]
        X, L = forms.data(form, part), part["loss"].to_numpy(float)
        fit = bootstrap_form(fit_form(form, X, L), X, L, n_bootstrap, seed)
        z = fit.z_samples if fit.z_samples is not None and len(fit.z_samples) else fit.z[None]
        ref = allocation(fit, z, [c_ref])["loss_opt"][:, 0]
        draws[g] = {**{k: fit.samples[:, j] for j, k in enumerate(form.params) if k in EXPONENTS},
                    "loss_opt_at_C_ref": ref}
        laws[str(g)] = {"n_points": int(len(part)), "params": fit.params,
                        "ci95": {k: (None if k in fit.not_identified else v) for k, v in fit.ci95.items()},
                        "not_identified": fit.not_identified,
                        "loss_opt_at_C_ref": float(allocation(fit, fit.z[None], [c_ref])["loss_opt"][0, 0]),
                        "isoflop": group_isoflop(part, n_bootstrap, seed, tol_dex)}
    first = names[0]
    diffs = {f"{first} - {g}": {k: difference(draws[first][k], draws[g][k]) for k in draws[first]}
             for g in names[1:]}
    return {"column": column, "form": form.label, "C_ref": c_ref, "laws": laws, "differences": diffs,
            "test": "independent bootstrap of each group; p-value = 2 min(P(d <= 0), P(d >= 0))"}


def group_isoflop(part: pd.DataFrame, n_bootstrap: int, seed: int, tol_dex: float) -> dict | None:
    """Approach 2 within one group: pooling groups whose losses differ (two ladders) puts that
    difference into every parabola's residuals. a with its interval, as the pooled fit's."""
    res = isoflop_section(*(part[k].to_numpy(float) for k in ("N", "loss", "C")), n_bootstrap, seed, tol_dex)
    if res is None or res["a"] is None:
        return None
    out = {"a": res["a"], "n_budgets": len(res["budgets"]), "n_rejected": len(res["rejected"])}
    if "ci95" in res:
        out["ci95"] = res["ci95"].get("a")
    return out
