"""harness-optimum's work: the law at budget C -> shapes -> a config folder, optimum.json, prediction.json.

Files are made in a scratch folder beside out= and moved in only once everything resolved, so bad
input leaves nothing behind.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from harness.config import DataConfig
from harness.errors import HarnessError
from harness.optimum import generate, law, shapes

ROLES = ("optimum", "small", "large")


def default_name(family: str, C: float) -> str:
    return f"{family}-opt-{C:.3g}".replace("+", "")


def make(fit: str, budget: float, out: str, family: str = "", name: str = "", keys: list[str] | None = None,
         keys_label: str = "", results_dir: str = "results", sweep: str = "", config_dir: str | None = None) -> dict:
    """Everything harness-optimum writes, returned as optimum.json's contents."""
    from harness.fit import prediction
    from harness.report.document import write_json

    if not budget > 0:
        raise HarnessError(f"budget={budget:g} must be a positive number of FLOPs")
    rule = shapes.load_rule(family, config_dir) if family else None
    the_law = law.load(fit, rule.arch if rule else None, keys, keys_label)
    if rule is None:
        family = shapes.family_for(law.study_arch(the_law.table), config_dir)
        rule = shapes.load_rule(family, config_dir)
    name = name or default_name(family, budget)
    sweep = sweep or f"{name}_confirm"
    target = Path(out)
    generate.refuse_existing(target)
    results, fits, co = generate.answer(the_law, budget)
    head = fits[results["model_choice"]["headline"]]
    d_max = _data_cap(the_law.table)
    sp = generate.spacing(head, results, the_law.table, budget, co["N_opt"], d_max)
    vocab = DataConfig().vocab_size  # the default corpus's; the exact counts below come from the composed cells
    made = {role: shapes.shape_for(rule, co["N_opt"] * f, the_law.convention, vocab)
            for role, f in zip(ROLES, (1.0, 1 / sp["s"], sp["s"]))}
    names = {"optimum": name, "small": f"{name}-small", "large": f"{name}-large"}
    why = {"optimum": "the shape closest to N*", "small": f"N*/{sp['s']:g}", "large": f"{sp['s']:g} N*"}
    scratch = Path(tempfile.mkdtemp(prefix=".optimum-", dir=_existing_parent(target)))
    try:
        commands = generate.write_folder(scratch, name, {r: (names[r], made[r]) for r in ROLES}, budget,
                                         the_law.convention, law.schedule(the_law.table), sweep, why,
                                         law.trained_with(the_law.runs_path, the_law.table))
        commands = {k: _repoint(v, scratch, target) for k, v in commands.items()}
        rows = generate.cells(scratch, name, results_dir)
        ran = [r.cell for r in rows if r.values["status"] != "todo"]
        if ran:
            raise HarnessError(f"confirmation cell(s) {', '.join(ran)} already ran: a prediction must be written "
                               "before its check; remove their directories to pre-register one")
        by_model = {r.cfg.model.name: r for r in rows}
        n_key = {"nonembed": "N_nonembed", "active": "N_active", "total": "N"}[the_law.convention]
        asked = [{"cell_key": by_model[names[r]].values["cell_key"], "N": by_model[names[r]].values[n_key],
                  "D": by_model[names[r]].values["D"]} for r in ROLES]
        pred = prediction.make(head, the_law.table, asked, the_law.convention, fits)
        pred["why_form"] = results["model_choice"]["why"]
        for c, r in zip(pred["cells"], ROLES):
            c.update(role=r, model=names[r], seeds=generate.SEEDS_AT_OPTIMUM if r == "optimum" else 1)
        optimum = _summary(the_law, results, co, rule, family, made, names, by_model, pred, sp, commands, budget,
                           sweep, results_dir, d_max)
        write_json(pred, scratch / "prediction.json")  # the scratch folder is moved in whole once written
        write_json(optimum, scratch / "optimum.json")
        _move_in(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return optimum


def _data_cap(table) -> float | None:
    """Tokens the corpus serves within data.max_epochs (the default guard): the fitted runs' unique tokens."""
    if "U" in table and table["U"].notna().all():
        return float(table["U"].iloc[0]) * DataConfig().max_epochs
    return None


def _summary(the_law, results, co, rule, family, made, names, by_model, pred, sp, commands, budget,
             sweep, results_dir, d_max) -> dict:
    """optimum.json: the answer, the launchable model and its hyperparameters, and how it will be checked."""
    from dataclasses import asdict

    from harness.store.counts import CONVENTIONS

    opt, cell = by_model[names["optimum"]].values, pred["cells"][0]
    m = made["optimum"]["model"]
    ci = co.get("ci95", {})
    hz = results.get("horizon") or {}
    limit = (hz.get("loss") or {}).get("2%")
    dex = co.get("distance_dex", co["projection_dex"])
    return {
        "created": pred["created"], "law": the_law.source, "group": the_law.group or None,
        "convention": {"N": the_law.convention, "C": CONVENTIONS[the_law.convention][2],
                       "budget": generate.BUDGET_CONVENTION[the_law.convention]},
        "budget": budget, "form": pred["form"], "why_form": pred["why_form"],
        "N_opt": co["N_opt"], "N_opt_ci95": ci.get("N_opt"), "D_opt": co["D_opt"], "D_opt_ci95": ci.get("D_opt"),
        "loss_opt": co["loss_opt"], "loss_opt_ci95": ci.get("loss_opt"), "tokens_per_param": co["tokens_per_param"],
        "family": family, "rule": asdict(rule), "model": names["optimum"],
        "shape": {"n_layer": m.n_layer, "n_embd": m.n_embd, "n_head": m.n_head, "hf": m.hf},
        "N": cell["N"], "N_rel_diff": cell["N"] / co["N_opt"] - 1, "counts": made["optimum"]["counts"],
        "D": opt["D"], "lr": opt["lr"], "batch_tokens": opt["batch_tokens"], "warmup_tokens": opt["warmup_tokens"],
        "steps": opt["steps"], "schedule": opt["schedule"],
        "predicted_loss": cell["predicted"], "pi95": cell["pi95"],
        "projection_dex": co["projection_dex"], "distance_dex": dex, "distance_parts": co.get("distance_parts"),
        "horizon": {"loss_2pct_dex": limit, "within": limit is None or dex <= limit + 1e-9,
                    "what": "the distance outside the fitted design at which the 95 % interval on L* passes +-2 %"},
        "confirm": {"sweep": sweep, "results_dir": results_dir, "spacing": sp,
                    "seeds_at_optimum": generate.SEEDS_AT_OPTIMUM, "data_cap_tokens": d_max,
                    "cells": [{k: c.get(k) for k in ("role", "model", "cell_key", "N", "D", "predicted", "pi95")}
                              for c in pred["cells"]]},
        "commands": commands}


def _existing_parent(p: Path) -> Path:
    p = p.resolve()
    while not p.exists():
        p = p.parent
    return p if p.is_dir() else p.parent


def _repoint(v, scratch: Path, target: Path):
    if isinstance(v, list):
        return [_repoint(x, scratch, target) for x in v]
    return v.replace(str(scratch), str(target))


def _move_in(scratch: Path, target: Path) -> None:
    for f in sorted(p for p in scratch.rglob("*") if p.is_file()):
        dest = target / f.relative_to(scratch)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(f), dest)


def answer_lines(o: dict) -> list[str]:
    """The line to act on, then the commands."""
    s, ci = o["shape"], o["N_opt_ci95"] or [float("nan")] * 2
    hz = o["horizon"]
    where = (f"{o['distance_dex']:.2f} dex outside the fitted design, "
             + ("within the trust horizon" if hz["within"] else "BEYOND the trust horizon")
             + (f" (L* known to +-2 % up to {hz['loss_2pct_dex']:.2f} dex)" if hz["loss_2pct_dex"] is not None else ""))
    sp = o["confirm"]["spacing"]
    lines = [f"at C = {o['budget']:.3g} train {o['model']}: {s['n_layer']} layers x {s['n_embd']} wide, "
             f"{s['n_head']} heads, N = {o['N']:,.0f} ({o['convention']['N']}; N* = {o['N_opt']:,.0f} "
             f"[{ci[0]:,.0f}, {ci[1]:,.0f}]), on D = {o['D']:,.0f} tokens ({o['D'] / o['N']:.1f} per parameter), "
             f"lr {o['lr']:.3g}, batch {o['batch_tokens']:,} tokens, warmup {o['warmup_tokens']:,} tokens: "
             f"predicted loss {o['predicted_loss']:.4f} [{o['pi95'][0]:.4f}, {o['pi95'][1]:.4f}] ({o['form']}); "
             + where]
    if not hz["within"]:
        lines.append("warning: this budget is beyond the trust horizon: the interval is wide and the form may not hold")
    if not sp["fits_data"]:
        lines.append(f"warning: N*/{sp['s']:g} needs more tokens than data.max_epochs of the study's corpus "
                     f"({o['confirm']['data_cap_tokens']:,.0f}); confirm on a larger corpus (a data= override)")
    lines.append(f"confirmation: N*/{sp['s']:g} and {sp['s']:g} N* at the same C, predicted "
                 f"{sp['gap_small']:+.3f} and {sp['gap_large']:+.3f} nats above the optimum "
                 + ("(beyond noise)" if sp["resolved"] else
                    f"(LESS than the {sp['needed_gap']:.3f} nats noise needs: the data caps the spacing)"))
    return lines + [f"train it:   {o['commands']['train']}",
                    "confirm it: " + "  &&  ".join(o["commands"]["confirm"])]
