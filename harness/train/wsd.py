"""Many data budgets from one run per N: a constant-LR trunk with cooldown branches.

Haegele et al. (2024): warmup-stable-decay with a 20% 1-sqrt cooldown matches cosine at every
length, so one trunk at constant LR plus a short cooldown branched at each budget gives one
(N, D, loss) point per budget for far fewer FLOPs than a cosine run per budget. Each branch is
its own record (summary.json + wandb run) that `harness-fit` reads like any other run; the trunk
writes `trunk.json` (records.py, kind "trunk"), which is not a data point.
"""
from __future__ import annotations

import time

from harness.config import ModelConfig, OptimConfig
from harness.store import records
from harness.train import loop, schedule
from harness.train.spec import Spec
from harness.train.track import Destination, Tracker


def train(spec: Spec, m: ModelConfig, o: OptimConfig, dest: Destination, corpus, device, env: dict,
          base: dict) -> dict:
    """Train the trunk, branching a cooldown at each budget; returns the trunk record."""
    trunk = records.new("trunk", cell_id=spec.cell_id, sweep=dest.sweep, config=dest.config,
                        summary=base, env=env, branches=[])
    records.write(spec.directory, trunk, records.TRUNK)
    t0, trunk_steps, branch_steps = time.time(), 0, 0
    history: list[tuple[dict, int]] = []  # the trunk's log, replayed into each branch's wandb run
    try:
        s = loop.Session(spec, m, o, corpus, device)
        loss_init = s.evaluate()
        history.append(({"val/loss": loss_init, "tokens": 0}, 0))

        def trunk_lr(step: int) -> float:  # warmup, then constant: the cooldown lies beyond every branch
            return schedule.lr_at(step, spec.steps, spec.warmup_steps, spec.lr, o)

        for start, end in spec.branches:
            loop.run_steps(s, trunk_steps, start, trunk_lr, lambda m, i: history.append((m, i)), of=spec.steps)
            trunk_steps = max(trunk_steps, start)
            rec = _branch(o, dest, s, spec.branch(end), start, history, loss_init, env, base)
            trunk["branches"].append(rec["cell_id"])
            branch_steps += end - start
    except BaseException as e:  # a branch records its own failure; the trunk says it stopped
        trunk.update(status="diverged" if isinstance(e, loop.Diverged) else "failed", error=f"{type(e).__name__}: {e}")
        records.write(spec.directory, trunk, records.TRUNK)
        e.recorded = True
        raise
    tokens = (trunk_steps + branch_steps) * spec.batch_tokens
    trunk["summary"].update(trunk_steps=trunk_steps, branch_steps=branch_steps, train_tokens=tokens,
                            train_flops=tokens * spec.flops_per_token["6N"], wall_s=round(time.time() - t0, 2))
    trunk["status"] = "finished"
    records.write(spec.directory, trunk, records.TRUNK)
    print(f"{spec.cell_id}: {len(spec.branches)} branches, trunk {trunk_steps} + branches {branch_steps} steps")
    return trunk


def _branch(o: OptimConfig, dest: Destination, s: loop.Session, b: Spec, start: int, history, loss_init: float,
            env: dict, base: dict) -> dict:
    """Cool down from the trunk at `start` to b.steps, record it, and return the trunk to `start`."""
    previous = records.read(b.directory)
    if records.is_done(previous):
        return previous
    summary = {**base, **b.flat(), "epochs": b.D / base["unique_train_tokens"],
               "branch_start_tokens": start * b.batch_tokens, "trunk": base["cell_id"]}
    tracker = Tracker(dest, b.directory, b.cell_id, summary, env)
    for metrics, step in history:
        if step <= start:
            tracker.log(metrics, step=step)
    snap, t0 = s.snapshot(), time.time()
    try:  # exactly the LR a standalone WSD run of length b.steps would use
        train_loss = loop.run_steps(
            s, start, b.steps, lambda i: schedule.lr_at(i, b.steps, b.warmup_steps, b.lr, o), tracker.log)
        final = s.final_loss(b.steps)
    except BaseException as e:
        tracker.fail(e)
        raise
    tracker.log({"val/loss": final, "tokens": b.D}, step=b.steps)
    s.restore(snap)
    print(f"{b.cell_id}: final val/loss {final:.4f}")
    return tracker.finish("finished", {"val/loss": final, "val/loss_init": loss_init, "train/loss": train_loss,
                                       "branch_s": round(time.time() - t0, 2)})
