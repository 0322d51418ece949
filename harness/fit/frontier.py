"""The compute-optimal frontier with intervals that hold beyond the data, and its trust horizon.

numpy only, no I/O. N*(C), D*(C) and L*(C) of the headline form at each budget, each with a 95 %
interval made of its parts (extrapolation.py):
  parameter  the headline's bootstrap spread;
  form       for N* and D*, the RMS distance in log of the other identified forms' and approach 2's
             N*(C) from the headline's (no run measures N*, so no rollout can calibrate it; where the
             candidates agree the part is small, where they part it grows with C); for L*, the
             headline's rollout-measured form error, kappa * dex beyond the fitted compute;
  noise      for L*, one run's scatter about the law.
The trust horizon is the distance beyond the largest fitted C at which those intervals pass a
width a user would care about.
"""
from __future__ import annotations

import numpy as np

from harness.fit.allocate import allocation, compute_optimal
from harness.fit.extrapolation import Z95, first_passing, halfwidth, spread_sd
from harness.fit.law import PARAMS, Fit, summarise

LOSS_WIDTHS = (0.01, 0.02, 0.05)  # relative half-widths of the loss interval the horizon reports
N_FACTORS = (1.5, 2.0)  # factors of the N* interval (max(hi/N*, N*/lo)) the horizon reports
HORIZON_DEX = np.round(np.arange(0.0, 3.0001, 0.1), 10)  # distances searched, dex beyond the fitted C
CHUNK = 64  # bootstrap rows per allocation call: Kaplan's optimum is a grid search per row


def _allocate(fit: Fit, z: np.ndarray, C) -> dict:
    parts = [allocation(fit, z[i:i + CHUNK], C) for i in range(0, len(z), CHUNK)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def alternatives(fits: dict, head: str, iso: dict | None, C) -> dict:
    """{label: log N*(C)} of every other identified form and of approach 2's power law."""
    out = {}
    for label, f in fits.items():
        if label != head and f.identifiable:
            out[label] = np.log(allocation(f, f.z[None], C)["N_opt"][0])
    if iso and iso.get("a") is not None and iso.get("a_intercept") is not None:
        out["approach 2"] = iso["a_intercept"] + iso["a"] * np.log(np.asarray(C, float))
    return out


def allocation_interval(fit: Fit, alts: dict, C, seed=0) -> dict:
    """Point, 95 % interval and parts (log half-widths) of N*, D*, L* at budgets C."""
    C = np.atleast_1d(np.asarray(C, float))
    point = {k: v[0] for k, v in allocation(fit, fit.z[None], C).items()}
    z = fit.z_samples if fit.z_samples is not None and len(fit.z_samples) else fit.z[None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # rows with no optimum: dropped below
        s = _allocate(fit, z, C)
        logn, logl = np.log(s["N_opt"]), np.log(s["loss_opt"])
    rng = np.random.default_rng(seed)
    out = {"C": C, "point": point, "lo": {}, "hi": {}, "parts": {}, "samples": s}
    logn = logn[np.all(np.isfinite(logn), axis=1)]  # rows with no optimum say nothing of where it is
    form_n = spread_sd(np.log(point["N_opt"]), list(alts.values()))
    eps = rng.standard_normal(logn.shape) * form_n  # one draw serves N* and D* = C / 6 N*
    for key, sign in (("N_opt", 1.0), ("D_opt", -1.0)):
        if len(logn) < 2:
            break
        param = sign * logn + (np.log(C / 6.0) if sign < 0 else 0.0)
        draws = param + sign * eps
        lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
        out["lo"][key], out["hi"][key] = np.exp(lo), np.exp(hi)
        out["parts"][key] = {"parameter": halfwidth(param), "form": Z95 * form_n}
    logl = logl[np.all(np.isfinite(logl), axis=1)]
    if len(logl) >= 2:
        X = {"N": point["N_opt"], "D": point["D_opt"]}
        sd = fit.form_error.sd(X["N"], X["D"]) if fit.form_error is not None else np.zeros(len(C))
        noise = rng.choice(fit.residuals, size=logl.shape)
        draws = logl + noise + rng.standard_normal(logl.shape) * sd
        lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
        out["lo"]["loss_opt"], out["hi"]["loss_opt"] = np.exp(lo), np.exp(hi)
        out["parts"]["loss_opt"] = {"parameter": halfwidth(logl), "noise": halfwidth(noise), "form": Z95 * sd}
    return out


def section(fit: Fit, fits: dict, head: str, iso: dict | None, budgets, c_max: float, seed=0) -> dict:
    """N*(C), D*(C), D/N and L* at each budget with intervals and their parts; each budget says
    how far beyond the largest fitted compute it is (a projection, not a measurement, when > 0)."""
    budgets = np.asarray(budgets, float)
    alts = alternatives(fits, head, iso, budgets)
    iv = allocation_interval(fit, alts, budgets, seed)
    point = iv["point"]
    out = {"form": fit.form.label, "convention": "C = 6 N D", "budgets": [], "stderr": {}, "ci95": {},
           "interval": "95 %: parameter (bootstrap) + form (N*, D*: spread of " + (", ".join(alts) or "no other law")
                       + " about the headline; L*: rollout kappa x dex) + noise (L*)",
           "form_error": fit.form_error.as_dict() if fit.form_error is not None else None}
    if fit.form.name in ("chinchilla", "datacon"):
        co = compute_optimal(**{k: fit.params[k] for k in PARAMS}, C=budgets)
        out.update(a=float(co["a"]), b=float(co["b"]), G=float(co["G"]))
    elif len(budgets) >= 2:
        out.update(a=_slope(budgets, point["N_opt"]), b=_slope(budgets, point["D_opt"]))
    s = iv["samples"] if fit.z_samples is not None and len(fit.z_samples) else None  # the bootstrap's rows
    if s is not None:
        if len(budgets) >= 2:
            out["stderr"], out["ci95"] = summarise({"a": _slope(budgets, s["N_opt"]), "b": _slope(budgets, s["D_opt"])})
    where = fit.form_error.design.describe(point["N_opt"], point["D_opt"]) if fit.form_error is not None else None
    for j, C in enumerate(budgets):
        row = {"C": float(C), "projection_dex": float(np.log10(C / c_max)), "N_opt": float(point["N_opt"][j]),
               "D_opt": float(point["D_opt"][j]), "loss_opt": float(point["loss_opt"][j]),
               "tokens_per_param": float(point["D_opt"][j] / point["N_opt"][j]),
               "alternatives_N_opt": {k: float(np.exp(v[j])) for k, v in alts.items()}}
        if where is not None:  # where the optimum lies against the fitted design, in N, D, D/N and C
            row.update(where[j])
        if s is not None:
            row["stderr"], row["ci95_parameter"] = summarise({
                "N_opt": s["N_opt"][:, j], "D_opt": s["D_opt"][:, j], "loss_opt": s["loss_opt"][:, j],
                "tokens_per_param": s["D_opt"][:, j] / s["N_opt"][:, j]})
            row["ci95"] = {k: [float(iv["lo"][k][j]), float(iv["hi"][k][j])] for k in iv["lo"]}
            if "N_opt" in row["ci95"]:  # D*/N* = C / 6 N*^2: its interval follows N*'s
                lo_n, hi_n = row["ci95"]["N_opt"]
                row["ci95"]["tokens_per_param"] = [C / 6 / hi_n ** 2, C / 6 / lo_n ** 2]
            row["parts"] = {k: {p: float(v[j]) for p, v in parts.items()} for k, parts in iv["parts"].items()}
        out["budgets"].append(row)
    return out


def horizon(fit: Fit, fits: dict, head: str, iso: dict | None, c_max: float, seed=0) -> dict:
    """Dex beyond the largest fitted C at which the headline's 95 % interval on L* passes each of
    LOSS_WIDTHS (relative half-width) and on N* each of N_FACTORS; None: not within HORIZON_DEX."""
    C = c_max * 10 ** HORIZON_DEX
    iv = allocation_interval(fit, alternatives(fits, head, iso, C), C, seed)
    out = {"dex_searched": [float(HORIZON_DEX[0]), float(HORIZON_DEX[-1])], "c_max": c_max,
           "form_error": fit.form_error.as_dict() if fit.form_error is not None else None}
    if "loss_opt" in iv["lo"]:
        p = iv["point"]["loss_opt"]
        width = np.maximum(iv["hi"]["loss_opt"] / p - 1, 1 - iv["lo"]["loss_opt"] / p)
        out["loss"] = {f"{w:.0%}": first_passing(HORIZON_DEX, width, w) for w in LOSS_WIDTHS}
    if "N_opt" in iv["lo"]:
        p = iv["point"]["N_opt"]
        factor = np.maximum(iv["hi"]["N_opt"] / p, p / iv["lo"]["N_opt"])
        out["N_opt"] = {f"x{f:g}": first_passing(HORIZON_DEX, factor, f) for f in N_FACTORS}
    out["in_N_and_D"] = {kind: {w: _optimum_at(fit, c_max, x) for w, x in out[kind].items()}
                         for kind in ("loss", "N_opt") if kind in out}
    return out


def _optimum_at(fit: Fit, c_max: float, dex: float | None) -> dict | None:
    """A horizon stated in the space a user moves in: the compute-optimal N and tokens per parameter
    at `dex` beyond the largest fitted C (None: no horizon within the search)."""
    if dex is None:
        return None
    C = c_max * 10 ** dex
    p = allocation(fit, fit.z[None], [C])
    n, d = float(p["N_opt"][0, 0]), float(p["D_opt"][0, 0])
    return {"dex": dex, "C": C, "N_opt": n, "tokens_per_param": d / n}


def _slope(C, Y):
    """d log Y / d log C across the budgets, per row of Y (R, m) or for one row."""
    x = np.log(C) - np.log(C).mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(Y)
    return (y - y.mean(axis=-1, keepdims=True)) @ x / (x @ x)


def cover_forms(row: dict, others: dict) -> dict:
    """A prediction row's interval widened to cover every form that disagrees with it (the forms'
    spread is part of the error where they part); the headline form's own interval kept as pi95_form."""
    out = dict(others)
    if others["disagree"]:
        ends = [v for lab in others["disagree"] for v in others["forms"][lab]["pi95"]]
        out["pi95_form"] = row["pi95"]
        out["pi95"] = [min(row["pi95"][0], *ends), max(row["pi95"][1], *ends)]
    return out


def forms_at(fits: dict, head: str, X: dict, seed=0) -> list[dict]:
    """Every fitted form's predicted loss and 95 % interval at the points X, and whether any other
    form's interval misses the headline's (they disagree beyond their intervals: the report then
    shows both instead of one number)."""
    from harness.fit.law import interval_parts

    per = {}
    for label, f in fits.items():
        if f.identifiable and f.z_samples is not None:
            iv = interval_parts(f, X, seed=seed)
            per[label] = iv
    rows = []
    for j in range(len(X["N"])):
        h = per.get(head)
        entry = {label: {"predicted": float(iv["point"][j]), "pi95": [float(iv["lo"][j]), float(iv["hi"][j])]}
                 for label, iv in per.items()}
        apart = [lab for lab, e in entry.items() if h is not None and lab != head
                 and (e["pi95"][0] > h["hi"][j] or e["pi95"][1] < h["lo"][j])]
        rows.append({"forms": entry, "disagree": apart})
    return rows
