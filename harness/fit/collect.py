"""Read runs back (sweep directory of wandb offline runs, wandb project, or CSV) into one table.

`collect` returns every record (finished or not) as a tidy table; `fit_table` keeps finished
runs, picks the N/C convention and averages repeated seeds of one cell, keeping their spread.
Everything comes from each run's logged config and summary, never from a run name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.fit import mapping
from harness.store import records
from harness.store.wandb_log import exit_status, is_complete, read_wandb_log

RUN_COLUMNS = ["run_id", "cell_id", "cell_key", "sweep", "status", "error", "N_total", "N_nonembed", "N_active", "D",
               "C", "C_kaplan", "loss", "epochs", "U", "seed", "schedule", "model", "arch", "command", "env",
               "source"]
# Summary keys cross-checked between summary.json and the wandb log.
_CHECK_KEYS = ("val/loss", "N", "D", "C")


def _record(summary: dict, *, run_id, status, error=None, cell_id=None, sweep=None, source="",
            command=None, env=None):
    """One tidy row from the training side's flat summary dict."""
    s = summary

    def num(key):
        v = s.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan

    N, N_ne, D = num("N"), num("N_nonembed"), num("D")
    C = num("C") if np.isfinite(num("C")) else 6 * N * D
    C_k = num("C_kaplan") if np.isfinite(num("C_kaplan")) else 6 * N_ne * D
    return {"run_id": str(run_id), "cell_id": s.get("cell_id", cell_id), "cell_key": s.get("cell_key"),
            "sweep": s.get("sweep", sweep), "status": status, "error": error,
            "N_total": N, "N_nonembed": N_ne, "N_active": num("N_active") if "N_active" in s else N_ne, "D": D,
            "C": C, "C_kaplan": C_k,
            "loss": num("val/loss"), "epochs": num("epochs"), "U": num("unique_train_tokens"),
            "seed": s.get("seed"), "schedule": s.get("schedule"), "model": s.get("model"),
            "arch": s.get("arch"), "command": command,
            "env": records.env_key(env) if env else None, "source": str(source)}


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
    for wb in sorted(root.rglob("run-*.wandb")):
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


def read_csv(path: Path, columns: dict) -> list[dict]:
    """A CSV table; columns maps N, D, C, loss to the file's column names (D or C needed)."""
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # 0 bytes or blank lines: pandas finds not even a header
        raise HarnessError(f"CSV {path} is empty (no header, no rows)") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise HarnessError(f"cannot read CSV {path}: {exc}") from None
    if df.empty:
        raise HarnessError(f"CSV {path} has a header ({', '.join(map(str, df.columns))}) but no data rows")
    col = {k: columns.get(k) or k for k in ("N", "D", "C", "loss")}
    need = ["N", "loss"] + (["D"] if col["D"] in df.columns else ["C"])
    missing = [col[k] for k in need if col[k] not in df.columns]
    if missing:
        raise HarnessError(f"CSV {path} lacks column(s) {missing} (has {list(df.columns)}); "
                           "map names with col_N=, col_D=, col_C=, col_loss=")
    for k in need:
        x = pd.to_numeric(df[col[k]], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(x) | (x <= 0))
        if len(bad):
            raise HarnessError(f"CSV {path}: column {col[k]!r} has NaN or non-positive values "
                               f"(first at data row {bad[0] + 1})")
    N = df[col["N"]].to_numpy(float)
    D = df[col["D"]].to_numpy(float) if "D" in need else df[col["C"]].to_numpy(float) / (6 * N)
    # harness-fit's own runs.csv also carries both N conventions, epochs and the schedule
    extra = df[[k for k in ("N_total", "N_nonembed", "epochs", "schedule", "U", "arch", "model") if k in df.columns]]
    rows = []
    for i, known in enumerate(extra.to_dict("records")):
        summary = {**known, "D": D[i], "val/loss": float(df[col["loss"]].iloc[i])}
        if "U" in summary:
            summary["unique_train_tokens"] = summary.pop("U")
        summary["N"] = summary.pop("N_total", N[i])
        summary["C"] = 6 * summary["N"] * D[i]
        rows.append(_record(summary, run_id=f"row{i + 1}", status="finished", source=path))
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
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    envs = runs.loc[runs["status"] == "finished", "env"].dropna().value_counts()
    if len(envs) > 1:  # the environment is recorded, not part of a cell's identity (records.env_key)
        warnings.append("finished runs were computed in different environments (one cell's loss "
                        "differs between them): " + "; ".join(f"{n} under {e}" for e, n in envs.items()))
    return runs, warnings


def _exclusion_reason(row, n_col: str, c_col: str) -> str | None:
    # pandas 3 stores a missing error as NaN (truthy), hence the isinstance
    why = f": {row['error']}" if isinstance(row["error"], str) and row["error"] else ""
    if row["status"] != "finished":
        return f"status {row['status']}{why}"
    for k in (n_col, "D", c_col, "loss"):
        v = row[k]
        if not (np.isfinite(v) and v > 0):  # a finished run's error names a missing mapped key
            return f"finished but {k} is missing, NaN or non-positive{why}"
    return None


def _no_n_message(runs: pd.DataFrame, n_convention: str, n_col: str) -> str:
    """Why no run has the N the convention needs, and what to pass instead."""
    other, other_col = ("total", "N_total") if n_convention == "nonembed" else ("nonembed", "N_nonembed")
    if runs[other_col].notna().any():
        hint = " (a CSV needs an N_nonembed column for nonembed)" if n_convention == "nonembed" else ""
        return f"n_convention={n_convention}: no run carries {n_col}{hint}; use n_convention={other}"
    # Neither convention: a mapped N that no run has (mapping.apply names it), or no mapping at all
    mapped = next((e for e in runs["error"] if isinstance(e, str) and "(col_N=" in e), None)
    return (f"no run carries N: {mapped}" if mapped else "no run carries N (N_total or N_nonembed); "
            "for runs the harness did not make, say where N is: col_N=config.KEY or summary.KEY")


def fit_table(runs: pd.DataFrame, n_convention="total", drop_highest=0, schedule="all", group_by=None) -> tuple:
    """(fit table, excluded list): finished runs, one row per cell, seeds averaged.

    n_convention picks N = total or non-embedding params and C from the matching column
    (C = 6 N D, or Kaplan's 6 N_nonembed D). drop_highest removes the k highest-loss points
    (Epoch's filter on the Chinchilla data removes 5). schedule keeps only runs trained with
    that LR schedule ("cosine" or "wsd"; "all" keeps every run). group_by names a column kept
    per row (runs of different groups are never averaged together)."""
    if group_by and group_by not in runs.columns:
        raise HarnessError(f"group_by={group_by!r} is not a run column (columns: {', '.join(runs.columns)})")
    if n_convention not in ("total", "nonembed", "active"):
        raise HarnessError(f"n_convention must be total, nonembed or active, got {n_convention!r}")
    # active: an MoE's active non-embedding parameters, whose 6 N D is the logged C_kaplan (compute per token)
    n_col, c_col = {"total": ("N_total", "C"), "nonembed": ("N_nonembed", "C_kaplan"),
                    "active": ("N_active", "C_kaplan")}[n_convention]
    if len(runs) and runs[n_col].isna().all():
        raise HarnessError(_no_n_message(runs, n_convention, n_col))
    if schedule != "all":
        if schedule not in ("cosine", "wsd"):
            raise HarnessError(f"schedule must be all, cosine or wsd, got {schedule!r}")
        runs = runs[runs["schedule"] == schedule]
    # A plain list: DataFrame.apply would turn the None of good rows into NaN.
    reasons = [_exclusion_reason(row, n_col, c_col) for _, row in runs.iterrows()]
    excluded = [{"run_id": r.run_id, "status": r.status, "reason": why}
                for r, why in zip(runs.itertuples(), reasons) if why]
    ok = runs[[why is None for why in reasons]].copy()
    ok["N"], ok["C"] = ok[n_col], ok[c_col]
    # Seeds of one cell share its cell_key (the config without the seed); runs logged without one
    # fall back to their (N, D, schedule).
    # (pandas 3 turns str(None) into NA, hence the plain-Python keys)
    nd = [f"{n:g}|{d:g}" for n, d in zip(ok["N"], ok["D"])]
    tag = ok[group_by].astype(str).tolist() if group_by else [""] * len(ok)
    key = [k if isinstance(k, str) else f"{x}|{s}|{g}" for k, x, s, g in zip(ok["cell_key"], nd, ok["schedule"], tag)]
    ok["cell"] = [c if isinstance(c, str) else x for c, x in zip(ok["cell_id"], nd)]
    ok["key"] = key
    table = ok.groupby(key, sort=False).agg(
        cell=("cell", "first"), cell_key=("key", "first"),
        N=("N", "first"), N_total=("N_total", "first"), N_nonembed=("N_nonembed", "first"),
        D=("D", "first"), C=("C", "mean"), loss=("loss", "mean"), loss_std=("loss", "std"),
        n_seeds=("loss", "size"), epochs=("epochs", "mean"), schedule=("schedule", "first"),
        run_id=("run_id", lambda s: ",".join(s)), status=("status", "first"), U=("U", "first"),
        arch=("arch", "first"), model=("model", "first"),
        **({group_by: (group_by, "first")} if group_by and group_by not in ("arch", "model", "schedule") else {}))
    table = table.reset_index(drop=True).sort_values(["C", "N"]).reset_index(drop=True)
    if drop_highest > 0:
        worst = table["loss"].nlargest(drop_highest).index
        excluded += [{"run_id": table.loc[i, "run_id"], "status": "finished",
                      "reason": f"drop_highest={drop_highest} (loss {table.loc[i, 'loss']:.4g})"}
                     for i in worst]
        table = table.drop(index=worst).reset_index(drop=True)
    if table.empty:
        raise HarnessError("no finished runs with valid N, D, C and loss to fit")
    return table, excluded
