"""One process per sweep cell: an exclusive lock on `<cell>/.lock` (torch-free).

flock(2): on a local disk it excludes every other open of the file, in this process or another;
on NFS Linux implements it with POSIX locks (NLM, NFSv4), which the server makes cluster-wide, and
Lustre (mounted with `-o flock`) and GPFS do the same, so two SLURM tasks on different nodes
exclude each other.
The kernel (or the NFS server, when a node's lease expires) drops the lock of a process that dies,
even by SIGKILL, so a killed trainer never leaves a stale lock behind: the next process takes it.
The holder writes "host pid since" into the file so a waiting process can say who holds it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

from harness.errors import HarnessError

NAME = ".lock"


class Busy(HarnessError):
    """The cell is being trained by another live process (the message names it)."""


class CellLock:
    def __init__(self, directory: Path):
        self.path = Path(directory) / NAME
        self.fd: int | None = None

    def acquire(self, wait: bool = False) -> "CellLock":
        """Take the lock; raise Busy (wait=False) or block until it is free (wait=True)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    raise Busy(f"being trained by {holder(self.path)}") from None
                raise HarnessError(f"cannot lock {self.path}: {e.strerror} (the results filesystem "
                                   "must support flock(2), e.g. NFS with locking, Lustre with -o flock)") from None
            # The previous holder unlinks the file on release: if ours is no longer the file at
            # that path, we locked an orphan; start again on the current one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()  # while still locked, so nobody can be holding the new file
        except FileNotFoundError:
            pass
        os.close(self.fd)  # closing drops the lock
        self.fd = None

    def __enter__(self) -> "CellLock":
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


def is_held(directory: Path) -> bool:
    """True while a live process holds the cell's lock (probed by taking it for an instant)."""
    path = Path(directory) / NAME
    if not path.exists():
        return False
    try:
        CellLock(directory).acquire().release()
    except Busy:
        return True
    return False
