"""Cost and fitted law of an N x D grid trained two ways: one cosine run per cell, or one WSD trunk
per N with a cooldown branch per budget (Haegele et al. 2024). Writes results/wsd/.

    python scripts/bench_wsd.py            # ~10 min on 2 CPU cores

Learning rate and warmup are pinned per N (the per-size rules at the largest budget, warmup at the
smallest) and the batch is one size for all, so that the two grids differ only in their schedule.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from harness.cli_fit import FitConfig
from harness.cli_fit import run as fit_run
from harness.config import compose
from harness.train import cell, hparams, spec

SIZES = "gpt2-20k,gpt2-50k,gpt2-100k"
BUDGETS = "150000,300000,600000,900000,1200000,1500000"


BATCH_TOKENS = 384  # one batch for every size: the per-size rule at D_max gives bigger models fewer
# steps, which at this scale makes them worse at equal D (a first run of this script showed it)


def pinned(model: str, budgets: list[int]) -> list[str]:
    big = compose([f"model={model}", f"budget.tokens={max(budgets)}", f"optim.batch_tokens={BATCH_TOKENS}"])
    s = spec.resolve(big)
    warmup = hparams.warmup_tokens(s.N, min(budgets))
    return [f"model={model}", f"optim.lr={s.lr}", f"optim.batch_tokens={BATCH_TOKENS}",
            f"optim.warmup_tokens={warmup}"]


def cosine_grid(sizes, budgets, out: Path) -> dict:
    flops, t0 = 0.0, time.time()
    for model in sizes:
        for tokens in budgets:
            cfg = compose(pinned(model, budgets) + [f"budget.tokens={tokens}", f"results_dir={out}",
                                                     "sweep.name=cosine"])
            s = cell.run(cfg)["summary"]
            flops += s["C"]
    return {"flops_6N": flops, "wall_s": time.time() - t0}


def wsd_grid(sizes, budgets, out: Path) -> dict:
    flops, t0 = 0.0, time.time()
    fractions = [t / max(budgets) for t in sorted(budgets)[:-1]]
    for model in sizes:
        cfg = compose(pinned(model, budgets) + ["optim=wsd", f"budget.tokens={max(budgets)}",
                                                f"branches=[{','.join(f'{f:.6f}' for f in fractions)}]",
                                                f"results_dir={out}", "sweep.name=wsd"])
        flops += cell.run(cfg)["train_flops"]
    return {"flops_6N": flops, "wall_s": time.time() - t0}


def fit(runs: Path, out: Path, n_bootstrap: int) -> dict:
    res = fit_run(FitConfig(runs=str(runs), out=str(out), n_convention="nonembed", n_bootstrap=n_bootstrap))
    forms = {label: {"params": s["params"], "ci95": s["ci95"],
                     "rollout_mean_abs_rel_error": s["rollout"].get("mean_abs_rel_error")}
             for label, s in res["forms"].items()}
    return {"forms": forms, "headline": res["model_choice"]["headline"],
            "backtest_max_abs_rel_error": res["backtest"].get("max_abs_rel_error"), "n_points": res["n_points"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=SIZES)
    ap.add_argument("--budgets", default=BUDGETS, help="tokens per cell, comma-separated")
    ap.add_argument("--out", default="results/wsd")
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--refit", action="store_true", help="keep the runs and timings in OUT/bench.json; refit only")
    a = ap.parse_args()
    sizes, budgets, out = a.sizes.split(","), [int(b) for b in a.budgets.split(",")], Path(a.out)
    if a.refit:
        result = json.loads((out / "bench.json").read_text())
        for kind in ("cosine", "wsd"):
            result[kind]["fit"] = fit(out / kind, out / f"fit_{kind}", a.n_bootstrap)
        (out / "bench.json").write_text(json.dumps(result, indent=1))
        (out / "report.md").write_text(report(result))
        return print(report(result))
    cos, w = cosine_grid(sizes, budgets, out), wsd_grid(sizes, budgets, out)
    result = {"sizes": sizes, "budgets": budgets, "cooldown": "20% of each branch, 1-sqrt",
              "cosine": cos | {"fit": fit(out / "cosine", out / "fit_cosine", a.n_bootstrap)},
              "wsd": w | {"fit": fit(out / "wsd", out / "fit_wsd", a.n_bootstrap)},
              "flops_ratio_wsd_over_cosine": w["flops_6N"] / cos["flops_6N"],
              "wall_ratio_wsd_over_cosine": w["wall_s"] / cos["wall_s"],
              "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "command": "python scripts/bench_wsd.py " + " ".join(
                  f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items())}
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    print(report(result))
    (out / "report.md").write_text(report(result))


def report(r: dict) -> str:
    lines = ["# WSD branches vs one cosine run per cell", "", f"Reproduce: `{r['command']}`", "",
             f"FLOPs: WSD/cosine = {r['flops_ratio_wsd_over_cosine']:.3f}; "
             f"wall time: WSD/cosine = {r['wall_ratio_wsd_over_cosine']:.3f} "
             f"({r['wsd']['wall_s']:.0f} s vs {r['cosine']['wall_s']:.0f} s)", "",
             f"Fits refreshed with `python scripts/bench_wsd.py --refit` (same runs). Headline form: cosine "
             f"{r['cosine']['fit']['headline']}, WSD {r['wsd']['fit']['headline']} (lowest rollout error).", "",
             "| form | param | cosine (95% CI) | WSD (95% CI) |", "|---|---|---|---|"]
    for label, c_form in r["cosine"]["fit"]["forms"].items():
        w_form = r["wsd"]["fit"]["forms"][label]
        for k in c_form["params"]:
            lines.append(f"| {label} | {k} | {_cell(c_form, k)} | {_cell(w_form, k)} |")
        lines.append(f"| {label} | rollout mean \\|err\\| | {_pct(c_form)} | {_pct(w_form)} |")
    return "\n".join(lines) + "\n"


def _cell(form: dict, k: str) -> str:
    ci = form["ci95"].get(k)
    return f"{form['params'][k]:.4g} " + ("not identified" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]")


def _pct(form: dict) -> str:
    e = form["rollout_mean_abs_rel_error"]
    return "–" if e is None else f"{e:.2%}"


if __name__ == "__main__":
    main()
