"""Learning rate checked at the tiny study's own budgets: each checked size at its top budget
(conf/sweep/tiny.yaml), trained as one WSD run at 0.5x, 1x and 2x the per-size LR rule.

    python scripts/lr_check.py      # ~10 min on 2 CPU cores; writes results/lr_study/ and its table.md

The study uses the rule (1x); a size whose best LR is another multiple is a size whose loss the law
sees off its optimum. Two runs at a time, one thread each, as the study trains.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import spec
from harness.cli import compose

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
    jobs = []
    for model in SIZES:
        rule = spec.resolve(compose(overrides(model, None))).lr
        jobs += [(model, scale, overrides(model, rule * scale)) for scale in SCALES]
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda j: train(j[2]), jobs))
    if any(codes):
        sys.exit(f"lr_check: {sum(c != 0 for c in codes)} runs failed")
    lines = ["Final validation loss of each size at its top budget in the tiny study (one WSD run, "
             "`python scripts/lr_check.py`), at multiples of the per-size LR rule (harness/hparams.py) "
             "that the study uses (1x). Best per row in bold.", "",
             "| model | N_nonembed | C (6 N_nonembed D) | D | rule LR | "
             + " | ".join(f"{s:g}x" for s in SCALES) + " |",
             "|---|---|---|---|---|" + "---|" * len(SCALES)]
    for model in SIZES:
        losses = {}
        for scale in SCALES:
            s = spec.resolve(compose(overrides(model, None)))
            cell = spec.resolve(compose(overrides(model, s.lr * scale)))
            losses[scale] = json.loads((cell.directory / "summary.json").read_text())["summary"]["val/loss"]
        best = min(losses, key=losses.get)
        cols = [f"**{v:.4f}**" if k == best else f"{v:.4f}" for k, v in losses.items()]
        lines.append(f"| {model} | {s.N_nonembed:,} | {top_budget(model):.3g} | {s.D:,} | {s.lr:.4f} | "
                     + " | ".join(cols) + " |")
    out = RESULTS / SWEEP / "table.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
