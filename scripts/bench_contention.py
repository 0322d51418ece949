"""A cell's training speed alone and beside a competing CPU-bound process, per threading setting.

    python scripts/bench_contention.py            # ~4 min on 2 CPU cores; run it on a quiet machine

Each setting runs the same cell's step loop (harness.train.loop, as harness-train does) for a fixed wall
time, three times: quiet; beside a pure-Python busy loop (one core); beside a second copy of
itself (the same setting, another seed). It reports tokens/s (start-up and 3 warm-up steps
excluded) and the ratio to the quiet speed. Writes results/bench/contention_<date>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from harness.train.loop import cpu_model

ROOT = Path(__file__).resolve().parents[1]
BUSY = "while True: pass"


def settings() -> dict:
    cores = torch.get_num_threads()  # torch's own default: one thread per physical core
    return {f"threads={cores} (torch default, before)": ([f"threads={cores}"], {}),
            f"threads={cores}, OMP_WAIT_POLICY=PASSIVE": ([f"threads={cores}"], {"OMP_WAIT_POLICY": "PASSIVE"}),
            "threads=1": (["threads=1"], {})}


def worker(cell: list[str], seconds: float) -> None:
    """Train the cell's real step loop for a fixed wall time; print its tokens/s (a collapse would
    otherwise make a fixed-token run take many minutes)."""
    from harness.config import compose
    from harness.data import batches
    from harness.train import loop, spec

    cfg = compose(cell)
    s = spec.resolve(cfg)
    device, env = loop.setup(cfg.device, cfg.threads)
    session = loop.Session(s, cfg.model, cfg.optim, batches.prepare(s.data), device)
    loop.run_steps(session, 0, 3, lambda i: s.lr, lambda m, i: None)  # warm-up: allocations, first batches
    steps, t0 = 3, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        loop.run_steps(session, steps, steps + 5, lambda i: s.lr, lambda m, i: None)
        steps += 5
    print(json.dumps({"tokens_per_s": (steps - 3) * s.batch_tokens / (time.perf_counter() - t0),
                      "threads": env["threads"]}))


def spawn(cell: list[str], env: dict, seconds: float) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", "--seconds", str(seconds), "--cell", " ".join(cell)]
    return subprocess.Popen(cmd, env={**os.environ, "TQDM_DISABLE": "1", **env}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def measure(cell: list[str], env: dict, competitor: str, seconds: float) -> float:
    other = None
    if competitor == "busy loop":
        other = subprocess.Popen([sys.executable, "-c", BUSY])
    elif competitor == "second cell":
        other = spawn(cell + ["seed=1"], env, seconds + 10)
    if other is not None:
        time.sleep(3.0)  # let the competitor get going (the second cell: past its start-up)
    proc = spawn(cell, env, seconds)
    out, err = proc.communicate()
    if other is not None:
        other.kill()
        other.wait()
    if proc.returncode != 0:
        raise SystemExit(f"worker failed: {err[-800:]}")
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", default="model=gpt2-50k budget.tokens=1200000")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    a = ap.parse_args()
    cell = a.cell.split()
    if a.worker:
        return worker(cell, a.seconds)
    rows = []
    for name, (args, env) in settings().items():
        quiet = measure(cell + args, env, "none", a.seconds)
        row = {"setting": name, "quiet_tokens_per_s": round(quiet)}
        for competitor in ("busy loop", "second cell"):
            t = measure(cell + args, env, competitor, a.seconds)
            row[f"{competitor}_tokens_per_s"] = round(t)
            row[f"{competitor}_vs_quiet"] = round(t / quiet, 3)
        rows.append(row)
        print(json.dumps(row))
    out = Path(a.out) / f"contention_{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "cpu": cpu_model(), "torch": torch.__version__}
    meta = {"cell": a.cell, "seconds_per_measurement": a.seconds, "machine": machine, "rows": rows}
    out.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
