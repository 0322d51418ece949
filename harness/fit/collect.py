"""Read runs back (sweep directory of wandb offline runs, wandb project, or CSV) into one table.

`collect` returns every record (finished or not) as a tidy table whose count columns are
store/counts.py's, whatever the source; points.fit_table makes the fitter's points of it.
Everything comes from each run's logged config and summary, never from a run name.
"""

from __future__ import annotations

import hashlib
import numbers
import re
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.fit import mapping
from harness.store import counts, records
from harness.store.wandb_log import exit_status, is_complete, read_wandb_log

RUN_COLUMNS = ["run_id", "cell_id", "cell_key", "sweep", "status", "error", *(c for c, _ in counts.COUNTS),
               "loss", "loss_std", "n_seeds", "epochs", "U", "seed", "schedule", "model", "arch", "command", "env",
               "source"]
# Summary keys cross-checked between summary.json and the wandb log.
_CHECK_KEYS = ("val/loss", "N", "D", "C")


def _record(summary: dict, *, run_id, status, error=None, cell_id=None, sweep=None, source="",
            command=None, env=None, extra=None):
    """One tidy row from the training side's flat summary dict (`extra`: a CSV's columns, kept as
    columns of the runs table where they are not one of its own, e.g. a group column)."""
    s = summary

    def num(key):
        v = s.get(key)
        return float(v) if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) else np.nan

    n_seeds = num("n_seeds")  # a run is one seed; a row of runs.csv says how many it pooled
    row = {"run_id": str(run_id), "cell_id": s.get("cell_id", cell_id), "cell_key": s.get("cell_key"),
            "sweep": s.get("sweep", sweep), "status": status, "error": error,
            **counts.derive({col: s.get(key) for col, key in counts.COUNTS}),
            "loss": num("val/loss"), "loss_std": num("loss_std"),
            "n_seeds": int(n_seeds) if np.isfinite(n_seeds) else 1,
            "epochs": num("epochs"), "U": num("unique_train_tokens"),
            "seed": s.get("seed"), "schedule": s.get("schedule"), "model": s.get("model"),
            "arch": s.get("arch"), "command": command,
            "env": records.env_key(env) if env else None, "source": str(source)}
    held = {k: (v if k == "data" else num(k)) for k, v in s.items() if k == "data" or DOMAIN_KEY.match(k)}
    return {**{k: v for k, v in {**(extra or {}), **held}.items() if k not in row and k not in _NOT_COLUMNS}, **row}


# A mixture run's per-domain held-out numbers (train/cell.py): columns of runs.csv beside `data`, its arm
DOMAIN_KEY = re.compile(r"(val/[a-z][a-z0-9_]*/(loss|bpb)|mix/[a-z][a-z0-9_]*/share)$")
_NOT_COLUMNS = {key for _, key in counts.COUNTS} | {"val/loss", "unique_train_tokens"}


def _cross_check(a: dict, b: dict, where: str, warnings: list) -> None:
    for k in _CHECK_KEYS:
        x, y = a.get(k), b.get(k)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            if not np.isclose(x, y, rtol=1e-6, equal_nan=True):
                warnings.append(f"{where}: {k} differs between wandb log ({x}) and "
                                f"summary.json ({y}); using the wandb log")


def _mapped(summary: dict, config, columns: dict | None, error) -> tuple[dict, str | None]:
    """The summary as the fitter reads it: N, D, loss where `columns` says (mapping.py), if given."""
    if columns is None:
        return summary, error
    summary, missing = mapping.apply(columns, dict(config or {}), summary)
    return summary, error or missing


def _from_record(run_dir: Path, meta: dict, warnings: list, columns=None) -> dict:
    """One row from a run's record; its loss only if the record is complete (records.py)."""
    summary = dict(meta.get("summary") or {})
    status = meta.get("status", "unknown")
    run_id = meta.get("run_id") or run_dir.name
    wb = records.wandb_log(run_dir, meta.get("run_id"))
    if status == "finished" and wb is not None:
        if is_complete(wb):
            _, wb_summary, _ = read_wandb_log(wb)
            _cross_check(wb_summary, summary, str(run_dir), warnings)
            summary = {**summary, **wb_summary}
        else:  # summary.json holds the trainer's own final numbers: the run stays, its log is not used
            warnings.append(f"{run_dir}: wandb log {wb.name} is incomplete (no exit record); "
                            "used summary.json, which the run completed")
    summary, error = _mapped(summary, meta.get("config"), columns, meta.get("error"))
    return _record(summary, run_id=run_id, status=status, error=error,
                   cell_id=meta.get("cell_id"), sweep=meta.get("sweep"), source=wb or run_dir / records.RUN,
                   command=meta.get("command"), env=meta.get("env"))


def _from_log(wb: Path, columns=None) -> dict:
    """A wandb log with no record beside it: a data point only if it ends in a clean exit."""
    run_id = wb.stem.removeprefix("run-")
    if not is_complete(wb):
        return _record({}, run_id=run_id, status="incomplete", source=wb,
                       error=f"wandb log {wb} has no exit record (truncated, or the run never ended)")
    config, summary, _ = read_wandb_log(wb)
    exit_code = exit_status(wb)
    status = summary.get("status", "finished") if exit_code == 0 else "failed"
    summary, error = _mapped(summary, config, columns,
                             None if exit_code == 0 else f"wandb run exited with code {exit_code}")
    return _record(summary, run_id=run_id, status=status, source=wb, error=error)


def read_directory(root: Path, warnings: list, columns=None) -> list[dict]:
    """Every run under a directory: records (summary.json) found recursively, and wandb logs
    that no record owns (runs logged by other training code; `columns` says where their N, D and
    loss are, mapping.py)."""
    rows, owned = [], set()
    for run_dir, meta in records.iter_records(root):
        owned.add(run_dir.resolve())
        rows.append(_from_record(run_dir, meta, warnings, columns))
    seen = set()
    for wb in sorted(root.rglob("run-*.wandb")):
        same = (wb.name, hashlib.sha1(wb.read_bytes()).hexdigest())  # one log byte for byte: read once
        if same in seen:  # wandb's `latest-run` link, or a copy of it as a folder (cp -r, copytree)
            continue
        seen.add(same)
        if not any(p in owned for p in wb.resolve().parents):  # a record's own logs (any attempt)
            rows.append(_from_log(wb, columns))
    return rows


def _as_dict(obj) -> dict:
    if hasattr(obj, "_json_dict"):  # wandb.Api's HTTPSummary keeps the raw dict here
        return dict(obj._json_dict)
    return dict(obj.items()) if hasattr(obj, "items") else dict(obj)


def read_wandb_project(path: str, api=None, group=None, sweep=None, columns=None) -> list[dict]:
    """Runs of a wandb project through wandb.Api (pass `api` to inject a recorded fake)."""
    if api is None:
        import wandb  # imported late: only this source needs it and it is slow to import

        api = wandb.Api()
    filters = {k: v for k, v in (("group", group), ("sweep", sweep)) if v}
    rows = []
    for run in api.runs(path, filters=filters or None):
        summary = _as_dict(run.summary)
        # A diverged run still ends in wandb state "finished"; the training side's own status in
        # the summary says which; any other wandb state (crashed, failed, running) wins.
        status = summary.get("status", "finished") if run.state == "finished" else run.state
        summary, error = _mapped(summary, run.config, columns, None)
        rows.append(_record(summary, run_id=run.id, status=status, error=error,
                            cell_id=summary.get("cell_id"), sweep=getattr(run, "group", None),
                            source=f"wandb:{path}/{run.id}"))
    return rows


# Each quantity's CSV column when not mapped: harness-fit's runs.csv names the counts as
# store/counts.py does; a plain table has N (taken as N_total), D or C, loss.
_CSV_OWN = {"N": ("N_total", "N"), "N_nonembed": ("N_nonembed",), "N_active": ("N_active",), "D": ("D",),
            "C": ("C_6N", "C"), "C_kaplan": ("C_kaplan",), "loss": ("loss",)}
_CSV_META = {"cell": "cell_id", "U": "unique_train_tokens"}  # runs.csv columns read under another key


def read_csv(path: Path, columns: dict) -> list[dict]:
    """A CSV table; columns maps N, D, C, loss (and N_nonembed, N_active, C_kaplan) to the file's
    column names (D or C needed). harness-fit's own runs.csv reads back whole: every count, the
    seeds a row pooled (n_seeds, loss_std), the cell keys and any group column."""
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # 0 bytes or blank lines: pandas finds not even a header
        raise HarnessError(f"CSV {path} is empty (no header, no rows)") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise HarnessError(f"cannot read CSV {path}: {exc}") from None
    if df.empty:
        raise HarnessError(f"CSV {path} has a header ({', '.join(map(str, df.columns))}) but no data rows")
    mapped = {k: v for k, v in (columns or {}).items() if v and v != mapping.DEFAULTS.get(k)}
    col = {k: mapped.get(k) or next((c for c in own if c in df.columns), own[-1]) for k, own in _CSV_OWN.items()}
    need = ["N", "loss"] + (["D"] if col["D"] in df.columns or "D" in mapped else ["C"])
    missing = [col[k] for k in need + [k for k in mapped if k not in need] if col[k] not in df.columns]
    if missing:
        raise HarnessError(f"CSV {path} lacks column(s) {missing} (has {list(df.columns)}); map names with "
                           "col_N=, col_D=, col_C=, col_loss= (and col_N_nonembed=, col_N_active=, col_C_kaplan=)")
    values = {k: pd.to_numeric(df[c], errors="coerce").to_numpy(float) for k, c in col.items() if c in df.columns}
    for k in need:
        bad = np.flatnonzero(~np.isfinite(values[k]) | (values[k] <= 0))
        if len(bad):
            raise HarnessError(f"CSV {path}: column {col[k]!r} has NaN or non-positive values "
                               f"(first at data row {bad[0] + 1})")
    if "D" not in need:
        values["D"] = values["C"] / (6 * values["N"])
    used = set(col.values()) | {"N", "C"}  # a runs.csv's N and C are its convention's: re-derived on reading
    rest = df[[c for c in df.columns if c not in used]]
    rows = []
    for i, known in enumerate(rest.to_dict("records")):
        summary = {_CSV_META.get(k, k): v for k, v in known.items()}
        summary.update({mapping.KEYS[k]: float(v[i]) for k, v in values.items()})
        rows.append(_record(summary, run_id=str(summary.pop("run_id", f"row{i + 1}")), status="finished",
                            source=path, extra=summary))
    return rows


def collect(source: str, *, columns=None, api=None, group=None, sweep=None) -> tuple:
    """(runs table, warnings) from a sweep directory, `wandb:ENTITY/PROJECT` or a CSV file.

    columns maps N, D, C, loss to CSV column names, or for wandb sources to `config.KEY`,
    `summary.KEY` or a bare key (mapping.py); left at the defaults, the harness's own keys."""
    warnings: list[str] = []
    wandb_columns = mapping.given(columns)  # None: the harness's own summary keys
    if source.startswith("wandb:"):
        rows = read_wandb_project(source.removeprefix("wandb:"), api, group, sweep, wandb_columns)
    else:
        path = Path(source)
        if path.is_dir():
            rows = read_directory(path, warnings, wandb_columns)
        elif path.is_file():
            rows = read_csv(path, columns or {})
        else:
            raise HarnessError(f"runs={source}: no such directory or file")
    if not rows:
        raise HarnessError(f"no runs found in {source}")
    extra = list(dict.fromkeys(k for r in rows for k in r if k not in RUN_COLUMNS))  # a CSV's group columns
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS + extra)
    envs = runs.loc[runs["status"] == "finished", "env"].dropna().value_counts()
    if len(envs) > 1:  # the environment is recorded, not part of a cell's identity (records.env_key)
        warnings.append("finished runs were computed in different environments (one cell's loss "
                        "differs between them): " + "; ".join(f"{n} under {e}" for e, n in envs.items()))
    return runs, warnings
