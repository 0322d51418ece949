"""From a law to a launchable optimum: shapes, a confirmation sweep and a pre-registered prediction.

At budget C the law gives N*(C), D*(C) and L* with their intervals (frontier.section, as harness-fit
reports them). The family's rule (shapes.py) gives the model closest to N*; the confirmation sweep
trains it at C with two seeds beside shapes at N*/s and s N* (one seed each), s the smallest spacing
whose predicted loss differences exceed twice the sd of a difference in seed noise (so the three
cells can tell an IsoFLOP minimum from noise), as far as the data allows. Each cell's loss is
predicted, with its interval, into prediction.json before any of them trains (prediction.make, the
contract harness-study keeps): a prediction is never rewritten.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.optimum import shapes

SPACINGS = (1.5, 2.0, 3.0, 4.0)  # N*/s and s N*: the smallest that resolves the IsoFLOP curve above noise
SEEDS_AT_OPTIMUM = 2
BUDGET_CONVENTION = {"nonembed": "kaplan", "active": "kaplan", "total": "6N"}  # n_convention -> budget.convention


def answer(law, C: float) -> tuple[dict, dict, dict]:
    """(harness-fit's results at budget C, every fitted form, the compute-optimal row at C)."""
    from harness.fit.analysis import analyse

    # holdout=0: the classic back-test is a report section; nothing of the optimum depends on it
    results, fits = analyse(law.table, seed=law.seed, **{**law.options, "budgets": [C], "holdout": 0})
    co = results.get("compute_optimal")
    if not co or not co.get("budgets"):
        raise HarnessError(f"the law of {law.source} gives no compute-optimal N at C={C:g} "
                           f"(headline form {results['model_choice']['headline']})")
    return results, fits, co["budgets"][0]


def noise(results: dict, head, table: pd.DataFrame, d_lo: float) -> tuple[float, str]:
    """The sd (nats) one confirmation cell's loss scatters by: the larger of the seed noise the study
    measured at D >= d_lo (early-plateau cells differ far more between seeds and are not what a
    confirmation trains) and the fit's residual sd (cell-to-cell scatter about the law, which shape
    choices add to)."""
    from harness.fit.backtest import noise_sd

    resid = float(noise_sd(head) * table["loss"].mean())
    rep = table[(table.get("n_seeds", 1) >= 2) & (table["D"] >= d_lo)] if "loss_std" in table else table.iloc[:0]
    if not rep.empty:
        seed, src = float(np.sqrt(np.mean(rep["loss_std"] ** 2))), f"{len(rep)} repeated cells at D >= {d_lo:.3g}"
    elif (results.get("seed_noise") or {}).get("pooled_sd"):
        seed, src = float(results["seed_noise"]["pooled_sd"]), "the study's repeated cells (all D)"
    else:
        seed, src = 0.0, "no repeated cell"
    return max(seed, resid), (f"seed sd {seed:.4f} ({src}) vs the fit's residual sd {resid:.4f}: "
                              f"{'seed' if seed >= resid else 'residual'}")


def predicted(fit, table: pd.DataFrame, N, D) -> np.ndarray:
    from harness.fit import forms

    new = pd.DataFrame({"N": np.asarray(N, float), "D": np.asarray(D, float)})
    if "U" in table and table["U"].notna().all():
        new["U"] = float(table["U"].iloc[0])
    return np.exp(fit.form.log_predict(fit.z[None], forms.data(fit.form, new))[0])


def spacing(fit, results: dict, table: pd.DataFrame, C: float, n_opt: float, d_max: float | None) -> dict:
    """The smallest s in SPACINGS whose cells at N*/s and s N* (at C) are predicted to lose more than
    2 sd of a difference with the optimum's seed mean (noise()); capped where N*/s would need more than
    the d_max tokens the study's corpus serves (a larger corpus lifts the cap: the answer says so)."""
    rows = []
    for s in SPACINGS:
        N = np.array([n_opt / s, n_opt, n_opt * s])
        L = predicted(fit, table, N, C / (6 * N))
        sd, why = noise(results, fit, table, C / (6 * N[2]))
        rows.append({"s": s, "gap_small": float(L[0] - L[1]), "gap_large": float(L[2] - L[1]),
                     "needed_gap": 2 * sd * math.sqrt(1 + 1 / SEEDS_AT_OPTIMUM), "noise_sd": sd, "noise": why,
                     "fits_data": d_max is None or C / (6 * N[0]) <= d_max})
    ok = [r for r in rows if r["fits_data"]] or rows[:1]  # none fits: the closest, and the answer says so
    chosen = next((r for r in ok if min(r["gap_small"], r["gap_large"]) >= r["needed_gap"]), ok[-1])
    return {**chosen, "resolved": min(chosen["gap_small"], chosen["gap_large"]) >= chosen["needed_gap"],
            "candidates": rows}


def write_folder(out: Path, name: str, models: dict, C: float, convention: str, sched: str, sweep: str,
                 why: dict, settings: dict) -> dict:
    """DIR/model/<name>*.yaml and DIR/sweep/<name>_confirm.yaml; returns the two commands."""
    (out / "model").mkdir(parents=True, exist_ok=True)
    (out / "sweep").mkdir(parents=True, exist_ok=True)
    for role, (model_name, shape) in models.items():
        shapes.write_model(shape["model"], out / "model" / f"{model_name}.yaml",
                           f"harness-optimum: {role} at C={C:.3g} ({why[role]}); N={shape['N']:,} "
                           f"({convention}), target {shape['target']:,.0f} ({shape['rel_diff']:+.1%})")
    names = [m for m, _ in models.values()]
    (out / "sweep" / f"{name}_confirm.yaml").write_text("\n".join([
        "# @package _global_",
        f"# Confirmation of harness-optimum's answer at C={C:.3g} ({BUDGET_CONVENTION[convention]} FLOPs): the",
        "# optimum and the shapes at N*/s and s N*, one seed each (a second seed of the optimum is its own command).",
        "# prediction.json beside this folder was written before any of them trained.",
        "defaults:", f"  - override /optim: {'wsd' if sched == 'wsd' else 'adamw'}",
        "sweep:", f"  name: {sweep}",
        "  role: holdout  # checks a prediction; harness-plan does not judge it as a design",
        "evals: 1", *_settings_yaml(settings),
        "budget:", f"  flops: {C:.6g}", f"  convention: {BUDGET_CONVENTION[convention]}",
        "hydra:", "  sweeper:", "    params:", f"      model: {','.join(names)}", ""]))
    return {"train": f"harness-train --config-dir {out} sweep={name}_confirm model={models['optimum'][0]}",
            "confirm": [f"harness-train -m --config-dir {out} sweep={name}_confirm",
                        f"harness-train --config-dir {out} sweep={name}_confirm model={models['optimum'][0]} seed=1"]}


def _settings_yaml(settings: dict) -> list[str]:
    """The study's data, device and compile settings (law.trained_with) as YAML lines."""
    import yaml

    if not settings:
        return ["# data, device: the defaults, as the study's runs trained with"]
    return ["# as the study's runs trained with (the law holds for this corpus, tokenizer and validation split):",
            *yaml.safe_dump(settings, default_flow_style=False, sort_keys=False).splitlines()]


def cells(out: Path, name: str, results_dir: str) -> list:
    """The confirmation cells as harness-train will resolve them (plan.cells_of, no torch needed)."""
    from harness import plan

    rows = plan.cells_of([f"sweep={name}_confirm", f"results_dir={results_dir}"], str(out))
    bad = [r for r in rows if r.cfg is None]
    if bad:
        raise HarnessError(f"confirmation cell {bad[0].cell} is invalid: {bad[0].values['error']}")
    return rows


def refuse_existing(out: Path) -> None:
    for f in ("prediction.json", "optimum.json"):
        if (out / f).exists():
            raise HarnessError(f"{out / f} exists: a pre-registered optimum is never rewritten; choose another "
                               "out= (or move it away before any of its cells trains)")
