"""`distributed.nproc=K` on one machine: this process holds the cell's lock and spawns K processes
that train the cell together (cell.run with each one's place), then reports their outcome.

Signals reach the workers: SIGTERM and SIGUSR1 (a checkpoint, then stop) and SIGINT are passed on;
the parent then reads what the main worker recorded. Under torchrun or srun the launcher has made
the processes already and this module is not used.
"""
from __future__ import annotations

import os
import signal
from typing import Callable

import torch.multiprocessing as mp

from harness.config import Config
from harness.errors import Diverged, HarnessError
from harness.store import records
from harness.store.lock import Busy, CellLock
from harness.train import checkpoint, dist
from harness.train.spec import Spec


def spawn(cfg: Config, spec: Spec, done: Callable, worker: Callable) -> dict:
    """`done(spec, name, env)`: the cell's record if it needs no training (cell._done); `worker(rank,
    cfg, world, errors)`: a top-level function that calls `serve` (spawn pickles it by name)."""
    _done = done
    check_devices(cfg.device, spec.world_size)
    name = records.TRUNK if spec.branches else records.RUN
    if (done := _done(spec, name, {})) is not None:
        return done
    try:
        lock = CellLock(spec.directory).acquire()
    except Busy as e:
        print(f"skip {spec.cell_id}: {e}")
        return {"status": "busy", "cell_id": spec.cell_id, "error": str(e)}
    with lock:
        if (done := _done(spec, name, {})) is not None:
            return done
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(dist.free_port())
        errors = mp.get_context("spawn").SimpleQueue()
        ctx = mp.spawn(worker, args=(cfg, spec.world_size, errors), nprocs=spec.world_size, join=False)
        pids = [p.pid for p in ctx.processes]
        handlers = {s: signal.signal(s, lambda signum, _: [_kill(p, signum) for p in pids])
                    for s in (*checkpoint.SIGNALS, signal.SIGINT)}
        try:
            while True:
                try:
                    if ctx.join():
                        break
                except mp.ProcessRaisedException:
                    break
                except mp.ProcessExitedException:
                    break
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            for p in ctx.processes:
                p.join()
        problems = []
        while not errors.empty():
            problems.append(errors.get())
    return _outcome(spec, name, problems)


def check_devices(device: str, world: int) -> None:
    """One process per GPU; on CPU no more processes than cores (each would wait for a core)."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    have = torch.cuda.device_count() if cuda else os.cpu_count() or 1
    if world > have:
        raise HarnessError(f"distributed.nproc={world} is more than the {have} {'GPUs' if cuda else 'CPU cores'} "
                           "here; lower it (on a cluster: hydra.launcher.gpus_per_node)")


def _outcome(spec: Spec, name: str, problems: list) -> dict:
    """The cell's record if it finished; else the first worker's error, raised as the worker raised it."""
    rec = records.read(spec.directory, name)
    if rec and rec["status"] == "finished":
        return rec
    kinds = {kind for _, kind, _ in problems}
    message = next((m for _, _, m in sorted(problems)), (rec or {}).get("error") or "a worker process died")
    for kind, exc in (("Preempted", checkpoint.Preempted), ("KeyboardInterrupt", KeyboardInterrupt),
                      ("Diverged", Diverged)):
        if kind in kinds:
            e = exc(message)
            break
    else:
        e = HarnessError(message)
    e.recorded = rec is not None
    raise e


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def serve(rank: int, world: int, errors, train: Callable[[], dict]) -> None:
    """One of the K processes: train the cell at this place; report an error by kind and message."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        train()
    except BaseException as e:  # noqa: BLE001  the parent raises it; a worker exits quietly
        harness = isinstance(e, HarnessError) and not isinstance(e, Diverged)
        errors.put((rank, "HarnessError" if harness else type(e).__name__,
                    str(e) if isinstance(e, (HarnessError, checkpoint.Preempted)) else f"{type(e).__name__}: {e}"))
    finally:
        dist.close()
