"""Sweep bookkeeping across launchers: failures that never reached a cell directory, and the final report.

Every launcher (sequential, joblib, submitit) writes to the same results_dir, so the report at the
end of a multirun reads statuses from disk rather than from one process's memory.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.config import Config, to_dict
from harness.store import lock, records


def record_invalid(cfg: Config, overrides: list[str], error: str) -> None:
    """A cell that failed before training started: keep a record the sweep report can find."""
    key = hashlib.sha256(" ".join(sorted(overrides)).encode()).hexdigest()[:8]
    directory = Path(cfg.results_dir) / cfg.sweep.name / f"{records.INVALID_PREFIX}{key}"
    record = records.new("invalid", cell_id=directory.name, sweep=cfg.sweep.name, config=to_dict(cfg),
                         summary={"status": "failed"}, overrides=overrides)
    record.update(status="failed", error=error)
    records.write(directory, record)


class SweepReport(Callback):
    """Prints each cell's status after a multirun; exits non-zero if any cell did not finish."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        for old in self._dir(config).glob(f"{records.INVALID_PREFIX}*"):  # re-recorded if still invalid
            shutil.rmtree(old, ignore_errors=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        # Hydra turns an exception raised here into a warning and exits 0: report every failure
        # ourselves, and exit non-zero when the report itself cannot be made.
        try:
            bad = self.report(self._dir(config), config.sweep.name)
        except Exception as e:  # noqa: BLE001
            print(f"harness-train: error: the sweep report failed: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)
        if bad:
            sys.exit(1)

    def report(self, sweep_dir: Path, name: str) -> int:
        """Print every cell's status; return how many did not finish (unreadable records count)."""
        self._wait_for_others(sweep_dir)
        statuses = records.sweep_status(sweep_dir)
        bad = {cid: s for cid, s in statuses.items() if s != "finished"}
        print(f"sweep {name}: {len(statuses) - len(bad)}/{len(statuses)} cells finished")
        for cid, status in bad.items():
            rec = records.read(sweep_dir / cid, records.TRUNK) or records.read(sweep_dir / cid) or {}
            print(f"  {status:9s} {cid}: {rec.get('error') or ''}".rstrip())
        return len(bad)

    @staticmethod
    def _wait_for_others(sweep_dir: Path) -> None:
        """Cells this sweep skipped because another process was training them: wait for those
        processes, so that when the command returns, every cell it covers has an outcome."""
        waited = True
        while waited:  # scan again after a wait: the other process may have started more cells meanwhile
            waited = False
            for cell in sorted(p.parent for p in sweep_dir.glob(f"*/{lock.NAME}")):
                if records.is_done(records.read(cell, records.TRUNK) or records.read(cell)):
                    continue
                print(f"sweep: waiting for {cell.name}: being trained by {lock.holder(cell / lock.NAME)}")
                lock.CellLock(cell).acquire(wait=True).release()  # a stale lock's file goes with it
                waited = True

    @staticmethod
    def _dir(config: DictConfig) -> Path:
        return Path(config.results_dir) / config.sweep.name
