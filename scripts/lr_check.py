"""Learning rate checked at the tiny study's own budgets: each checked size at its top budget
(conf/sweep/tiny.yaml), trained as one WSD run at 0.5x, 1x and 2x the per-size LR rule.

    python scripts/lr_check.py      # ~10 min on 2 CPU cores; writes results/lr_study/ and its table.md

The study uses the rule (1x); a size whose best LR is another multiple is a size whose loss the law
sees off its optimum. Two runs at a time, one thread each, as the study trains.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import records, spec
from harness.config import compose

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("gpt2-12k", "gpt2-30k", "gpt2-50k", "gpt2-75k", "gpt2-150k")
SCALES = (0.5, 1.0, 2.0)
RESULTS = ROOT / "results"
SWEEP = "lr_study"


def top_budget(model: str) -> float:
    cfg = compose(["sweep=tiny", f"model={model}"])
    return cfg.budget.flops


def overrides(model: str, lr: float | None) -> list[str]:
    return [f"model={model}", "optim=wsd", f"budget.flops={top_budget(model)}", "budget.convention=kaplan",
            "evals=1", f"sweep.name={SWEEP}", f"results_dir={RESULTS}"] + ([f"optim.lr={lr}"] if lr else [])


def train(args: list[str]) -> int:
    code = "import sys; sys.argv[0] = 'harness-train'; from harness.cli import train_main; train_main()"
    return subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, "TQDM_DISABLE": "1"}).returncode


def main() -> None:
    rule = {model: spec.resolve(compose(overrides(model, None))) for model in SIZES}  # the study's own cell
    jobs = [overrides(model, rule[model].lr * scale) for model in SIZES for scale in SCALES]
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(train, jobs))
    if any(codes):
        sys.exit(f"lr_check: {sum(c != 0 for c in codes)} runs failed")
    lines = ["Final validation loss of each size at its top budget in the tiny study (one WSD run, "
             "`python scripts/lr_check.py`), at multiples of the per-size LR rule (harness/hparams.py) "
             "that the study uses (1x). Best per row in bold.", "",
             "| model | N_nonembed | C (6 N_nonembed D) | D | rule LR | "
             + " | ".join(f"{s:g}x" for s in SCALES) + " |",
             "|---|---|---|---|---|" + "---|" * len(SCALES)]
    for model, s in rule.items():
        losses = {}
        for scale in SCALES:
            cell = spec.resolve(compose(overrides(model, s.lr * scale)))
            losses[scale] = records.read(cell.directory)["summary"]["val/loss"]
        best = min(losses, key=losses.get)
        cols = [f"**{v:.4f}**" if k == best else f"{v:.4f}" for k, v in losses.items()]
        lines.append(f"| {model} | {s.N_nonembed:,} | {s.C['kaplan']:.3g} | {s.D:,} | {s.lr:.4f} | "
                     + " | ".join(cols) + " |")
    out = RESULTS / SWEEP / "table.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
