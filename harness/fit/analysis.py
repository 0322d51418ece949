"""Run every fit on a tidy run table and gather the results fit.json carries (no I/O).

Every law form (forms.py) is fitted, bootstrapped and rolled out (backtest.rollout); the forms
are ranked by their held-out rollout error, and the best one gives the headline numbers
(compute-optimal allocation, back-test with prediction intervals). Approaches 1 and 2 and the
published laws sit beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.fit import forms, frontier
from harness.fit import isoflop as iso
from harness.fit.allocate import compute_optimal
from harness.fit.backtest import backtest, calibrate
from harness.fit.law import PARAMS, Fit, bootstrap_form, fit_form, summarise
from harness.fit.laws import PUBLISHED

DEFAULT_FORMS = ("chinchilla", "kaplan", "datacon")


def _default_budgets(C) -> list[float]:
    # The largest budget measured, then one and two decades beyond: where a law gets used.
    cmax = float(np.max(C))
    return [cmax, 10 * cmax, 100 * cmax]


def form_section(fit: Fit) -> dict:
    """A fitted form's parameters with SE, 95 % CI (None where not identified), AIC and BIC."""
    ci = {k: (None if k in fit.not_identified else v) for k, v in fit.ci95.items()}
    se = {k: (None if k in fit.not_identified else v) for k, v in fit.stderr.items()}
    return {"form": fit.form.name, "constraint": fit.form.constraint, "params": fit.params,
            "stderr": se, "ci95": ci, "not_identified": fit.not_identified,
            "objective": fit.objective, "loss": f"huber(delta={fit.delta}) summed over log-loss residuals",
            "n_free_params": fit.form.n_free, "aic": fit.aic, "bic": fit.bic,
            "residual_rms": float(np.sqrt(np.mean(fit.residuals ** 2))),
            "convergence": {"converged": fit.converged, "message": fit.message, "n_iter": fit.n_iter,
                            "n_starts": fit.n_starts},
            "identifiable": fit.identifiable, "n_bootstrap": fit.n_bootstrap,
            "n_bootstrap_failed": fit.n_boot_failed}


def _parametric_section(fit: Fit) -> dict:
    """The Chinchilla form in the layout fit.json has always had (E, A, B, alpha, beta at the top)."""
    out = {k: fit.params[k] for k in PARAMS}
    out.update(form_section(fit))
    return out


ISOFLOP_INTERVAL = ("wild bootstrap of each budget's parabola (sizes fixed, each cell's residual times a "
                    "random sign); resampling cells instead overstates the interval 3-5x at 5-7 sizes per "
                    "budget in simulation (scripts/noise_floor.py, tests/test_noisefloor.py)")


def isoflop_section(N, L, C, n_bootstrap, seed, tol_dex) -> dict | None:
    res = iso.isoflop(N, L, C, tol_dex=tol_dex)
    if res is None:
        return None
    if res["a"] is not None and n_bootstrap > 0:
        s = iso.isoflop_wild_bootstrap(N, L, C, n_bootstrap, seed=seed, tol_dex=tol_dex)
        res["stderr"], res["ci95"] = summarise(s)
        res["interval"] = ISOFLOP_INTERVAL
    return res


def _published_section(N, D, L, budgets) -> dict:
    out = {}
    for key, law in PUBLISHED.items():
        entry = {"name": law.name, "source": law.source, "n_convention": law.n_convention,
                 "log_loss_rmse_on_these_runs":
                     float(np.sqrt(np.mean((np.log(law.predict(N, D)) - np.log(L)) ** 2)))}
        if law.chinchilla_form:
            p = {k: getattr(law, k) for k in PARAMS}
            co = compute_optimal(**p, C=np.asarray(budgets))
            entry.update(p, a=float(co["a"]), b=float(co["b"]),
                         N_opt=[float(x) for x in co["N_opt"]],
                         tokens_per_param=[float(x) for x in co["D_opt"] / co["N_opt"]])
        else:
            entry["kaplan"] = law.kaplan
        out[key] = entry
    return out


def model_choice(sections: dict, rollouts: dict, requested: str | None) -> dict:
    """Rank forms by their rollout error weighted by distance (a prediction twice as far beyond the
    fitted compute counts twice): a law is used where it extrapolates, and forms that agree inside
    the data can part at +1 dex. The plain mean and AIC/BIC sit beside it."""
    rows = [{"form": label, "rollout_distance_weighted_abs_rel_error":
             rollouts[label].get("distance_weighted_abs_rel_error"),
             "rollout_mean_abs_rel_error": rollouts[label].get("mean_abs_rel_error"),
             "form_error_per_dex": (rollouts[label].get("form_error") or {}).get("per_dex"),
             "aic": sections[label]["aic"], "bic": sections[label]["bic"],
             "not_identified": sections[label]["not_identified"]} for label in sections]
    key = "rollout_distance_weighted_abs_rel_error"
    rows.sort(key=lambda r: (r[key] is None, r[key] or 0, r["bic"]))
    if requested:
        headline = next(r["form"] for r in rows if r["form"] == requested)
        why = f"chosen on the command line (form={requested})"
    elif rows[0][key] is None:
        headline = min(rows, key=lambda r: r["bic"])["form"]
        why = "no rollout was possible (too few compute groups): lowest BIC"
    else:
        headline, err = rows[0]["form"], rows[0][key]
        why = (f"lowest held-out rollout error weighted by distance ({err:.2%} |relative error| predicting "
               "dearer runs from cheaper ones, each prediction weighted by its dex beyond the fitted compute)")
    return {"ranking": rows, "headline": headline, "why": why,
            "criterion": "sum(d |relative error|) / sum(d) over rollout predictions (fit on the cheapest k "
                         "compute groups, predict every dearer run at d dex beyond them, for every k); "
                         "AIC/BIC from Gaussian log residuals"}


def fit_forms(table: pd.DataFrame, names, *, E=None, tie=False, n_bootstrap=1000, seed=0, tol_dex=0.02):
    """{label: Fit} and {label: rollout} for each form the table has the columns for."""
    fits, rollouts, skipped = {}, {}, {}
    L, C = table["loss"].to_numpy(float), table["C"].to_numpy(float)
    for name in names:
        form = forms.get(name, E=E if name != "kaplan" else None, tie=tie and name != "kaplan")
        if name == "datacon" and ("U" not in table or not (table["U"] > 0).all()):
            skipped[form.label] = "runs carry no unique-token count U (unique_train_tokens)"
            continue
        if len(L) <= form.n_free:
            skipped[form.label] = f"{len(L)} points cannot determine its {form.n_free} parameters"
            continue
        X = forms.data(form, table)
        fit = fit_form(form, X, L)
        if n_bootstrap > 0 and fit.identifiable:
            bootstrap_form(fit, X, L, n_bootstrap, seed)
        fits[form.label], rollouts[form.label] = fit, calibrate(fit, X, L, C, tol_dex)
    return fits, rollouts, skipped


def analyse(table: pd.DataFrame, *, n_bootstrap=1000, seed=0, holdout=0.1, budgets=None, tol_dex=0.02,
            form_names=DEFAULT_FORMS, form=None, E=None, tie=False) -> tuple[dict, dict]:
    """All fits on columns N, D, C, loss (U for datacon) of `table`. Returns (results, {label: Fit})."""
    N, D, C, L = (table[k].to_numpy(float) for k in ("N", "D", "C", "loss"))
    budgets = list(budgets) if budgets else _default_budgets(C)
    names = list(dict.fromkeys(([form] if form else []) + list(form_names)))
    fits, rollouts, skipped = fit_forms(table, names, E=E, tie=tie, n_bootstrap=n_bootstrap, seed=seed,
                                        tol_dex=tol_dex)
    if not fits:
        raise HarnessError("no law form can be fitted: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    sections = {label: form_section(f) for label, f in fits.items()}
    for label, r in rollouts.items():
        sections[label]["rollout"] = r
    requested = next((lab for lab in fits if fits[lab].form.name == form), None) if form else None
    choice = model_choice(sections, rollouts, requested)
    head = fits[choice["headline"]]
    warnings = _warnings(fits, choice, skipped)
    chin = next((f for f in fits.values() if f.form.name == "chinchilla"), None)
    head_X = forms.data(head.form, table)
    results = {
        "n_points": int(len(L)),
        "forms": sections,
        "forms_skipped": skipped,
        "model_choice": choice,
        "parametric": _parametric_section(chin) if chin is not None else None,
        "isoflop": isoflop_section(N, L, C, n_bootstrap, seed, tol_dex),
        "compute_optimal": None,
        "backtest": backtest(head.form, head_X, L, C, holdout=holdout, n_bootstrap=min(n_bootstrap, 200),
                             seed=seed, tol_dex=tol_dex),
        "envelope": iso.envelope(N, D, L, C, tol_dex),
        "kaplan": iso.kaplan_laws(N, D, L, C, tol_dex=tol_dex),
        "published": _published_section(N, D, L, budgets),
        "seed_noise": seed_noise(table, head),
        "warnings": warnings,
    }
    iso_res = results["isoflop"]
    if head.identifiable:
        c_max = float(np.max(6.0 * head_X["N"] * head_X["D"]))
        results["compute_optimal"] = frontier.section(head, fits, choice["headline"], iso_res, budgets, c_max, seed)
        results["horizon"] = frontier.horizon(head, fits, choice["headline"], iso_res, c_max, seed)
    results["disagreement"] = disagreement(fits, choice["headline"], results["compute_optimal"])
    if iso_res and iso_res["rejected"]:
        warnings.append(f"{len(iso_res['rejected'])} IsoFLOP budget(s) rejected (minimum at the "
                        "edge of the sampled range or no minimum); see isoflop.rejected")
    return results, fits


def disagreement(fits: dict, head: str, co: dict | None) -> list[dict]:
    """At each compute-optimal budget (the headline's N*, D*), every form's predicted loss with its
    interval; `disagree` names the forms whose interval misses the headline's."""
    if not co:
        return []
    N = np.array([b["N_opt"] for b in co["budgets"]])
    D = np.array([b["D_opt"] for b in co["budgets"]])
    X = {"N": N, "D": D, "logN": np.log(N), "logD": np.log(D), "U": np.full_like(D, np.inf)}
    rows = frontier.forms_at(fits, head, X)
    return [{"C": b["C"], "projection_dex": b["projection_dex"], **r} for b, r in zip(co["budgets"], rows)]


def seed_noise(table: pd.DataFrame, head: Fit) -> dict | None:
    """Pooled sd of the final loss over cells trained with several seeds, beside the fit's residuals:
    a residual much larger than seed noise is misfit (form, regime, design), not noise."""
    if "n_seeds" not in table or "loss_std" not in table:  # a plain table: one loss per cell
        return None
    rep = table[table["n_seeds"] > 1]
    if rep.empty:
        return None
    dof = (rep["n_seeds"] - 1).to_numpy(float)
    var = rep["loss_std"].to_numpy(float) ** 2
    rel = (rep["loss_std"] / rep["loss"]).to_numpy(float) ** 2
    return {"n_cells": int(len(rep)), "seeds": sorted({int(n) for n in rep["n_seeds"]}),
            "pooled_sd": float(np.sqrt((dof * var).sum() / dof.sum())),
            "pooled_rel_sd": float(np.sqrt((dof * rel).sum() / dof.sum())),
            "fit_residual_rms": float(np.sqrt(np.mean(head.residuals ** 2))),
            "cells": rep["cell_key"].tolist() if "cell_key" in rep else rep["cell"].tolist()}


def _warnings(fits: dict, choice: dict, skipped: dict) -> list[str]:
    out = []
    head = fits[choice["headline"]]
    if not head.identifiable:
        out.append("D/N barely varies across runs (log D is almost a linear function of log N): the "
                   "law's N and D terms are not separately identifiable; its compute-optimal "
                   "allocation is not reported.")
    for label, fit in fits.items():
        if not fit.converged:
            out.append(f"{label}: fit did not converge ({fit.message})")
        if fit.n_boot_failed:
            out.append(f"{label}: {fit.n_boot_failed} of {fit.n_bootstrap} bootstrap refits did not converge "
                       "and were dropped")
        if fit.not_identified:
            out.append(f"{label}: not identified by these runs (95 % interval unbounded or spanning "
                       f"> 6 decades): {', '.join(fit.not_identified)}")
    out += [f"{label}: not fitted: {why}" for label, why in skipped.items()]
    return out
