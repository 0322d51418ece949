"""Table of the LR/batch check (`harness-train -m sweep=lr_tiny`): final loss per size, batch and LR.

    python scripts/lr_table.py results/lr_sweep > results/lr_sweep/table.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.config import compose
from harness.train import spec


def main(sweep_dir: str) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).glob("*/summary.json"))]
    cells = {}
    for r in rows:
        s = r["summary"]
        if r["status"] == "finished":
            rule = r["config"]["optim"]["batch_tokens"] is None
            cells.setdefault((s["N_nonembed"], s["model"], rule, s["batch_tokens"]), {})[s["lr"]] = s["val/loss"]
    lrs = sorted({lr for v in cells.values() for lr in v})
    print("Final validation loss after 300k tokens (`harness-train -m sweep=lr_tiny`; cosine, default "
          "warmup). `rule` = the per-size batch rule in harness/train/hparams.py; the starred LR is the best "
          "per row; `rule LR` is what the default LR rule picks for that cell.\n")
    print("| model | batch (tokens) | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | rule LR |")
    print("|---|---|" + "---|" * (len(lrs) + 1))
    for (_, model, rule, batch), losses in sorted(cells.items()):
        best = min(losses, key=losses.get)
        cfg = compose([f"model={model}", "budget.tokens=300000"])
        cols = [(f"**{losses[lr]:.3f}**" if lr == best else f"{losses[lr]:.3f}") if lr in losses else "-"
                for lr in lrs]
        print(f"| {model} | {batch}{' (rule)' if rule else ''} | " + " | ".join(cols)
              + f" | {spec.resolve(cfg).lr:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/lr_sweep")
