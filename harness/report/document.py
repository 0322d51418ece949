"""Write fit.json (the contract other tools read) and report.md next to the figures."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np

from harness.fit.law import PARAMS
from harness.report.fmt import ci as _ci
from harness.report.fmt import g as _g
from harness.report.fmt import pct as _pct
from harness.report.groups import groups_md
from harness.report.horizon import horizon_md


def jsonable(x):
    """numpy scalars/arrays to Python; NaN and inf to null (JSON has neither)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def git_revision(cwd: Path) -> str:
    """HEAD of the harness checkout (+"-dirty" with local changes to the code or configs that compute
    a fit; results being written are not such a change), or "unknown"."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "harness", "conf",
                                "pyproject.toml"], cwd=cwd.parent if cwd.name == "harness" else cwd,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(jsonable(results), indent=2) + "\n")


FORMULAS = {"chinchilla": "L = E + A/N^alpha + B/D^beta",
            "kaplan": "L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D",
            "datacon": "L = E + A/N^alpha + B/D'^beta, D' = U + U R_D (1 - exp(-(D/U - 1)/R_D))"}


def _forms_md(results: dict) -> list[str]:
    choice = results["model_choice"]
    lines = ["## Law forms, ranked by held-out error", "",
             f"Headline numbers below use **{choice['headline']}**: {choice['why']}.", "",
             "| form | parameters (95 % CI) | AIC | BIC | rollout \\|err\\| by distance | mean | ≤ 0.5 dex "
             "| 0.5–1 dex | > 1 dex | form error per dex |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in choice["ranking"]:
        sec = results["forms"][row["form"]]
        params = "; ".join(f"{k} {_g(v)} {_ci(sec['ci95'], k)}" for k, v in sec["params"].items())
        ro = sec.get("rollout", {})
        bins = [_pct(b["mean_abs_rel_error"]) + f" (n={b['n']})" for b in ro.get("by_distance", [])] or ["–"] * 3
        lines.append(f"| {row['form']} | {params} | {_g(sec['aic'], '.1f')} | {_g(sec['bic'], '.1f')} | "
                     f"{_pct(ro.get('distance_weighted_abs_rel_error'))} | {_pct(ro.get('mean_abs_rel_error'))} | "
                     + " | ".join(bins) + f" | {_pct((ro.get('form_error') or {}).get('per_dex'))} |")
    lines += ["", f"Rollout: {choice['criterion']}. Distance = log10(C / largest fitted C). A parameter is "
              "\"not identified\" when its bootstrap interval reaches the edge of the search box (it runs "
              "off to infinity or zero) or a scale spans more than 6 decades.", ""]
    for label, why in results.get("forms_skipped", {}).items():
        lines.append(f"- {label} not fitted: {why}")
    return lines + [""]


def _headline_md(sec: dict, label: str) -> list[str]:
    lines = [f"## Headline law: {label}", "", f"{FORMULAS.get(sec['form'], '')}", ""]
    if not sec["identifiable"]:
        lines += ["**Not identifiable:** D/N barely varies, so the N and D terms cannot be "
                  "separated. The values below are one of many equally good fits; do not use them.", ""]
    lines += ["| param | estimate | SE | 95 % CI |", "|---|---|---|---|"]
    lines += [f"| {k} | {_g(v)} | {_g(sec['stderr'].get(k))} | {_ci(sec['ci95'], k)} |"
              for k, v in sec["params"].items()]
    c = sec["convergence"]
    lines += ["", f"Objective {sec['loss']}: {sec['objective']:.6g}; residual rms {sec['residual_rms']:.3%}; "
              f"converged: {c['converged']} ({c['message']}, {c['n_iter']} iterations, best of {c['n_starts']} "
              f"starts); bootstrap: {sec['n_bootstrap']} resamples, {sec['n_bootstrap_failed']} dropped.", ""]
    return lines


def _compute_optimal_md(co: dict | None) -> list[str]:
    if not co:
        return ["## Compute-optimal allocation", "", "Not reported (the law is not identifiable).", ""]
    lines = [f"## Compute-optimal allocation ({co['form']})", "",
             f"N\\*(C) ∝ C^a, D\\*(C) ∝ C^b with a = {_g(co.get('a'))} (95 % CI {_ci(co['ci95'], 'a')}), "
             f"b = {_g(co.get('b'))} (95 % CI {_ci(co['ci95'], 'b')}). A budget beyond the largest fitted "
             "C is a projection, labelled with its distance. The N\\*, D\\*, L\\* intervals hold every part "
             "(next section); fit.json keeps the bootstrap-only one as ci95_parameter.", "",
             "| C | measured or projected | N* | 95 % CI | D* | 95 % CI | D*/N* | L* | 95 % CI |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b in co["budgets"]:
        ci = b.get("ci95", {})
        where = "measured range" if b["projection_dex"] <= 0.01 else f"projection, +{b['projection_dex']:.1f} dex"
        lines.append(f"| {_g(b['C'], '.3g')} | {where} | {_g(b['N_opt'])} | {_ci(ci, 'N_opt')} | "
                     f"{_g(b['D_opt'])} | {_ci(ci, 'D_opt')} | {_g(b['tokens_per_param'])} | "
                     f"{_g(b['loss_opt'])} | {_ci(ci, 'loss_opt')} |")
    return lines + [""]


def _isoflop_md(iso: dict | None, env: dict, kaplan: dict) -> list[str]:
    lines = ["## Approach 2: IsoFLOP parabolas", ""]
    if not iso:
        lines += ["The data has no compute budget with >= 3 model sizes.", ""]
    else:
        lines += [f"a = {_g(iso['a'])} (95 % CI {_ci(iso.get('ci95', {}), 'a')}), "
                  f"b = {_g(iso['b'])} (95 % CI {_ci(iso.get('ci95', {}), 'b')})"
                  + (f"; interval: {iso['interval']}." if iso.get("interval") else "."), "",
                  "| C | N_opt | D_opt | loss_opt | points |", "|---|---|---|---|---|"]
        lines += [f"| {_g(b['C'], '.3g')} | {_g(b['N_opt'])} | {_g(b['D_opt'])} | "
                  f"{_g(b['loss_opt'])} | {b['n_points']} |" for b in iso["budgets"]]
        for r in iso["rejected"]:
            lines.append(f"\nRejected budget C = {_g(r['C'], '.3g')} ({r['n_points']} points): "
                         f"{r['reason']}.")
        lines.append("")
    lines += ["## Approach 1: lower envelope", "",
              f"{len(env['points'])} runs on the envelope of loss over C; N ∝ C^{_g(env['a'])}, "
              f"D ∝ C^{_g(env['b'])}.", "", "## Kaplan-style single-variable laws", ""]
    lines += [f"- L({k}) = ({k}_c/{k})^alpha: alpha = {_g(v['alpha'])}, {k}_c = {_g(v['X_c'])} "
              f"({v['n_points']} points)" for k, v in kaplan.items()] or ["- not supported"]
    return lines + [""]


def _backtest_md(bt: dict) -> list[str]:
    lines = ["## Back-test", ""]
    if "skipped" in bt:
        return lines + [f"Skipped: {bt['skipped']}.", ""]
    lines += [f"Fitted {bt['form']} on the {bt['n_train']} cheapest runs (C <= {_g(bt['C_cut'], '.3g')}), "
              f"predicted the {bt['n_holdout']} most expensive: mean |relative error| "
              f"{bt['mean_abs_rel_error']:.2%}, max {bt['max_abs_rel_error']:.2%}; "
              f"{bt['inside_pi95']} of {bt['n_holdout']} inside their 95 % prediction interval "
              "(parameter bootstrap, residual noise and the form error its own rollout measured).", "",
              "| N | D | C | beyond fitted C | loss | predicted | 95 % PI | rel. error |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {_g(p['N'])} | {_g(p['D'])} | {_g(p['C'], '.3g')} | +{p['projection_dex']:.2f} dex | "
              f"{_g(p['loss'])} | {_g(p['pred'])} | [{_g(p['pi95'][0])}, {_g(p['pi95'][1])}] | "
              f"{p['rel_error']:+.2%} |" for p in bt["points"]]
    return lines + [""]


def _comparison_md(cmp: dict | None) -> list[str]:
    if not cmp:
        return []
    lines = [f"## Reproduction check against `{cmp['reference']}`", ""]
    if not cmp["n_matched"]:
        return lines + ["No cell of this run set is in the reference (cell ids differ: another preset or config).", ""]
    lines += [f"{cmp['n_matched']} cells in both: max |loss difference| {cmp['max_abs_diff']:.2g} nats, mean "
              f"{cmp['mean_abs_diff']:.2g}; {cmp['n_identical']} identical to the last bit. Only here: "
              f"{len(cmp['only_new'])}; only in the reference: {len(cmp['only_reference'])}.", "",
              f"Environments: this run set {', '.join(cmp['environments']['new'])}; reference "
              f"{', '.join(cmp['environments']['reference'])}. A different thread count, torch build or CPU "
              "changes the last digits of a loss (records.env_key).", "",
              "| | form | parameters | a (N* ∝ C^a) |", "|---|---|---|---|"]
    for who in ("new", "reference"):
        law = cmp["laws"][who]
        params = "; ".join(f"{k} {_g(v)}" for k, v in law["params"].items())
        a_ci = law.get("a_ci95")
        lines.append(f"| {'this run' if who == 'new' else 'reference'} | {law['form']} | {params} | {_g(law.get('a'))}"
                     + (f" [{_g(a_ci[0])}, {_g(a_ci[1])}]" if a_ci else "") + " |")
    lines += ["", "| cell | loss | reference | difference |", "|---|---|---|---|"]
    lines += [f"| {c['cell']} | {c['loss']:.6f} | {c['reference']:.6f} | {c['diff']:+.2e} |" for c in cmp["cells"]]
    return lines + [""]


def _prediction_md(ps: dict | None) -> list[str]:
    if not ps:
        return []
    lines = ["## Pre-registered prediction", "",
             f"`prediction.json` was written {ps['created']} from a {ps['form']} fit to the cells trained "
             "before these, and before these ran."]
    if ps["cells"]:
        lines += [f"Scored: mean |relative error| {ps['mean_abs_rel_error']:.2%}; {ps['n_inside_pi95']} of "
                  f"{len(ps['cells'])} inside their 95 % prediction interval.", "",
                  "| cell | beyond fitted C | predicted | 95 % PI | measured | rel. error |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {c['cell_key']} | +{c['projection_dex']:.2f} dex | {c['predicted']:.4f} | "
                  f"[{c['pi95'][0]:.4f}, {c['pi95'][1]:.4f}] | {c['measured']:.4f} | {c['rel_error']:+.2%} |"
                  for c in ps["cells"]]
    if ps["not_yet_run"]:
        lines += ["", f"Not yet run: {', '.join(ps['not_yet_run'])}."]
    return lines + [""]


def _seed_noise_md(sn: dict | None) -> list[str]:
    if not sn:
        return []
    return ["## Seed noise", "",
            f"{sn['n_cells']} cells trained with {sn['seeds']} seeds: pooled sd of the final loss "
            f"{sn['pooled_sd']:.4f} nats ({sn['pooled_rel_sd']:.2%} of the loss), against the headline "
            f"fit's residual rms {sn['fit_residual_rms']:.2%} (log loss).", ""]


def _repetition_md(rep: dict | None) -> list[str]:
    if not rep:
        return []
    ci = rep["ci95"] or [float("nan")] * 2
    caps = ", ".join(f"{u:,}" for u in rep["unique_tokens"])
    lines = ["## Repetition (datacon form)", "",
             f"R_D* = {_g(rep['R_D'])} [{_g(ci[0])}, {_g(ci[1])}] (95 % bootstrap CI"
             f"{', not identified' if rep['not_identified'] else ''}); Muennighoff et al. (2023) fit "
             f"{rep['muennighoff_R_D']}. Unique training tokens U: {caps}; "
             f"up to {rep['max_epochs']:.1f} epochs. Value of a repeated token relative to a fresh one, measured "
             "(the fresh-data D at which the law gives the run's loss) and fitted (R* (1 - e^-R/R*) / R):", "",
             "| cell | U | epochs | loss | value measured | value fitted |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['cell_key']} | {r['U']:,} | {r['epochs']:.2f} | {r['loss']:.4f} | {r['value_measured']:.2f} | "
              f"{r['value_fitted']:.2f} |" for r in rep["runs"]]
    return lines + [""]


def _published_md(pub: dict, fit: dict) -> list[str]:
    a = fit["params"]["beta"] / (fit["params"]["alpha"] + fit["params"]["beta"])
    lines = ["## Published laws, side by side", "",
             "| law | E | A | B | alpha | beta | a | log-loss RMSE here |",
             "|---|---|---|---|---|---|---|---|",
             f"| this fit (chinchilla form) | {' | '.join(_g(fit[k]) for k in PARAMS)} | {_g(a)} | – |"]
    for v in pub.values():
        vals = " | ".join(_g(v.get(k)) for k in PARAMS)
        lines.append(f"| {v['name']} | {vals} | {_g(v.get('a'))} | "
                     f"{_g(v['log_loss_rmse_on_these_runs'])} |")
    return lines + ["", "Published losses are on each paper's own data and tokenizer.", ""]


def write_markdown(results: dict, figures: list[str], command: str, path: Path) -> None:
    prov = results["provenance"]
    train = prov.get("train_commands") or []
    lines = ["# Scaling-law fit", "", "Reproduce with:", "", "```", *train, command, "```", "",
             f"{results['n_points']} points from `{prov['runs']}` (N convention: "
             f"{prov['conventions']['N']}, C = {prov['conventions']['C']}); "
             f"{len(prov['excluded'])} runs excluded.", ""]
    if results["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in results["warnings"]] + [""]
    lines += _forms_md(results)
    head = results["model_choice"]["headline"]
    lines += _headline_md(results["forms"][head], head)
    lines += _compute_optimal_md(results["compute_optimal"])
    lines += horizon_md(results)
    lines += _prediction_md(results.get("prediction_score"))
    lines += _seed_noise_md(results.get("seed_noise"))
    lines += _comparison_md(results.get("comparison"))
    lines += groups_md(results.get("groups"))
    lines += _repetition_md(results.get("repetition"))
    lines += _isoflop_md(results["isoflop"], results["envelope"], results["kaplan"])
    lines += _backtest_md(results["backtest"])
    if results.get("parametric"):
        lines += _published_md(results["published"], results["parametric"])
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    if prov["excluded"]:
        lines += ["## Excluded runs", ""]
        lines += [f"- {e['run_id']}: {e['reason']}" for e in prov["excluded"]] + [""]
    lines += ["## Provenance", "", f"git revision {prov['git_revision']}; settings "
              f"`{json.dumps(prov['settings'])}`.", ""]
    path.write_text("\n".join(lines))
