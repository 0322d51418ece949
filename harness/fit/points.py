"""Runs -> points: the finished runs of a runs table, N and C under one convention, seeds pooled.

`fit_table` is the one place a runs table (collect.py) becomes what the fitter reads. A point is a
cell: its runs that differ only in seed pooled into a mean loss, its seed spread (loss_std) and count
(n_seeds). A row that already pools seeds (a runs.csv written by harness-fit) pools again exactly,
so a study's runs.csv gives the points its directory gives. numpy/pandas only, no I/O.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.store import counts

# Columns of a point besides N and C (the convention's), in the order runs.csv writes them.
_FIRST = ("N_total", "N_nonembed", "N_active", "D", "C_6N", "C_kaplan")
_META = ("epochs", "schedule", "status", "U", "arch", "model")


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
    has = [name for name, (col, _, _) in counts.CONVENTIONS.items() if runs[col].notna().any()]
    if has:
        option = "col_N" if n_col == "N_total" else f"col_{n_col}"
        return (f"n_convention={n_convention}: no run carries {n_col} (a CSV column {n_col}, or for wandb "
                f"runs {option}=KEY); use n_convention={has[0]}")
    # No count at all: a mapped N that no run has (mapping.apply names it), or no mapping at all
    mapped = next((e for e in runs["error"] if isinstance(e, str) and "(col_N=" in e), None)
    return (f"no run carries N: {mapped}" if mapped else "no run carries N (N_total or N_nonembed); "
            "for runs the harness did not make, say where N is: col_N=config.KEY or summary.KEY")


def resolve_convention(runs, requested: str) -> str:
    """n_convention=auto: active when a finished run is a Mixture-of-Experts (fewer active than
    non-embedding parameters); nonembed when every finished run carries N_nonembed (the harness's own
    runs log it; Kaplan et al. 2020 fit that N); else total (a plain N, D, loss table)."""
    if requested != "auto":
        return requested  # fit_table checks it
    done = runs[runs["status"] == "finished"]
    if any(counts.is_moe(a, n) for a, n in zip(done["N_active"], done["N_nonembed"])):
        return "active"
    return "nonembed" if len(done) and (done["N_nonembed"] > 0).all() else "total"


def _pool(part: pd.DataFrame) -> tuple[float, float, int]:
    """(mean loss, sample sd, seeds) of rows that each pool n_seeds seeds with sd loss_std (a run: 1, NaN)."""
    n = part["n_seeds"].to_numpy(float)
    m = part["loss"].to_numpy(float)
    s = np.nan_to_num(part["loss_std"].to_numpy(float))  # a single seed has no spread of its own
    total = n.sum()
    mean = float((n * m).sum() / total)
    if total < 2:
        return mean, float("nan"), int(total)
    var = (((n - 1) * s ** 2).sum() + (n * (m - mean) ** 2).sum()) / (total - 1)
    return mean, float(np.sqrt(var)), int(total)


def fit_table(runs: pd.DataFrame, n_convention="total", drop_highest=0, schedule="all", group_by=None) -> tuple:
    """(fit table, excluded list): finished runs, one row per cell, seeds pooled.

    n_convention picks the count that is N and C = 6 N D to match (store/counts.py defines each;
    total and nonembed refuse MoE runs). drop_highest removes the k highest-loss points (Epoch's
    filter on the Chinchilla data removes 5). schedule keeps only runs trained with that LR schedule
    ("cosine" or "wsd"; "all" keeps every run). group_by names a column kept per row (runs of
    different groups are never pooled together)."""
    if group_by and group_by not in runs.columns:
        raise HarnessError(f"group_by={group_by!r} is not a run column (columns: {', '.join(runs.columns)})")
    if n_convention not in counts.CONVENTIONS:
        raise HarnessError(f"n_convention must be {', '.join(counts.CONVENTIONS)}, got {n_convention!r}")
    n_col, c_col, _ = counts.CONVENTIONS[n_convention]
    if len(runs) and runs[n_col].isna().all():
        raise HarnessError(_no_n_message(runs, n_convention, n_col))
    done = runs[runs["status"] == "finished"]
    moe = [r for r, a, n in zip(done["run_id"], done["N_active"], done["N_nonembed"]) if counts.is_moe(a, n)]
    if why := counts.refuse_moe(n_convention, moe):
        raise HarnessError(why)
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
    table = _points(ok, group_by)
    if drop_highest > 0:
        worst = table["loss"].nlargest(drop_highest).index
        excluded += [{"run_id": table.loc[i, "run_id"], "status": "finished",
                      "reason": f"drop_highest={drop_highest} (loss {table.loc[i, 'loss']:.4g})"}
                     for i in worst]
        table = table.drop(index=worst).reset_index(drop=True)
    if table.empty:
        raise HarnessError("no finished runs with valid N, D, C and loss to fit")
    return table, excluded


def _points(ok: pd.DataFrame, group_by: str | None) -> pd.DataFrame:
    """One row per cell. Seeds of one cell share its cell_key (the config without the seed); runs
    logged without one fall back to their (N, D, schedule, group). Rows are ordered by C, N and key,
    so every path to the same runs gives the same order (and the same bootstrap resamples)."""
    # (pandas 3 turns str(None) into NA, hence the plain-Python keys)
    nd = [f"{n:g}|{d:g}" for n, d in zip(ok["N"], ok["D"])]
    tag = ok[group_by].astype(str).tolist() if group_by else [""] * len(ok)
    keys = [k if isinstance(k, str) else f"{x}|{s}|{g}" for k, x, s, g in zip(ok["cell_key"], nd, ok["schedule"], tag)]
    cells = [c if isinstance(c, str) else x for c, x in zip(ok["cell_id"], nd)]
    ok = ok.assign(_key=keys, _cell=cells)
    extra = [group_by] if group_by and group_by not in _META else []
    rows = []
    for key, part in ok.groupby("_key", sort=False):
        first = part.iloc[0]
        loss, sd, n = _pool(part)
        rows.append({"cell": first["_cell"], "cell_key": key, "N": first["N"], "C": part["C"].mean(),
                     **{k: first[k] for k in _FIRST}, "loss": loss, "loss_std": sd, "n_seeds": n,
                     "epochs": part["epochs"].mean(), "run_id": ",".join(part["run_id"]),
                     **{k: first[k] for k in _META if k != "epochs"}, **{k: first[k] for k in extra}})
    if not rows:
        return pd.DataFrame(columns=["cell", "cell_key", "N", "C", *_FIRST, "loss", "loss_std", "n_seeds", "run_id",
                                     *_META])
    table = pd.DataFrame(rows)
    return table.sort_values(["C", "N", "cell_key"], kind="mergesort").reset_index(drop=True)
