"""Run every fit on a tidy run table and gather the results fit.json carries (no I/O)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import isoflop as iso
from harness.backtest import backtest
from harness.fit import PARAMS, bootstrap, compute_optimal, fit_parametric, summarise
from harness.laws import PUBLISHED


def _default_budgets(C) -> list[float]:
    # The largest budget measured, then one and two decades beyond: where a law gets used.
    cmax = float(np.max(C))
    return [cmax, 10 * cmax, 100 * cmax]


def _parametric_section(fit) -> dict:
    out = {k: getattr(fit, k) for k in PARAMS}
    out.update(stderr=fit.stderr, ci95=fit.ci95, objective=fit.objective,
               loss=f"huber(delta={fit.delta}) summed over log-loss residuals",
               convergence={"converged": fit.converged, "message": fit.message,
                            "n_iter": fit.n_iter, "n_starts": fit.n_starts},
               identifiable=fit.identifiable, n_bootstrap=fit.n_bootstrap,
               n_bootstrap_failed=fit.n_boot_failed)
    return out


def _compute_optimal_section(fit, budgets) -> dict:
    """N*(C), D*(C), D/N at each budget from approach 3, with bootstrap errors."""
    point = compute_optimal(**fit.params, C=np.asarray(budgets))
    out = {"source": "parametric (approach 3)", "convention": "C = 6 N D",
           "a": float(point["a"]), "b": float(point["b"]), "G": float(point["G"]),
           "stderr": {}, "ci95": {}, "budgets": []}
    s = None
    if fit.samples is not None and len(fit.samples):
        cols = {k: fit.samples[:, j][:, None] for j, k in enumerate(PARAMS)}
        s = compute_optimal(**cols, C=np.asarray(budgets)[None, :])
        out["stderr"], out["ci95"] = summarise({k: s[k][:, 0] for k in ("a", "b", "G")})
    for j, C in enumerate(budgets):
        row = {"C": float(C), "N_opt": float(point["N_opt"][j]),
               "D_opt": float(point["D_opt"][j]),
               "tokens_per_param": float(point["D_opt"][j] / point["N_opt"][j])}
        if s is not None:
            row["stderr"], row["ci95"] = summarise({
                "N_opt": s["N_opt"][:, j], "D_opt": s["D_opt"][:, j],
                "tokens_per_param": s["D_opt"][:, j] / s["N_opt"][:, j]})
        out["budgets"].append(row)
    return out


def _isoflop_section(N, L, C, counts, tol_dex) -> dict | None:
    res = iso.isoflop(N, L, C, tol_dex=tol_dex)
    if res is None:
        return None
    if res["a"] is not None and counts is not None:
        s = iso.isoflop_bootstrap(N, L, C, counts, tol_dex=tol_dex)
        res["stderr"], res["ci95"] = summarise(s)
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


def analyse(table: pd.DataFrame, *, n_bootstrap=1000, seed=0, holdout=0.1,
            budgets=None, tol_dex=0.02) -> tuple[dict, object]:
    """All fits on columns N, D, C, loss of `table`. Returns (results dict, ParametricFit)."""
    N, D, C, L = (table[k].to_numpy(float) for k in ("N", "D", "C", "loss"))
    budgets = list(budgets) if budgets else _default_budgets(C)
    warnings: list[str] = []
    fit = fit_parametric(N, D, L)
    counts = None
    if not fit.identifiable:
        warnings.append("D/N barely varies across runs (log D is almost a linear function of "
                        "log N): alpha and beta are not separately identifiable; the parametric "
                        "fit and its compute-optimal allocation are not reported as estimates.")
    elif n_bootstrap > 0:
        bootstrap(fit, N, D, L, n_resamples=n_bootstrap, seed=seed)
        rng = np.random.default_rng(seed)  # same seed, same resamples as the parametric bootstrap
        counts = rng.multinomial(len(L), np.full(len(L), 1.0 / len(L)), size=n_bootstrap)
    if not fit.converged:
        warnings.append(f"parametric fit did not converge: {fit.message}")
    if fit.n_boot_failed:
        warnings.append(f"{fit.n_boot_failed} of {n_bootstrap} bootstrap refits did not "
                        "converge and were dropped")
    results = {
        "n_points": int(len(L)),
        "parametric": _parametric_section(fit),
        "isoflop": _isoflop_section(N, L, C, counts, tol_dex),
        "compute_optimal": (_compute_optimal_section(fit, budgets) if fit.identifiable
                            else None),
        "backtest": backtest(N, D, L, C, holdout=holdout),
        "envelope": iso.envelope(N, D, L, C),
        "kaplan": iso.kaplan_laws(N, D, L, C),
        "published": _published_section(N, D, L, budgets),
        "warnings": warnings,
    }
    iso_res = results["isoflop"]
    if iso_res and iso_res["rejected"]:
        warnings.append(f"{len(iso_res['rejected'])} IsoFLOP budget(s) rejected (minimum at the "
                        "edge of the sampled range or no minimum); see isoflop.rejected")
    return results, fit
