"""`harness-study study=data`: data arms as groups, and a mixing law predicted before its check trains.

A study YAML with a `mixing:` block ({sweep: the mixing cells' sweep folder, model: the size the law
predicts at, held: the held-out first-domain share, target: bpb or a domain's name}) runs: the fit stage
(the arms' designs and the mixing cells), then fits each domain's loss against the weights
(fit/mixing.py) on the mixing cells of `model` and writes <sweep>/mixing_prediction.json (the held-out
mixture's per-domain losses and the predicted best mixture with its interval, and the check's commands;
never rewritten). Only then do the check cells train (the mixing sweep at `model` with data.mix replaced:
the held-out mixture, the predicted one at two seeds), and the verdict is written (mixing_verdict.json). The final
harness-fit gives each arm its law and multiplier (the study's fit_args, e.g. group_by=data).
This module starts processes and reads files; it never imports torch.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

OPTIONS = ("sweep", "model", "held", "target")  # a mixing block's keys


def check(block, path: Path) -> None:
    """A study YAML's mixing block (harness.study.load calls it)."""
    if not isinstance(block, dict) or any(k not in OPTIONS for k in block) or set(block) != set(OPTIONS):
        raise HarnessError(f"{path}: mixing is a mapping of {', '.join(OPTIONS)} (all required)")
    if not 0 < float(block["held"]) < 1:
        raise HarnessError(f"{path}: mixing.held={block['held']} is a share strictly between 0 and 1")


def cells(sweep_dir: Path, model: str, keys: list[str] | None):
    """The finished mixing cells of `model` (of the fit stage's keys where given), seeds averaged:
    (domains, table of one row per cell: shares, per-domain loss, bytes per token, target columns)."""
    from harness.fit.collect import collect

    runs, _ = collect(str(sweep_dir))
    runs = runs[(runs["status"] == "finished") & (runs["model"] == model)]
    if keys is not None:
        runs = runs[runs["cell_key"].isin(set(keys))]
    domains = sorted(c.split("/")[1] for c in runs.columns if c.startswith("mix/") and c.endswith("/share"))
    if len(runs) == 0 or len(domains) < 2:
        raise HarnessError(f"{sweep_dir}: no finished mixture runs of model {model}")
    for d in domains:  # bits per byte = loss / ln 2 / bytes per token: the eval set's bytes per token
        runs[f"bpt/{d}"] = runs[f"val/{d}/loss"] / math.log(2) / runs[f"val/{d}/bpb"]
    return domains, runs


def noise(runs, domains: list[str], bpt: dict) -> dict:
    """Seed-to-seed sd of each domain's loss and of the mean bits per byte, pooled over the cells
    trained at more than one seed (None where no cell was)."""
    runs = runs.assign(bpb_mean=sum(runs[f"val/{d}/loss"] / math.log(2) / bpt[d] for d in domains) / len(domains))
    cols = [f"val/{d}/loss" for d in domains] + ["bpb_mean"]
    rep = runs.groupby("cell_key").filter(lambda g: len(g) > 1)
    if len(rep) == 0:
        return {c: None for c in cols}
    dev = rep.groupby("cell_key")[cols].transform(lambda x: x - x.mean())
    dof = len(rep) - rep["cell_key"].nunique()
    return {c: float(np.sqrt((dev[c] ** 2).sum() / dof)) for c in cols}


def target_weights(target: str, domains: list[str], bpt: dict) -> dict:
    """The target as weights on the domains' losses: the mean bits per byte, or one domain's loss."""
    if target == "bpb":
        return {d: 1 / (len(domains) * math.log(2) * bpt[d]) for d in domains}
    if target not in domains:
        raise HarnessError(f"mixing.target={target}: bpb or one of the domains ({', '.join(domains)})")
    return {target: 1.0}


def fit_law(runs, domains: list[str], n_bootstrap: int) -> tuple:
    """The mixing law of one size's runs, seeds averaged per cell: (the per-cell means, the MixingLaw)."""
    from harness.fit import mixing

    shares, losses = [f"mix/{d}/share" for d in domains], [f"val/{d}/loss" for d in domains]
    mean = runs.groupby("cell_key")[shares + losses].mean()
    return mean, mixing.fit(domains, mean[shares].to_numpy(), mean[losses].to_numpy(), n_bootstrap)


def predict(block: dict, mix_dir: Path, keys: list[str] | None, n_bootstrap: int = 400) -> dict:
    """mixing_prediction.json: the law at `model`, the held-out mixture's and the optimum's intervals."""
    from harness.fit import mixing

    domains, runs = cells(mix_dir, block["model"], keys)
    bpt = {d: float(runs[f"bpt/{d}"].median()) for d in domains}
    sd = noise(runs, domains, bpt)
    mean, law = fit_law(runs, domains, n_bootstrap)
    inflate = math.sqrt(len(mean) / (len(mean) - len(domains) - 1))
    noise_d = {d: max(sd[f"val/{d}/loss"] or 0.0, law.laws[i].rmse * inflate) for i, d in enumerate(domains)}
    weights = target_weights(str(block["target"]), domains, bpt)
    t_noise = sd["bpb_mean"] if block["target"] == "bpb" else noise_d.get(str(block["target"]))
    t_noise = max(t_noise or 0.0, math.sqrt(sum((weights.get(d, 0) * noise_d[d]) ** 2 for d in domains)))
    held = [float(block["held"]), 1 - float(block["held"])]
    best = mixing.optimum(law, weights)
    share = round(best["shares"][domains[0]], 3)  # what the check trains
    opt = [share, 1 - share]
    measured = {d: float(v) for d, v in zip(mean.index, mean[[f"val/{x}/loss" for x in domains]].to_numpy() @
                                            np.array([weights.get(x, 0) for x in domains]))}

    def at(r):
        per = {d: mixing.interval(law, r, noise_d[d])[d] for d in domains}
        return {"shares": dict(zip(domains, r)), "domains": per,
                "target": mixing.target_interval(law, weights, r, t_noise)}

    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "form": "L_i(r) = c_i + k_i exp(sum_j t_ij r_j) "
            "(Ye et al. 2024), the last domain's t fixed at 0", "model": block["model"], "domains": domains,
            "target": {"name": str(block["target"]), "weights": weights, "bytes_per_token": bpt},
            "fitted_on": sorted(mean.index), "fitted_runs": sorted(runs["cell_id"]),
            "noise_sd": {**noise_d, "target": t_noise}, "seed_sd": sd,
            "laws": {d: {"c": lw.c, "k": lw.k, "t": list(lw.t), "rmse": lw.rmse} for d, lw in zip(domains, law.laws)},
            "fitted_target": measured, "held_out": at(held),
            "optimum": {**at(opt), "search": best}, "n_bootstrap": n_bootstrap}


def spell(shares: dict) -> str:
    """A mixture as a data.mix override value, e.g. {code:0.3,wiki:0.7}."""
    return "{" + ",".join(f"{d}:{v:.6g}" for d, v in shares.items()) + "}"


def check_stage(made: dict, sweep: str) -> list[list[str]]:
    """The check cells, as harness-train -m entries over the mixing sweep at `model`: the held-out and the
    predicted mixture at seed 0 side by side, and the predicted one at seed 1."""
    held, best = spell(made["held_out"]["shares"]), spell(made["optimum"]["shares"])
    return [[f"sweep={sweep}", "hydra/launcher=parallel", f"model={made['model']}", f"data.mix={held},{best}"],
            [f"sweep={sweep}", "seed=1", f"model={made['model']}", f"data.mix={best}"]]


def verdict(made: dict, mix_dir: Path) -> dict:
    """The check cells against the prediction: per-domain errors of the held-out mixture, the optimum's
    target (seeds averaged) inside its interval, and how it compares with the best fitted mixture."""
    domains, runs = cells(mix_dir, made["model"], None)
    out = {}
    for part in ("held_out", "optimum"):
        shares = made[part]["shares"]
        mine = runs[np.all([np.isclose(runs[f"mix/{d}/share"], shares[d], atol=5e-4) for d in domains], axis=0)]
        mine = mine[~mine["cell_id"].isin(made["fitted_runs"])]  # fresh runs (a fitted mixture's other seed too)
        if len(mine) == 0:
            raise HarnessError(f"the {part} mixture {shares} has no finished run in {mix_dir}")
        got = {d: float(mine[f"val/{d}/loss"].mean()) for d in domains}
        w = made["target"]["weights"]
        target = sum(w.get(d, 0) * got[d] for d in domains)
        dom = {d: {"measured": got[d], "error_pct": 100 * (got[d] / p["predicted"] - 1),
                   "inside": p["pi95"][0] <= got[d] <= p["pi95"][1]} for d, p in made[part]["domains"].items()}
        t = made[part]["target"]
        out[part] = {"seeds": int(len(mine)), "domains": dom, "target": {
            "measured": target, "predicted": t["predicted"], "pi95": t["pi95"],
            "error_pct": 100 * (target / t["predicted"] - 1), "inside": t["pi95"][0] <= target <= t["pi95"][1]}}
    best = min(made["fitted_target"].values())
    out["optimum"]["best_fitted_target"] = best
    out["optimum"]["beats_best_fitted"] = out["optimum"]["target"]["measured"] < best
    return out


def by_size(made: dict, mix_dir: Path) -> tuple:
    """After the check, the law fitted the same way at every size the mixing sweep trained (the
    prediction's own model included, on the same runs): does the best mixture move with size? Post hoc,
    not a prediction. Returns (every finished run, its column `check` marking the check runs,
    {model: MixingLaw}, {model: summary})."""
    from harness.fit import mixing
    from harness.fit.collect import collect

    runs, _ = collect(str(mix_dir))
    runs = runs[runs["status"] == "finished"]
    runs = runs.assign(check=(runs["model"] == made["model"]) & ~runs["cell_id"].isin(made["fitted_runs"]))
    d = made["domains"]
    laws, out = {}, {}
    for model, part in runs[~runs["check"]].groupby("model"):
        laws[model] = fit_law(part, d, n_bootstrap=100)[1]
        best = mixing.optimum(laws[model], made["target"]["weights"])
        out[model] = {"N": float(part["N_total"].iloc[0]), "optimum_share": best["shares"][d[0]],
                      "share_ci95": best["share_ci95"], "at_bound": best["at_bound"], "target": best["target"],
                      "rmse": {x: lw.rmse for x, lw in zip(d, laws[model].laws)}}
    return runs, laws, out


def lines(made: dict, v: dict) -> list[str]:
    d0 = made["domains"][0]
    h, o = v["held_out"], v["optimum"]
    errs = ", ".join(f"{d} {x['error_pct']:+.2f} % ({'inside' if x['inside'] else 'OUTSIDE'})"
                     for d, x in h["domains"].items())
    ot = o["target"]
    return [f"held-out mixture ({d0} {made['held_out']['shares'][d0]:.3g}): {errs}",
            f"predicted best mixture ({d0} {made['optimum']['shares'][d0]:.3g}): target {ot['measured']:.4f}, "
            f"predicted {ot['predicted']:.4f} [{ot['pi95'][0]:.4f}, {ot['pi95'][1]:.4f}] "
            f"({'inside' if ot['inside'] else 'OUTSIDE'}); best fitted mixture {o['best_fitted_target']:.4f}"]


def run_study(study, args: dict, common: list[str], config_dir: str | None, run_stage, keys_of) -> int:
    """`run_stage` is harness.study's; `keys_of(study)` its fit stage's cell keys; then the final harness-fit."""
    from harness.cli_fit import fit_main
    from harness.report.document import write_json

    block, sweep_dir = study.mixing, Path(args["results_dir"]) / study.sweep
    mix_dir = Path(args["results_dir"]) / block["sweep"]
    path = mix_dir / "mixing_prediction.json"
    t0 = time.time()
    run_stage("fit", study.fit, common, config_dir)
    if path.exists():
        made = json.loads(path.read_text())
        print(f"harness-study: keeping {path} (created {made['created']}); it is never rewritten")
    else:
        made = predict(block, mix_dir, keys_of(study))
        made["check"] = [" ".join(["harness-train", "-m", *e]) for e in check_stage(made, block["sweep"])]
        write_json(made, path)
        o = made["optimum"]
        print(f"harness-study: wrote {path} before its check cells trained: best mixture "
              f"{o['shares']} (search CI {o['search']['share_ci95']}), target {o['target']['predicted']:.4f}")
        if o["search"]["at_bound"]:
            print("harness-study: the best mixture is at the edge of the fitted mixtures; the law's best may lie "
                  "beyond them, where it is not trusted")
    run_stage("check", check_stage(made, block["sweep"]), common, config_dir)
    v = verdict(made, mix_dir)
    runs, laws, v["by_size_post_hoc"] = by_size(made, mix_dir)
    write_json(v, mix_dir / "mixing_verdict.json")
    from harness.report.mixfig import mixing_plot

    mixing_plot(runs, made, laws, mix_dir / "mixing.png")
    for line in lines(made, v):
        print(f"harness-study: {line}")
    rc = 0
    if study.sweep != block["sweep"]:  # the arms' own sweep: a law per arm (fit_args, e.g. group_by=data)
        rc = fit_main([f"runs={sweep_dir}", f"out={sweep_dir / study.out}", *study.fit_args])
    print(f"harness-study: {study.name} done in {(time.time() - t0) / 60:.1f} min")
    return rc
