"""What 2 processes cost against 1 at the same global batch, on CPU with gloo (DDP and FSDP2).

    python scripts/bench_distributed.py        # ~3 min on 2 CPU cores; run it on a quiet machine

For each model and strategy the real training step (harness.train.loop.Session, as harness-train
runs it) is timed over --steps steps after --warmup, in --rounds alternating rounds of: one process
on the whole batch; K processes each on 1/K of it; K processes with gradient synchronization off
(DDP's no_sync; FSDP's set_requires_gradient_sync(False)), the same arithmetic without the
all-reduce / reduce-scatter. The communication share is 1 - (no-sync step / synced step). Tokens/s per
process = global batch tokens / step time / processes. One thread per process. Writes
results/bench/distributed_<date>.json.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchkit import median_step_seconds  # noqa: E402

from harness.train import dist, loop, spec  # noqa: E402
from harness.train.loop import cpu_model  # noqa: E402


def _time(cell: list[str], rank: int, world: int, strategy: str, steps: int, warmup: int, sync: bool) -> float:
    """Median step time (s) of the real step on this process's share."""
    from harness.config import compose
    from harness.data import batches

    cfg = compose([*cell, f"distributed.nproc={world}", f"distributed.strategy={strategy}"])
    s = spec.resolve(cfg)
    device, _ = loop.setup("cpu", 1)
    d = dist.init(cfg.distributed, device, rank, world, rank) if world > 1 else dist.ALONE
    session = loop.Session(s, cfg.model, cfg.optim, batches.prepare(s.data), device, d)
    if d.on and not sync:
        if hasattr(session.net, "no_sync"):
            ctx = session.net.no_sync()
        else:
            session.net.set_requires_gradient_sync(False)
            ctx = contextlib.nullcontext()
    else:
        ctx = contextlib.nullcontext()
    with ctx:
        return median_step_seconds(session, s.lr, steps, warmup, torch.distributed.barrier if d.on else None)


def _worker(rank: int, world: int, cell, strategy, steps, warmup, sync, out) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    try:
        t = _time(cell, rank, world, strategy, steps, warmup, sync)
        if rank == 0:
            out.put(t)
    finally:
        dist.close()


def run(cell, world, strategy, steps, warmup, sync) -> float:
    if world == 1:
        return _time(cell, 0, 1, strategy, steps, warmup, True)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(dist.free_port())
    out = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(world, cell, strategy, steps, warmup, sync, out), nprocs=world)
    return out.get()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gpt2-100k,gpt2-800k")
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / f"distributed_{datetime.date.today()}.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for model in args.models.split(","):
        cell = [f"model={model}", "budget.tokens=10000000", f"optim.batch_tokens={args.batch_tokens}", "threads=1"]
        for strategy in ("ddp", "fsdp"):
            one, synced, unsynced = [], [], []
            for _ in range(args.rounds):  # alternate, so drift of the machine hits all three alike
                one.append(run(cell, 1, strategy, args.steps, args.warmup, True))
                synced.append(run(cell, args.world, strategy, args.steps, args.warmup, True))
                unsynced.append(run(cell, args.world, strategy, args.steps, args.warmup, False))
            t1, tk, tn = (statistics.median(x) for x in (one, synced, unsynced))
            row = {"model": model, "strategy": strategy, "world": args.world, "batch_tokens": args.batch_tokens,
                   "step_s_one_process": t1, "step_s_k_processes": tk, "step_s_k_no_sync": tn,
                   "speedup": t1 / tk, "communication_share": max(0.0, 1 - tn / tk),
                   "tokens_per_s_per_process_one": args.batch_tokens / t1,
                   "tokens_per_s_per_process_k": args.batch_tokens / tk / args.world,
                   "rounds": {"one": one, "k": synced, "k_no_sync": unsynced}}
            rows.append(row)
            print(f"{model} {strategy}: 1 process {t1 * 1e3:.1f} ms/step, {args.world} processes "
                  f"{tk * 1e3:.1f} ms ({row['speedup']:.2f}x), communication {row['communication_share']:.0%} "
                  f"of the step, {row['tokens_per_s_per_process_k']:.0f} tokens/s per process "
                  f"(one process: {row['tokens_per_s_per_process_one']:.0f})")
    Path(args.out).write_text(json.dumps({"machine": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                                          "command": " ".join(["python", *sys.argv]), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
