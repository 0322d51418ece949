"""A free GPU for each running job of a parallel sweep (torch-free).

`hydra/launcher=parallel hydra.launcher.n_jobs=8` on an 8-GPU box runs 8 cells at once in reused
worker processes; "job k on GPU k mod 8" would put a new job on a GPU whose earlier job is still
running. Instead each job takes the first GPU whose slot lock (an flock, released by the kernel
when its process dies) is free, holds it while it trains, and releases it after; with every GPU
busy it waits for one.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path


class Slot:
    def __init__(self, index: int, handle):
        self.index, self._handle = index, handle

    def release(self) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


def take(count: int, folder: Path | None = None, poll_s: float = 0.5) -> Slot:
    """The lowest-numbered free slot of `count` (one per GPU), waiting while all are held."""
    folder = folder or Path(tempfile.gettempdir()) / f"harness-gpus-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for i in range(count):
            handle = open(folder / f"gpu{i}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return Slot(i, handle)
        time.sleep(poll_s)
