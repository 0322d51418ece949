"""One wandb run per training run, plus its record (records.py) beside it, which `harness-fit` reads.

wandb's offline `.wandb` log holds config, history and summary; summary.json repeats config and
summary so a run's status is on disk from its first second and survives a SIGKILL. Only the
process holding the cell's lock (lock.py) creates a Tracker, so the wandb directory it clears
is a crashed attempt's, never a live one's.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from harness.config import WandbConfig
from harness.errors import Diverged
from harness.store import records


@dataclass(frozen=True)
class Destination:
    """Where a cell's runs are recorded: its wandb settings, its sweep (the wandb group) and the
    resolved config every record and wandb run carries."""

    wandb: WandbConfig
    sweep: str
    config: dict
    main: bool = True  # only the main process of a run across processes records and logs


class Tracker:
    """A run's record and wandb run. `resume` (a checkpoint's state) continues the run: the same
    wandb run id, a fresh log with every metric up to the checkpoint replayed, so the resumed run's
    log has each step once. On a process that is not the main one it records nothing."""

    def __init__(self, dest: Destination, directory: Path, cid: str, summary: dict, env: dict,
                 resume: dict | None = None):
        self.dir, self.t0, self.main = directory, time.time(), dest.main
        self.logged: list = list(resume["logged"]) if resume else []
        self.run, self.run_id = None, resume.get("run_id") if resume else None
        if not self.main:
            return
        shutil.rmtree(directory / "wandb", ignore_errors=True)  # a crashed attempt's partial log
        self.record = records.new("run", cell_id=cid, sweep=dest.sweep, config=dest.config, summary=summary, env=env)
        if dest.wandb.mode != "disabled":
            self.run = _init_wandb(dest, directory, cid, {**dest.config, "derived": summary, "env": env}, self.run_id)
            self.run_id = self.record["run_id"] = self.run.id
            for metrics, step in self.logged:
                self.run.log(metrics, step=step)
        records.write(directory, self.record)

    def log(self, metrics: dict, step: int) -> None:
        self.logged.append((metrics, step))
        if self.run is not None:
            self.run.log(metrics, step=step)

    def finish(self, status: str, summary: dict, error: str | None = None) -> dict:
        if not self.main:
            return {"status": status}
        s = self.record["summary"]
        s.update(summary)
        s.update(status=status, wall_s=round(time.time() - self.t0, 2))
        self.record.update(status=status, error=error)
        if self.run is not None:
            self.run.summary.update(s)
            log = self.run.settings.sync_file  # this run's .wandb log
            self.run.finish(exit_code=0 if status == "finished" else 1)
            self.record["wandb_log_complete"] = _wait_for_log(log)
        records.write(self.dir, self.record)
        return self.record

    def fail(self, e: BaseException) -> None:
        """Finish as diverged or failed and mark `e` so the sweep does not record it again."""
        e.recorded = True
        if not self.main:
            return
        status = "diverged" if isinstance(e, Diverged) else "failed"
        self.finish(status, {}, error=str(e) if status == "diverged" else f"{type(e).__name__}: {e}")


def restore(directory: Path) -> dict | None:
    """Rebuild a run's lost or unreadable record from its own complete wandb log (which holds the
    config, derived numbers, environment and final summary the record repeats) and write it; None
    when there is no complete log of a run that ended cleanly, so the run must train again."""
    from harness.store.wandb_log import exit_status, is_complete, read_wandb_log

    log = records.wandb_log(directory, None)
    if log is None or not is_complete(log) or exit_status(log) != 0:
        return None
    config, summary, _ = read_wandb_log(log)
    if summary.get("status") not in records.DONE or not isinstance(config.get("derived"), dict):
        return None
    env = config.pop("env", None)
    config.pop("derived")
    rec = records.new("run", cell_id=str(summary.get("cell_id")), sweep=str(config.get("sweep", {}).get("name")),
                      config=config, summary=summary, env=env if isinstance(env, dict) else None,
                      run_id=log.stem.removeprefix("run-"), rebuilt_from=str(log))
    rec.update(status=summary["status"], wandb_log_complete=True)
    records.write(directory, rec)
    return rec


def _wait_for_log(log: str, timeout_s: float = 60.0) -> bool:
    """summary.json says "finished" once the wandb log on disk is complete (or says it is not)."""
    from harness.store.wandb_log import wait_complete

    if wait_complete(log, timeout_s):
        return True
    print(f"warning: {log} still incomplete after {timeout_s:.0f} s; summary.json has the results")
    return False


def _init_wandb(dest: Destination, directory: Path, cid: str, config: dict, run_id: str | None = None):
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    settings = wandb.Settings(
        console="off", x_disable_stats=True, x_save_requirements=False,
        x_transaction_log_flush_interval=1.0)  # default 15 s: a killed run would leave an empty log
    return wandb.init(
        project=dest.wandb.project, entity=dest.wandb.entity, group=dest.sweep, name=cid,
        job_type="train", dir=str(directory), mode=dest.wandb.mode, config=config, id=run_id,
        resume="allow" if run_id else None,
        settings=settings, reinit="finish_previous")
