"""A run's record on disk: the one module that writes and reads records (torch-free).

One layout for every record, a JSON file in its run directory:
  kind     "run"     summary.json of a training run or a WSD branch: a data point
           "trunk"   trunk.json of a WSD trunk (it carries the branches): not a data point
           "invalid" summary.json of a sweep cell that failed before it could start
  status   running | finished | diverged | failed   (`read` gives "unreadable" for anything else)
  cell_id, sweep, run_id (wandb), error, command (what trained it), config (resolved),
  summary  the flat numbers the fitter reads (N, D, C, val/loss, ...)
  env      how the numbers were computed (torch, device, threads, dtype); see `env_key`
  wandb_log_complete  True once the run's wandb log on disk ends in wandb's exit record

The rule the analysis side keeps (STYLE 23, "a record is true or absent"): a run's final loss comes
only from a complete record, `summary.json` with status finished (written after the final
evaluation, once the wandb log is whole) or a wandb log that ends in its exit record. Everything
else is excluded by name with its reason; nothing falls back to a partial log's last value.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

RUN, TRUNK = "summary.json", "trunk.json"
DONE = ("finished", "diverged")  # terminal: a rerun would repeat the same result
INVALID_PREFIX = "invalid-"


def now() -> str:
    """UTC time to the millisecond, as records and prediction.json write it (comparable as text)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def new(kind: str, *, cell_id: str, sweep: str, config: dict, summary: dict, env: dict | None = None,
        run_id: str | None = None, command: str | None = None, **extra) -> dict:
    return {"kind": kind, "status": "running", "started": now(), "cell_id": cell_id, "sweep": sweep, "run_id": run_id,
            "error": None, "command": command or os.environ.get("HARNESS_COMMAND"), "config": config,
            "summary": dict(summary), "env": env or {}, "wandb_log_complete": False, **extra}


def write(directory: Path, record: dict, name: str = RUN) -> None:
    """Atomic write: a SIGKILL leaves either the old file or the new one, never half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(directory / name)


# The layout `new` writes (older records lack some keys; none has another type). A record that is
# not this is "unreadable": named, never a data point, never "done", so its cell trains again.
STATUSES = ("running", "finished", "diverged", "failed")
UNREADABLE = "unreadable"
_TYPES = {"kind": str, "status": str, "cell_id": str, "sweep": str, "run_id": (str, type(None)),
          "error": (str, type(None)), "command": (str, type(None)), "config": dict, "summary": dict,
          "env": (dict, type(None)), "wandb_log_complete": bool, "branches": list, "started": str}


def read(directory: Path, name: str = RUN) -> dict | None:
    """The record at directory/name: None if there is none, a record of status "unreadable"
    (its error names the file and what is wrong) if it is not the layout this module writes."""
    path = directory / name
    try:
        rec = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return unreadable(path, f"is not valid JSON ({type(e).__name__})" if isinstance(e, ValueError)
                          else f"cannot be read ({e.strerror or type(e).__name__})")
    problem = layout_problem(rec, name)
    return unreadable(path, problem) if problem else rec


def layout_problem(rec, name: str = RUN) -> str | None:
    """What makes `rec` not a record this module wrote, or None."""
    if not isinstance(rec, dict):
        return f"holds a JSON {type(rec).__name__}, not a record object"
    for key, types in _TYPES.items():
        if key in rec and not isinstance(rec[key], types):
            return f"has {key} of type {type(rec[key]).__name__}"
    if rec.get("status") not in STATUSES:
        return f"has status {rec.get('status')!r}, not one of {', '.join(STATUSES)}"
    if name == RUN and "summary" not in rec:
        return "has no summary"
    kind = rec.get("kind", "run" if name == RUN else "trunk")
    if kind not in (("run", "invalid") if name == RUN else ("trunk",)):
        return f"has kind {kind!r} in a {name}"
    return None


def unreadable(path: Path, why: str) -> dict:
    return {"kind": "run" if path.name == RUN else "trunk", "status": UNREADABLE, "summary": {},
            "error": f"{path} {why}"}


def is_done(record: dict | None) -> bool:
    return bool(record) and record.get("status") in DONE


def sweep_status(sweep_dir: Path) -> dict[str, str]:
    """{cell_id: status} for every cell directory under a sweep (WSD cells by their trunk)."""
    out = {}
    for path in sorted(sweep_dir.glob("*")):
        rec = read(path, TRUNK) or read(path, RUN)
        if rec is not None:
            out[path.name] = rec.get("status", "unknown")
    return out


def wandb_log(directory: Path, run_id: str | None) -> Path | None:
    """The run's own offline log: the one named by its run id (a crashed attempt's is not it)."""
    pattern = f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb" if run_id else "wandb/offline-run-*/run-*.wandb"
    logs = sorted(directory.glob(pattern))
    return logs[-1] if logs else None


def env_key(env: dict | None) -> str:
    """What, besides the cell's identity, changes its loss. The rule: a cell's identity (its id)
    holds what the experiment is (model, data, optimizer, budget, seed); the environment that
    computes it (torch version, device model, CPU threads, dtype) changes the last digits of a
    loss (measured: threads 2 -> 1 moved a 60k-token smoke cell by 0.04 nats, a 3M-token tiny cell
    by < 0.005), so it is recorded with every run and checked: a sweep says when it skips a cell
    finished under another environment, and the fitter warns when one fit mixes environments."""
    if not env:
        return "unknown"
    return (f"torch {env.get('torch')} | {env.get('device_name')} | {env.get('threads')} threads | "
            f"{env.get('dtype')}")


def iter_records(root: Path):
    """(directory, record) for every data-point record under root, recursively, in path order."""
    for path in sorted(root.rglob(RUN)):
        rec = read(path.parent)
        if rec is not None and rec.get("kind", "run") == "run":  # unreadable ones too, to be named
            yield path.parent, rec
