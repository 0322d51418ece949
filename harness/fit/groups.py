"""Laws side by side: fit each group of runs (e.g. group_by=arch) with one form, test the difference.

This answers "is architecture X a better scaling lever?": each group gets its own law and
bootstrap; the groups are resampled independently (each with its own seed, group_seed), so
sample-wise differences of their bootstrap draws give the difference's distribution. Compared,
each group against the reference group (`ref`, default the first): every exponent of the form,
the compute-optimal loss at a reference compute C_ref (the largest C the groups share), and the
compute multiplier: the factor of compute at which the reference's law reaches the group's
compute-optimal loss, at C_ref and projected to 10 C_ref (> 1: the group gets there with less
compute). numpy only, no I/O.
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.fit import forms
from harness.fit.allocate import allocation
from harness.fit.analysis import isoflop_section
from harness.fit.law import bootstrap_form, fit_form

EXPONENTS = ("alpha", "beta", "alpha_N", "alpha_D")
SPAN_DEX = 2.0  # multipliers are searched within 10^-2..10^2; one beyond is reported at the bound (censored)


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


def equivalent_compute(fit, z: np.ndarray, target: np.ndarray, c0: float, step=0.05) -> np.ndarray:
    """Per row of z, the compute at which the law's compute-optimal loss falls to target[row], as a
    multiple of c0: a grid of `step` dex over +-SPAN_DEX, interpolated linearly in log C (L* falls
    monotonically with C). NaN where the row has no optimum; at a bound where it lies beyond."""
    logm = np.arange(-SPAN_DEX, SPAN_DEX + step / 2, step)
    lopt = allocation(fit, z, c0 * 10 ** logm)["loss_opt"]
    out = np.full(len(z), np.nan)
    for i, (row, t) in enumerate(zip(lopt, np.broadcast_to(target, len(z)))):
        if not (np.all(np.isfinite(row)) and np.isfinite(t)):
            continue
        if t >= row[0] or t <= row[-1]:
            out[i] = logm[0] if t >= row[0] else logm[-1]
            continue
        j = int(np.argmax(row <= t))
        out[i] = logm[j - 1] + step * (row[j - 1] - t) / (row[j - 1] - row[j])
    return 10 ** out


def frontier(fit, c_lo: float, c_hi: float, n=40) -> dict:
    """The law's compute-optimal loss L*(C) on n budgets from c_lo / 2 to c_hi (for groups.png)."""
    C = np.logspace(np.log10(c_lo / 2), np.log10(c_hi), n)
    return {"C": C.tolist(), "loss_opt": allocation(fit, fit.z[None], C)["loss_opt"][0].tolist()}


def multiplier(ref: tuple, target: float, target_draws: np.ndarray, c0: float) -> dict:
    """The compute multiplier against `ref` (its fit and bootstrap rows) of a group whose compute-optimal
    loss at c0 is `target` (its bootstrap draws: `target_draws`): M with L*_ref(M c0) = target. The
    interval pairs independent draws, as `difference` does."""
    point = equivalent_compute(ref[0], ref[0].z[None], np.array([target]), c0)[0]
    n = min(len(ref[1]), len(target_draws))
    draws = equivalent_compute(ref[0], ref[1][:n], target_draws[:n], c0)
    draws = draws[np.isfinite(draws)]
    out = {"C": float(c0), "multiplier": float(point), "n": int(len(draws))}
    if len(draws) >= 2:
        out["ci95"] = [float(v) for v in np.percentile(draws, [2.5, 97.5])]
        out["censored"] = float(np.mean(np.abs(np.log10(draws)) >= SPAN_DEX - 1e-9))  # draws at a search bound
    return out


def compare(table: pd.DataFrame, column: str, form: forms.Form, n_bootstrap=1000, seed=0, tol_dex=0.02,
            ref: str = "") -> dict:
    """Fit `form` to each group of `table[column]`; the laws, their differences (the reference group
    minus each other one) and each group's compute multiplier against the reference."""
    names = [g for g in pd.unique(table[column]) if isinstance(g, str) or np.isfinite(g)]
    if len(names) < 2:
        raise HarnessError(f"group_by={column}: the runs hold {len(names)} group(s) {names}; need >= 2")
    if ref:
        if ref not in map(str, names):
            raise HarnessError(f"group_ref={ref}: no such {column} among the runs ({', '.join(map(str, names))})")
        names = sorted(names, key=lambda g: str(g) != ref)  # the reference first, the others in their order
    c_ref = float(min(table.loc[table[column] == g, "C"].max() for g in names))
    budgets = (c_ref, 10 * c_ref)  # where the multipliers are read: the largest shared C and +1 dex
    laws, draws, fits, at = {}, {}, {}, {}
    for g in names:
        part = table[table[column] == g]
        X, L = forms.data(form, part), part["loss"].to_numpy(float)
        fit = bootstrap_form(fit_form(form, X, L), X, L, n_bootstrap, group_seed(seed, g))
        z = fit.z_samples if fit.z_samples is not None and len(fit.z_samples) else fit.z[None]
        fits[g] = (fit, z)
        at[g] = (allocation(fit, fit.z[None], budgets)["loss_opt"][0], allocation(fit, z, budgets)["loss_opt"])
        draws[g] = {**{k: fit.samples[:, j] for j, k in enumerate(form.params) if k in EXPONENTS},
                    "loss_opt_at_C_ref": at[g][1][:, 0]}
        laws[str(g)] = {"n_points": int(len(part)), "bootstrap_seed": group_seed(seed, g), "params": fit.params,
                        "ci95": {k: (None if k in fit.not_identified else v) for k, v in fit.ci95.items()},
                        "not_identified": fit.not_identified,
                        "loss_opt_at_C_ref": float(at[g][0][0]),
                        "frontier": frontier(fit, float(part["C"].min()), budgets[1]),
                        "isoflop": group_isoflop(part, n_bootstrap, group_seed(seed, g), tol_dex)}
    first = names[0]
    diffs = {f"{first} - {g}": {k: difference(draws[first][k], draws[g][k]) for k in draws[first]}
             for g in names[1:]}
    mult = {str(g): {label: multiplier(fits[first], at[g][0][i], at[g][1][:, i], c)
                     for i, (label, c) in enumerate(zip(("at_C_ref", "at_10_C_ref"), budgets))} for g in names[1:]}
    return {"column": column, "form": form.label, "C_ref": c_ref, "ref": str(first), "laws": laws,
            "differences": diffs, "multipliers": mult,
            "test": "independent bootstrap of each group (its own seed, laws.*.bootstrap_seed); "
                    "p-value = 2 min(P(d <= 0), P(d >= 0))"}


def group_seed(seed: int, name) -> int:
    """Group `name`'s bootstrap seed: a stream of its own, fixed by the fit's seed and the group's name.
    With one seed for every group, groups of equal size draw the same resample rows, so their draws
    are correlated and every difference's and multiplier's interval comes out too narrow. A group's
    law and intervals are those of `harness-fit` on its runs alone with seed=group_seed(seed, name)."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(str(name).encode())]).generate_state(1)[0])


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
