"""A sweep cell's identity, directory and status on disk (torch-free).

A cell's id hashes the parts of its resolved config that change the result, so reruns of a sweep
find the same directories; `summary.json` in the directory says whether the cell is done.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.config import Config, to_dict

# Fields that do not change what a run computes: excluded from its identity.
NOT_IDENTITY = ("results_dir", "wandb", "device", "threads", "log_every", "sweep", "compile")
DONE = ("finished", "diverged")  # terminal: a rerun would repeat the same result


def cell_id(cfg: Config, D: int) -> str:
    d = {k: v for k, v in to_dict(cfg).items() if k not in NOT_IDENTITY}
    d["data"] = {k: v for k, v in d["data"].items() if k != "cache_dir"}
    digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.model.name}_D{D:.3g}_s{cfg.seed}_{digest}".replace("+", "")


def seedless_key(cfg: Config, D: int) -> str:
    """The cell a run belongs to across seeds: the fitter averages runs that share it."""
    import dataclasses

    return cell_id(dataclasses.replace(cfg, seed=0), D).replace("_s0_", "_")


def run_dir(cfg: Config, cid: str) -> Path:
    return Path(cfg.results_dir) / cfg.sweep.name / cid


def read_summary(directory: Path) -> dict | None:
    path = directory / "summary.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_summary(directory: Path, record: dict, name: str = "summary.json") -> None:
    """Atomic write: a SIGKILL leaves either the old file or the new one, never half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(directory / name)


def sweep_status(sweep_dir: Path) -> dict[str, str]:
    """{cell_id: status} for every cell directory under a sweep."""
    out = {}
    for path in sorted(sweep_dir.glob("*/summary.json")):
        rec = read_summary(path.parent) or {}
        out[path.parent.name] = rec.get("status", "unknown")
    return out
