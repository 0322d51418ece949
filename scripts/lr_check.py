"""Learning rate checked at a study's own budgets: each checked size at its budget in a sweep preset
(default conf/sweep/tiny.yaml, its top budget), trained as one WSD run at 0.5x, 1x and 2x the
per-size LR rule.

    python scripts/lr_check.py      # ~10 min on 2 CPU cores; writes results/lr_study/ and its table.md
    python scripts/lr_check.py --sweep laptop_check --sizes gpt2-1.6m --table table_laptop_check.md

The study uses the rule (1x); a size whose best LR is another multiple is a size whose loss the law
sees off its optimum. Two runs at a time, one thread each, as the study trains.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.config import compose
from harness.store import records
from harness.train import spec

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("gpt2-12k", "gpt2-30k", "gpt2-50k", "gpt2-75k", "gpt2-150k")
SCALES = (0.5, 1.0, 2.0)
RESULTS = ROOT / "results"
SWEEP = "lr_study"


def budget(sweep: str, model: str) -> float:
    cfg = compose([f"sweep={sweep}", f"model={model}"])
    if cfg.budget.convention != "kaplan" or cfg.budget.flops is None:
        sys.exit(f"lr_check: sweep={sweep} gives {model} no budget.flops in the kaplan convention")
    return cfg.budget.flops


def overrides(sweep: str, model: str, lr: float | None) -> list[str]:
    return [f"model={model}", "optim=wsd", f"budget.flops={budget(sweep, model)}", "budget.convention=kaplan",
            "evals=1", f"sweep.name={SWEEP}", f"results_dir={RESULTS}"] + ([f"optim.lr={lr}"] if lr else [])


def train(args: list[str]) -> int:
    code = "import sys; sys.argv[0] = 'harness-train'; from harness.cli import train_main; train_main()"
    return subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, "TQDM_DISABLE": "1"}).returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="tiny", help="preset that gives each size its budget")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma-separated model configs")
    ap.add_argument("--scales", default=",".join(map(str, SCALES)), help="multiples of the LR rule")
    ap.add_argument("--table", default="table.md", help=f"file name in {RESULTS / SWEEP}")
    args = ap.parse_args()
    sizes, scales = args.sizes.split(","), [float(x) for x in args.scales.split(",")]
    rule = {model: spec.resolve(compose(overrides(args.sweep, model, None))) for model in sizes}  # the study's cell
    jobs = [overrides(args.sweep, model, rule[model].lr * scale) for model in sizes for scale in scales]
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(train, jobs))
    if any(codes):
        sys.exit(f"lr_check: {sum(c != 0 for c in codes)} runs failed")
    command = "python scripts/lr_check.py " + " ".join(sys.argv[1:])
    lines = [f"Final validation loss of each size at its budget in sweep={args.sweep} (one WSD run, "
             f"`{command.strip()}`), at multiples of the per-size LR rule (harness/train/hparams.py) "
             "that the study uses (1x). Best per row in bold.", "",
             "| model | N_nonembed | C (6 N_nonembed D) | D | rule LR | "
             + " | ".join(f"{s:g}x" for s in scales) + " |",
             "|---|---|---|---|---|" + "---|" * len(scales)]
    for model, s in rule.items():
        losses = {}
        for scale in scales:
            cell = spec.resolve(compose(overrides(args.sweep, model, s.lr * scale)))
            losses[scale] = records.read(cell.directory)["summary"]["val/loss"]
        best = min(losses, key=losses.get)
        cols = [f"**{v:.4f}**" if k == best else f"{v:.4f}" for k, v in losses.items()]
        lines.append(f"| {model} | {s.N_nonembed:,} | {s.C['kaplan']:.3g} | {s.D:,} | {s.lr:.4f} | "
                     + " | ".join(cols) + " |")
    out = RESULTS / SWEEP / args.table
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
