"""Write fit.json (the contract other tools read) and report.md next to the figures."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np

from harness.fit import PARAMS


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
    """HEAD of the harness checkout (+"-dirty" with local changes), or "unknown"."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(jsonable(results), indent=2) + "\n")


def _g(x, fmt=".4g"):
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"  # an unbounded bootstrap interval
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _ci(ci, k):
    return f"[{_g(ci[k][0])}, {_g(ci[k][1])}]" if k in ci else "–"


def _parametric_md(p: dict) -> list[str]:
    lines = ["## Approach 3: L(N, D) = E + A/N^alpha + B/D^beta", ""]
    if not p["identifiable"]:
        lines += ["**Not identifiable:** D/N barely varies, so alpha and beta cannot be "
                  "separated. The values below are one of many equally good fits; do not use "
                  "them.", ""]
    lines += ["| param | estimate | SE | 95 % CI |", "|---|---|---|---|"]
    lines += [f"| {k} | {_g(p[k])} | {_g(p['stderr'].get(k))} | {_ci(p['ci95'], k)} |"
              for k in PARAMS]
    c = p["convergence"]
    lines += ["", f"Objective {p['loss']}: {p['objective']:.6g}; converged: {c['converged']} "
              f"({c['message']}, {c['n_iter']} iterations, best of {c['n_starts']} starts); "
              f"bootstrap: {p['n_bootstrap']} resamples, {p['n_bootstrap_failed']} dropped.", ""]
    return lines


def _compute_optimal_md(co: dict | None) -> list[str]:
    if not co:
        return ["## Compute-optimal allocation", "", "Not reported (parametric fit not "
                "identifiable).", ""]
    lines = ["## Compute-optimal allocation (approach 3)", "",
             f"N*(C) = G (C/6)^a, D*(C) = (C/6)^b / G with a = {_g(co['a'])} "
             f"(95 % CI {_ci(co['ci95'], 'a')}), b = {_g(co['b'])} "
             f"(95 % CI {_ci(co['ci95'], 'b')}), G = {_g(co['G'])}.", "",
             "| C | N* | 95 % CI | D* | 95 % CI | D*/N* | 95 % CI |",
             "|---|---|---|---|---|---|---|"]
    for b in co["budgets"]:
        ci = b.get("ci95", {})
        lines.append(f"| {_g(b['C'], '.3g')} | {_g(b['N_opt'])} | {_ci(ci, 'N_opt')} | "
                     f"{_g(b['D_opt'])} | {_ci(ci, 'D_opt')} | {_g(b['tokens_per_param'])} | "
                     f"{_ci(ci, 'tokens_per_param')} |")
    return lines + [""]


def _isoflop_md(iso: dict | None, env: dict, kaplan: dict) -> list[str]:
    lines = ["## Approach 2: IsoFLOP parabolas", ""]
    if not iso:
        lines += ["The data has no compute budget with >= 3 model sizes.", ""]
    else:
        lines += [f"a = {_g(iso['a'])} (95 % CI {_ci(iso.get('ci95', {}), 'a')}), "
                  f"b = {_g(iso['b'])} (95 % CI {_ci(iso.get('ci95', {}), 'b')}).", "",
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
    lines += [f"Fitted approach 3 on the {bt['n_train']} cheapest runs (C <= "
              f"{_g(bt['C_cut'], '.3g')}), predicted the {bt['n_holdout']} most expensive: mean "
              f"|relative error| {bt['mean_abs_rel_error']:.2%}, max "
              f"{bt['max_abs_rel_error']:.2%}.", "",
              "| N | D | C | loss | predicted | rel. error |", "|---|---|---|---|---|---|"]
    lines += [f"| {_g(p['N'])} | {_g(p['D'])} | {_g(p['C'], '.3g')} | {_g(p['loss'])} | "
              f"{_g(p['pred'])} | {p['rel_error']:+.2%} |" for p in bt["points"]]
    return lines + [""]


def _published_md(pub: dict, fit: dict, co: dict | None) -> list[str]:
    lines = ["## Published laws, side by side", "",
             "| law | E | A | B | alpha | beta | a | log-loss RMSE here |",
             "|---|---|---|---|---|---|---|---|",
             f"| this fit | {' | '.join(_g(fit[k]) for k in PARAMS)} | "
             f"{_g(co['a'] if co else None)} | – |"]
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
    lines += _parametric_md(results["parametric"])
    lines += _compute_optimal_md(results["compute_optimal"])
    lines += _isoflop_md(results["isoflop"], results["envelope"], results["kaplan"])
    lines += _backtest_md(results["backtest"])
    lines += _published_md(results["published"], results["parametric"],
                           results["compute_optimal"])
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    if prov["excluded"]:
        lines += ["## Excluded runs", ""]
        lines += [f"- {e['run_id']}: {e['reason']}" for e in prov["excluded"]] + [""]
    lines += ["## Provenance", "", f"git revision {prov['git_revision']}; settings "
              f"`{json.dumps(prov['settings'])}`.", ""]
    path.write_text("\n".join(lines))
