"""Many data budgets from one run per N: a constant-LR trunk with cooldown branches.

Haegele et al. (2024): warmup-stable-decay with a 20% 1-sqrt cooldown matches cosine at every
length, so one trunk at constant LR plus a short cooldown branched at each budget gives one
(N, D, loss) point per budget for far fewer FLOPs than a cosine run per budget. Each branch is
its own record (summary.json + wandb run) that `harness-fit` reads like any other run; the trunk
writes `trunk.json` (records.py, kind "trunk"), which is not a data point.
"""
from __future__ import annotations

import time

from harness.config import CheckpointConfig, OptimConfig
from harness.store import records
from harness.train import checkpoint, dist, loop, schedule
from harness.train.spec import Spec
from harness.train.track import Destination, Tracker


def train(spec: Spec, o: OptimConfig, c: CheckpointConfig, dest: Destination, s: loop.Session, env: dict,
          base: dict) -> dict:
    """Train the trunk, branching a cooldown at each budget; returns the trunk record. A checkpoint
    (checkpoint.py) is written on the clock during the trunk and after each branch is recorded, so a
    resumed trunk keeps the branches already written."""
    extra = checkpoint.resume(spec, s)
    trunk = records.new("trunk", cell_id=spec.cell_id, sweep=dest.sweep, config=dest.config,
                        summary=base, env=env, branches=list(extra["branches"]) if extra else [])
    if s.d.main:
        records.write(spec.directory, trunk, records.TRUNK)
    t0, before = time.time(), extra["wall_s"] if extra else 0.0
    trunk_steps, branch_steps = (extra["step"], extra["branch_steps"]) if extra else (0, 0)
    history: list[tuple[dict, int]] = list(extra["history"]) if extra else []  # replayed into each branch's run
    try:
        loss_init = extra["loss_init"] if extra else s.evaluate()
        if not extra:
            history.append(({"val/loss": loss_init, "tokens": 0}, 0))

        def trunk_lr(step: int) -> float:  # warmup, then constant: the cooldown lies beyond every branch
            return schedule.lr_at(step, spec.steps, spec.warmup_steps, spec.lr, o)

        def state(step: int) -> dict:
            return {"step": step, "branch_steps": branch_steps, "history": history, "branches": trunk["branches"],
                    "loss_init": loss_init, "wall_s": before + time.time() - t0, "recent": []}

        with checkpoint.Clock(c) as clock:
            def on_trunk_step(done: int, recent: list) -> None:
                if done % s.check_every == 0 and clock.agreed(done, s):
                    checkpoint.write(spec, s, state(done), clock)

            for start, end in spec.branches:
                loop.run_steps(s, trunk_steps, start, trunk_lr, lambda m, i: history.append((m, i)), of=spec.steps,
                               on_step=on_trunk_step)
                trunk_steps = max(trunk_steps, start)
                rec, trained = _branch(o, dest, s, spec.branch(end), start, history, loss_init, env, base,
                                       lambda: checkpoint.write(spec, s, state(start), clock), clock)
                if rec.get("cell_id") and rec["cell_id"] not in trunk["branches"]:
                    trunk["branches"].append(rec["cell_id"])
                if trained:
                    branch_steps += end - start
                    if end < spec.steps:  # the branch is written: a resume starts here, not before it
                        checkpoint.write(spec, s, state(start), clock)
    except BaseException as e:  # a branch records its own failure; the trunk says it stopped
        trunk.update(status="diverged" if isinstance(e, loop.Diverged) else "failed", error=f"{type(e).__name__}: {e}")
        if s.d.main:
            records.write(spec.directory, trunk, records.TRUNK)
        e.recorded = True
        raise
    tokens = (trunk_steps + branch_steps) * spec.batch_tokens
    trunk["summary"].update(trunk_steps=trunk_steps, branch_steps=branch_steps, train_tokens=tokens,
                            train_flops=tokens * spec.flops_per_token["6N"], wall_s=round(before + time.time() - t0, 2))
    trunk["status"] = "finished"
    if s.d.main:
        records.write(spec.directory, trunk, records.TRUNK)
        checkpoint.clear(spec.directory)  # a finished cell keeps no checkpoint
        print(f"{spec.cell_id}: {len(spec.branches)} branches, trunk {trunk_steps} + branches {branch_steps} steps")
    return trunk


def _branch(o: OptimConfig, dest: Destination, s: loop.Session, b: Spec, start: int, history, loss_init: float,
            env: dict, base: dict, save_trunk, clock: checkpoint.Clock) -> tuple[dict, bool]:
    """Cool down from the trunk at `start` to b.steps, record it, and return the trunk to `start`;
    (its record, whether it trained now). A signal during the cooldown writes the trunk's checkpoint
    at `start` and stops: the branch then trains again on the resume."""
    previous = dist.broadcast(records.read(b.directory) if s.d.main else None, s.d)
    if records.is_done(previous):
        return previous, False
    summary = {**base, **b.flat(), "epochs": b.D / base["unique_train_tokens"],
               "branch_start_tokens": start * b.batch_tokens, "trunk": base["cell_id"]}
    tracker = Tracker(dest, b.directory, b.cell_id, summary, env)
    for metrics, step in history:
        if step <= start:
            tracker.log(metrics, step=step)
    snap, t0 = s.snapshot(), time.time()

    def on_step(done: int, recent: list) -> None:
        if done % s.check_every == 0 and clock.agreed(done, s) and clock.signal:
            s.restore(snap)
            save_trunk()  # raises Preempted

    try:  # exactly the LR a standalone WSD run of length b.steps would use
        train_loss = loop.run_steps(
            s, start, b.steps, lambda i: schedule.lr_at(i, b.steps, b.warmup_steps, b.lr, o), tracker.log,
            on_step=on_step)
        final = s.final_loss(b.steps)
    except BaseException as e:
        tracker.fail(e)
        raise
    tracker.log({"val/loss": final, **s.held_out(), "tokens": b.D}, step=b.steps)
    s.restore(snap)
    if s.d.main:
        print(f"{b.cell_id}: final val/loss {final:.4f}")
    return tracker.finish("finished", {"val/loss": final, **s.held_out(), "val/loss_init": loss_init,
                                       "train/loss": train_loss,
                                       "branch_s": round(time.time() - t0, 2)}), True
