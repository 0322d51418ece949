"""Many data budgets from one run per N: a constant-LR trunk with cooldown branches.

Haegele et al. (2024): warmup-stable-decay with a 20% 1-sqrt cooldown matches cosine at every
length, so one trunk at constant LR plus a short cooldown branched at each budget gives one
(N, D, loss) point per budget for far fewer FLOPs than a cosine run per budget. Each branch is
its own record (summary.json + wandb run) that `harness-fit` reads like any other run; the trunk
writes `trunk.json`, which is not a data point.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from harness import accounting, cells, schedule
from harness.config import Config
from harness.track import Tracker


def read_trunk(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "trunk.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def branch_plan(cfg: Config, d: accounting.Derived) -> list[tuple[int, int]]:
    """(branch start step, branch end step) per budget, the largest last; ends are distinct."""
    ends = sorted({max(1, round(f * d.steps)) for f in cfg.branches} | {d.steps})
    return [(end - max(1, round(cfg.optim.cooldown_fraction * end)), end) for end in ends]


def branch_derived(d: accounting.Derived, end: int) -> accounting.Derived:
    return dataclasses.replace(d, steps=end, D=end * d.batch_tokens)


def run(cfg: Config, d: accounting.Derived, hp: dict, corpus, trunk_dir: Path, base: dict) -> dict:
    """Train the trunk, branching a cooldown at each budget; returns the trunk record."""
    from harness.train import Session, check_finite  # torch only when training

    plan = branch_plan(cfg, d)
    warmup_steps = math.ceil(hp["warmup_tokens"] / d.batch_tokens)
    s = Session(cfg, d, hp, corpus)
    check_every = 1 if s.device.type == "cpu" else cfg.log_every  # GPU: no host sync every step
    loss_init = s.evaluate()
    history, t0, trunk_steps, branch_steps = [{"val/loss": loss_init, "tokens": 0, "_step": 0}], time.time(), 0, 0
    records = []
    for start, end in plan:
        for step in range(trunk_steps, start):  # the trunk: warmup, then constant LR
            out = s.step(schedule.lr_at(step, d.steps, warmup_steps, hp["lr"], cfg.optim))
            if (step + 1) % check_every == 0 or step + 1 == start:
                loss = out.item()
                check_finite(loss, "training loss", step + 1, d.steps)
            if (step + 1) % cfg.log_every == 0:  # a checked step: check_every is 1 or log_every
                history.append({"train/loss": loss, "tokens": (step + 1) * d.batch_tokens, "_step": step + 1})
        trunk_steps = max(trunk_steps, start)
        records.append(_branch(cfg, s, d, hp, base, trunk_dir, history, start, end, warmup_steps,
                               loss_init, check_every))
        branch_steps += end - start
    record = {"status": "finished", "branches": [r["cell_id"] for r in records],
              "trunk_steps": trunk_steps, "branch_steps": branch_steps,
              "train_tokens": (trunk_steps + branch_steps) * d.batch_tokens,
              "train_flops": (trunk_steps + branch_steps) * d.batch_tokens * d.flops_per_token["6N"],
              "wall_s": round(time.time() - t0, 2)}
    cells.write_summary(trunk_dir, record, name="trunk.json")
    print(f"{trunk_dir.name}: " + ", ".join(f"D={r['summary']['D']:,} val/loss {r['summary']['val/loss']:.4f}"
                                          for r in records))
    return record


def _branch(cfg, s, d, hp, base, trunk_dir, history, start, end, warmup_steps, loss_init,
            check_every) -> dict:
    """Cool down from the trunk at `start` to `end`, record it, and return the trunk to `start`."""
    from harness.train import check_finite, record_failure

    bd = branch_derived(d, end)
    directory = trunk_dir / f"D{bd.D}"
    cid = f"{trunk_dir.name}_D{bd.D}"
    previous = cells.read_summary(directory)
    if previous and previous["status"] in cells.DONE:
        return previous
    flat = {**base, **bd.flat(), "epochs": bd.D / base["unique_train_tokens"], "cell_id": cid,
            "cell_key": f"{base['cell_key']}_D{bd.D}",
            "branch_start_tokens": start * d.batch_tokens, "trunk": trunk_dir.name}
    tracker = Tracker(cfg, directory, cid, flat)
    for row in history:
        if row["_step"] <= start:
            tracker.log({k: v for k, v in row.items() if k != "_step"}, step=row["_step"])
    snap, t0 = s.snapshot(), time.time()
    try:
        loss = float("nan")
        for step in range(start, end):  # exactly the LR a standalone WSD run of length `end` would use
            lr = schedule.lr_at(step, end, warmup_steps, hp["lr"], cfg.optim)
            out = s.step(lr)
            if (step + 1) % check_every == 0 or step + 1 == end:
                loss = out.item()
                check_finite(loss, "training loss", step + 1, end)
            if (step + 1) % cfg.log_every == 0:  # a checked step: check_every is 1 or log_every
                tracker.log({"train/loss": loss, "lr": lr, "tokens": (step + 1) * d.batch_tokens}, step=step + 1)
        final = s.evaluate()
        check_finite(final, "validation loss", end, end)
    except BaseException as e:  # record the failure, as train.run does, then let it propagate
        record_failure(tracker, e)
        raise
    tracker.log({"val/loss": final, "tokens": bd.D}, step=end)
    s.restore(snap)
    return tracker.finish("finished", {"val/loss": final, "val/loss_init": loss_init, "train/loss": loss,
                                       "branch_s": round(time.time() - t0, 2)})
