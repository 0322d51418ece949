"""A running cell's checkpoint: written atomically, read back to resume, gone once the cell is done.

`<cell>/checkpoint/` holds the model and optimizer in torch.distributed.checkpoint's format (one
shard per process, re-sharded on load, so a run resumes on any number of processes) and
`extra.pt`: the step, the data position, every RNG state, the wandb run id, the metrics logged so
far (a resumed run's log is whole: replayed up to the step, then continued), and for a WSD trunk
its history and branches. It is written beside as `.checkpoint.tmp` and renamed over the old one,
so a kill leaves the previous checkpoint or the new one. A checkpoint is written every
`checkpoint.every_minutes` (and `every_steps`), and when SIGTERM or SIGUSR1 arrives (what SLURM
sends before preemption and time-out): then the run stops, recorded as failed with a resumable
error, and the same command (or the requeued job) resumes it.
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from harness.config import CheckpointConfig
from harness.errors import HarnessError

NAME, TMP = "checkpoint", ".checkpoint.tmp"
# SIGTERM: preemption; SIGUSR1: `--signal=USR1@...` before a time limit; SIGUSR2: submitit's (hydra's
# slurm launcher) before a time-out. After the checkpoint is written, the handler that was there before
# (submitit's, which requeues the job) runs too.
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
# What a checkpoint must agree on with the cell resuming it (the cell id hashes the config; these are
# what the rules derived from it, as train/cell.py checks for finished records).
IDENTITY = ("cell_id", "D", "steps", "batch_tokens", "lr", "warmup_tokens")


class Preempted(BaseException):
    """A signal asked the run to stop: its checkpoint is written; rerunning resumes it."""


def identity(spec) -> dict:
    flat = spec.flat()
    return {k: flat[k] for k in IDENTITY}


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def _quiet():
    """DCP warns that it saves in one process when no process group exists; that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def save(directory: Path, net, opt, extra: dict, main: bool = True) -> None:
    """Every process writes its shard; the main one writes extra.pt and swaps the folder in."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    tmp, final = directory / TMP, directory / NAME
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    _barrier()
    model_sd, optim_sd = get_state_dict(net, opt)
    with _quiet():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    if main:
        torch.save(extra, tmp / "extra.pt")
        old = directory / ".checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def load(directory: Path, spec, net, opt) -> dict | None:
    """Restore net and opt from the cell's checkpoint and return its extra state; None if there is
    none or it cannot be read (the cell then starts from scratch, and says so). A checkpoint of a
    different run (the rules changed since) is refused, naming what differs."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = directory / NAME
    if not path.is_dir():
        return None
    try:
        extra = torch.load(path / "extra.pt", weights_only=False)
    except Exception as e:  # noqa: BLE001  a damaged checkpoint: never a reason to lose the cell
        print(f"{path} is unreadable ({type(e).__name__}: {e}); starting the cell from scratch")
        return None
    want = identity(spec)
    diff = {k: (extra.get("identity", {}).get(k), v) for k, v in want.items() if extra.get("identity", {}).get(k) != v}
    if diff:
        raise HarnessError(f"{path} was written for a different run: " + ", ".join(
            f"{k} {a} there, {b} now" for k, (a, b) in diff.items()) + "; move it away to train the cell from scratch")
    model_sd, optim_sd = get_state_dict(net, opt)
    state = {"model": model_sd, "optim": optim_sd}
    try:
        with _quiet():
            dcp.load(state, checkpoint_id=str(path))
    except Exception as e:  # noqa: BLE001
        print(f"{path} is unreadable ({type(e).__name__}: {e}); starting the cell from scratch")
        return None
    set_state_dict(net, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return extra


def clear(directory: Path) -> None:
    """A finished cell keeps no checkpoint."""
    for name in (NAME, TMP, ".checkpoint.old"):
        shutil.rmtree(directory / name, ignore_errors=True)


def resume(spec, s) -> dict | None:
    """Load the cell's checkpoint into the session (model, optimizer, data position, RNG) and
    return its state, or None to start from scratch."""
    extra = load(spec.directory, spec, s.lm, s.opt)
    if extra is None:
        return None
    s.batches.restore(extra["batches"])
    set_rng_state(extra["rng"])
    if s.d.main:
        print(f"{spec.cell_id}: resumed from step {extra['step']} ({spec.directory / NAME})")
    return extra


def write(spec, s, state: dict, clock: "Clock") -> None:
    """Write the checkpoint at state["step"]; if a signal asked for it, stop the run (Preempted)."""
    extra = {**state, "identity": identity(spec), "batches": s.batches.state(), "rng": rng_state()}
    save(spec.directory, s.lm, s.opt, extra, s.d.main)
    clock.wrote()
    if clock.signal:
        clock.pass_on()
        raise Preempted(f"{clock.signal} at step {state['step']} of {spec.steps}: checkpoint written, "
                        "rerun the same command to resume")


class Clock:
    """When to write: every `every_minutes`, every `every_steps`, or now, when a signal arrived."""

    def __init__(self, c: CheckpointConfig):
        self.c, self.last, self.signal = c, time.time(), None

    def due(self, step: int) -> bool:
        if self.signal is not None:
            return True
        if self.c.every_steps and step % self.c.every_steps == 0:
            return True
        return bool(self.c.every_minutes) and time.time() - self.last >= 60 * self.c.every_minutes

    def wrote(self) -> None:
        self.last = time.time()

    def agreed(self, step: int, s) -> bool:
        """Whether to write now, the same answer on every process (any process's reason counts)."""
        if not s.d.on:
            return self.due(step)
        from harness.train import dist

        due, stop = dist.sum_([float(self.due(step)), float(self.signal is not None)], s.d, s.device)
        if stop and self.signal is None:
            self.signal = "a signal to another process"
        return due > 0

    def __enter__(self) -> "Clock":
        self.previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _on_signal(self, signum, frame) -> None:
        self.signal, self.signum = signal.Signals(signum).name, signum

    def pass_on(self) -> None:
        """The checkpoint is written: let the handler that was there before act (e.g. submitit's requeue)."""
        before = self.previous.get(getattr(self, "signum", None))
        if callable(before) and before not in (signal.default_int_handler,):
            before(self.signum, None)
