"""Aggregate throughput of a whole study, timed end to end as a user runs it (the README's main command).

    python scripts/bench_sweep.py                  # harness-study study=tiny into a temp dir, ~13 min
    python scripts/bench_sweep.py --runs results/rerun/tiny --wall-s 763 --timed "..."  # count a timed run set

Counts every token the study trained (WSD trunks with their cooldown branches, standalone runs) and
divides by the wall time of the whole command (training, the prediction fit, the final fit), so
that choices which only move work around (parallel cells, WSD sharing one trunk across budgets)
show up as what they are. Writes results/bench/sweep_<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.store import records
from harness.train.loop import cpu_model

ROOT = Path(__file__).resolve().parents[1]
# The tiny study as it was on main before this benchmark (commit 85ee202, 16 cosine cells, one
# process with torch's default 2 threads): measured by the issue that asked for this benchmark.
BEFORE = {"tokens": 20.4e6, "train_s": 469.0, "tokens_per_s": 20.4e6 / 469.0,
          "source": "issue 13: 16 cosine cells of sweep=tiny at 85ee202, threads=2, one process"}


def count(sweep_dir: Path) -> dict:
    """Tokens and 6N FLOPs trained under sweep_dir: trunks count trunk + branch steps, runs their D."""
    tokens = flops = 0.0
    cells = trunks = standalone = 0
    for path in sorted(sweep_dir.rglob(records.TRUNK)):
        rec = records.read(path.parent, records.TRUNK)
        if rec and rec.get("status") == "finished":
            tokens += rec["summary"]["train_tokens"]
            flops += rec["summary"]["train_flops"]
            trunks += 1
    for _, rec in records.iter_records(sweep_dir):
        s = rec.get("summary", {})
        if rec.get("status") != "finished":
            continue
        cells += 1
        if not s.get("trunk"):  # a branch's tokens are counted in its trunk
            tokens += s["D"]
            flops += s["C"]
            standalone += 1
    return {"tokens": tokens, "flops_6N": flops, "cells": cells, "trunks": trunks, "standalone_runs": standalone}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="tiny")
    ap.add_argument("--runs", help="count this existing sweep directory instead of training")
    ap.add_argument("--wall-s", type=float, help="with --runs: the wall time that run set took")
    ap.add_argument("--timed", help="with --runs: the command whose wall time --wall-s is")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / f"sweep_{datetime.date.today()}.json"))
    args = ap.parse_args()
    if args.runs:
        sweep_dir, wall, command = Path(args.runs), args.wall_s, [args.timed] if args.timed else None
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
        command = ["harness-study", f"study={args.study}", f"results_dir={tmp}"]
        t0 = time.time()
        subprocess.run([sys.executable, "-c", "import sys; from harness.study import main; sys.exit(main())",
                        *command[1:]], check=True, env={**os.environ, "TQDM_DISABLE": "1"})
        wall = time.time() - t0
        sweep_dir = tmp / args.study
    c = count(sweep_dir)
    out = {"date": str(datetime.date.today()), "cpu": cpu_model(), "cores": os.cpu_count(),
           "python": platform.python_version(), "command": " ".join(command) if command else None,
           "runs": str(sweep_dir), "wall_s": wall, **c,
           "tokens_per_s": c["tokens"] / wall if wall else None, "before": BEFORE}
    if wall:
        out["speedup_tokens_per_s"] = out["tokens_per_s"] / BEFORE["tokens_per_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
