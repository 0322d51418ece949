"""A prediction made before its check: write it from a fit, score it once the cells have run (no I/O).

`harness-study` fits the cells trained so far and, before the held-out cells run, writes
`prediction.json` with `make`; `harness-fit` finds that file beside the runs and puts `score` into
fit.json. The file's layout is a contract other tools read:

    {"created", "fitted_on": [cell keys], "form",
     "cells": [{"cell_key", "N", "D", "C", "predicted", "pi95": [lo, hi]}, ...]}

(plus, for readers: the convention of N and C, each cell's distance beyond the fitted compute, and
the form's compute-optimal size at each held-out budget with its bootstrap interval).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.fit import forms
from harness.fit.allocate import allocation
from harness.fit.extrapolation import Design
from harness.fit.frontier import cover_forms, forms_at
from harness.fit.law import Fit, interval_parts, summarise
from harness.store import records

NAME = "prediction.json"
INTERVAL = ("95 %: parameter (bootstrap) + noise (a resampled residual) + form (sd kappa x distance_dex outside the "
            "fitted design in N, D and C, D/N's recorded, kappa from the fit's back-tests along C, N and D/N); "
            "widened to cover every form whose interval misses it (pi95_form: the headline form's own); "
            "pi95_parts: each part's own half-width in log loss")


def make(fit: Fit, table: pd.DataFrame, cells: list[dict], convention: str, fits: dict | None = None) -> dict:
    """Predicted loss with a 95 % prediction interval for each cell {cell_key, N, D} not yet run,
    with the interval's parts; with `fits` (every fitted form), each cell also carries every form's
    prediction and names the forms that disagree with the headline beyond their intervals.

    N is under `convention` (the fit's), C = 6 N D; U (unique training tokens, for datacon) is the
    fitted runs' own, since held-out cells train on the same corpus."""
    fitted = set(table["cell_key"].dropna()) if "cell_key" in table else set()
    clash = sorted(c["cell_key"] for c in cells if c["cell_key"] in fitted)
    if clash:
        raise HarnessError(f"held-out cell(s) already among the fitted runs: {', '.join(clash)}")
    new = pd.DataFrame({"N": [float(c["N"]) for c in cells], "D": [float(c["D"]) for c in cells]})
    if "U" in table and table["U"].notna().all():
        new["U"] = float(table["U"].iloc[0])
    X = forms.data(fit.form, new)
    iv = interval_parts(fit, X)
    U = new["U"].to_numpy(float) if "U" in new else np.full(len(new), np.inf)
    others = forms_at(fits, _label(fits, fit), {**X, "U": U}) if fits else None
    c_max = float(table["C"].max())
    where = Design.of(table["N"].to_numpy(float), table["D"].to_numpy(float)).describe(new["N"], new["D"])
    out_cells = []
    for j, c in enumerate(cells):
        C = 6.0 * float(c["N"]) * float(c["D"])
        row = {"cell_key": c["cell_key"], "N": float(c["N"]), "D": float(c["D"]), "C": C,
               "predicted": float(iv["point"][j]), "pi95": [float(iv["lo"][j]), float(iv["hi"][j])],
               "projection_dex": float(np.log10(C / c_max)), **where[j],
               "pi95_parts": {k: float(v[j]) for k, v in iv["parts"].items()}}
        if others is not None:
            row.update(cover_forms(row, others[j]))
        out_cells.append(row)
    return {"created": records.now(),
            "fitted_on": sorted(fitted), "form": fit.form.label,
            "convention": {"N": convention, "C": "6 N D"},
            "fitted_compute_max": c_max, "cells": out_cells,
            "interval": INTERVAL, "form_error": fit.form_error.as_dict() if fit.form_error is not None else None,
            "compute_optimal": _optimum(fit, sorted({c["C"] for c in out_cells}))}


def _label(fits: dict, fit: Fit) -> str:
    return next(lab for lab, f in fits.items() if f is fit)


def _optimum(fit: Fit, budgets: list[float]) -> list[dict]:
    """The form's compute-optimal N at each held-out budget, with its bootstrap 95 % interval."""
    point = allocation(fit, fit.z[None], budgets)
    rows = []
    samples = allocation(fit, fit.z_samples, budgets) if fit.z_samples is not None and len(fit.z_samples) else None
    for j, C in enumerate(budgets):
        row = {"C": C, "N_opt": float(point["N_opt"][0, j]), "D_opt": float(point["D_opt"][0, j]),
               "loss_opt": float(point["loss_opt"][0, j])}
        if samples is not None:
            row["ci95"] = summarise({"N_opt": samples["N_opt"][:, j]})[1].get("N_opt")
        rows.append(row)
    return rows


def score(prediction: dict, table: pd.DataFrame) -> dict:
    """Each predicted cell against its measured loss (seeds averaged), where it has run."""
    measured = dict(zip(table["cell_key"], table["loss"]))
    rows = []
    for c in prediction.get("cells", []):
        if c["cell_key"] not in measured:
            continue
        m = float(measured[c["cell_key"]])
        rows.append({"cell_key": c["cell_key"], "predicted": c["predicted"], "measured": m,
                     "rel_error": (c["predicted"] - m) / m, "pi95": c["pi95"],
                     "inside_pi95": bool(c["pi95"][0] <= m <= c["pi95"][1]),
                     "projection_dex": c.get("projection_dex")})
    missing = [c["cell_key"] for c in prediction.get("cells", []) if c["cell_key"] not in measured]
    return {"created": prediction.get("created"), "form": prediction.get("form"), "cells": rows,
            "not_yet_run": missing,
            "mean_abs_rel_error": float(np.mean([abs(r["rel_error"]) for r in rows])) if rows else None,
            "n_inside_pi95": sum(r["inside_pi95"] for r in rows)}


def by_group(table: pd.DataFrame, cells: list[dict], group_by: str, convention: str, seed: int = 0,
             **options) -> dict:
    """prediction.json's layout for cells {cell_key, N, D, group}, each answered by its own group's
    law: harness-fit's analysis of that group's runs alone (`options` are analyse's), bootstrapped
    with the group's own seed (groups.group_seed). harness-fit predict= and harness-study share it."""
    from harness.fit.analysis import analyse
    from harness.fit.groups import group_seed

    parts = {}
    for g in sorted({c["group"] for c in cells}):
        sub = table[table[group_by].astype(str) == g]
        if sub.empty:
            raise HarnessError(f"cells of {group_by}={g} have no fitted runs of that {group_by}")
        results, fits = analyse(sub, seed=group_seed(seed, g), **options)
        mine = [{k: c[k] for k in ("cell_key", "N", "D")} for c in cells if c["group"] == g]
        parts[g] = make(fits[results["model_choice"]["headline"]], sub, mine, convention, fits)
        parts[g]["why_form"] = results["model_choice"]["why"]
    first = next(iter(parts.values()))
    return {"created": first["created"], "fitted_on": sorted(k for p in parts.values() for k in p["fitted_on"]),
            "form": ", ".join(sorted({p["form"] for p in parts.values()})), "group_by": group_by,
            "convention": first["convention"],
            "fitted_compute_max": max(p["fitted_compute_max"] for p in parts.values()),
            "groups": {g: {"form": p["form"], "why_form": p["why_form"], "n_fitted": len(p["fitted_on"]),
                           "bootstrap_seed": group_seed(seed, g), "fitted_compute_max": p["fitted_compute_max"]}
                       for g, p in parts.items()},
            "cells": [{**c, "group": g, "form": p["form"]} for g, p in parts.items() for c in p["cells"]],
            "compute_optimal": [{**c, "group": g} for g, p in parts.items() for c in p["compute_optimal"]]}
