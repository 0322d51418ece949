"""Mixture-of-Experts against dense of the same active size, per transformers experts implementation, on CPU.

    python scripts/bench_moe.py        # ~3 min on 2 CPU cores; run it on a quiet machine

The real training step (harness.train.loop.Session, as harness-train runs it) of the shipped
`moe-SIZE` (Qwen3-MoE, 8 experts, top-2) and `qwen3-SIZE` (the dense model of the same shape and
active size), one thread, median of --steps steps after --warmup, in --rounds alternating rounds;
each MoE with each experts implementation transformers offers here (eager, batched_mm,
grouped_mm). Writes results/bench/moe_<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchkit import median_step_seconds  # noqa: E402

from harness.config import compose  # noqa: E402
from harness.data import batches  # noqa: E402
from harness.train import loop, spec  # noqa: E402
from harness.train.loop import cpu_model  # noqa: E402

IMPLEMENTATIONS = ("eager", "batched_mm", "grouped_mm")


def step_time(model: str, batch_tokens: int, steps: int, warmup: int, experts: str | None) -> float:
    cfg = compose([f"model={model}", "budget.tokens=10000000", f"optim.batch_tokens={batch_tokens}", "threads=1"])
    s = spec.resolve(cfg)
    device, _ = loop.setup("cpu", 1)
    session = loop.Session(s, cfg.model, cfg.optim, batches.prepare(s.data), device)
    if experts:
        for module in session.lm.modules():
            if hasattr(module, "config"):
                module.config._experts_implementation = experts
    return median_step_seconds(session, s.lr, steps, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100k,800k")
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / f"moe_{datetime.date.today()}.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for size in args.sizes.split(","):
        sides = {"dense": (f"qwen3-{size}", None), **{f"moe {e}": (f"moe-{size}", e) for e in IMPLEMENTATIONS}}
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.rounds):  # alternate, so drift of the machine hits every side alike
            for label, (model, experts) in sides.items():
                try:
                    times[label].append(step_time(model, args.batch_tokens, args.steps, args.warmup, experts))
                except Exception as e:  # noqa: BLE001  an implementation this build lacks
                    times[label].append(float("nan"))
                    print(f"{label}: {type(e).__name__}: {str(e)[:120]}")
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"size": size, "batch_tokens": args.batch_tokens, "step_s": med, "rounds": times,
               "moe_over_dense": {k: v / med["dense"] for k, v in med.items() if k != "dense"}}
        rows.append(row)
        print(f"{size}: dense {med['dense'] * 1e3:.1f} ms/step; " + ", ".join(
            f"{k} {v * 1e3:.1f} ms ({v / med['dense']:.2f}x)" for k, v in med.items() if k != "dense"))
    Path(args.out).write_text(json.dumps({"machine": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                                          "command": " ".join(["python", *sys.argv]), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
