"""`harness-fit ... predict=FILE.csv`: ask the headline law what given models will reach (no fitting).

FILE.csv has columns N and D (N in the fit's convention) and optionally name; with group_by, the
group column too, and each row is answered by its own group's law (prediction.by_group). Each good row gets
prediction.json's layout (predicted, pi95 and the interval's parts, every form's answer); each bad
row is named in one line and left out, so one typo does not cost the other answers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import HarnessError

NAME = "predictions.json"


def read_rows(path: str, group_by: str = "", groups=None) -> tuple[list[dict], list[str]]:
    """(good rows {name, N, D[, group]}, one problem line per bad row) of a predict= CSV. With
    group_by, each row names its group in that column, one of `groups` (the fit's; None: unchecked)."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise HarnessError(f"predict={path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise HarnessError(f"predict={path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("N", "D", *([group_by] if group_by else [])) if c not in df.columns]
    if missing:
        has = ", ".join(map(str, df.columns))
        why = f" (with group_by={group_by}, each row names its group's law)" if group_by in missing else ""
        raise HarnessError(f"predict={path}: missing column(s) {', '.join(missing)} (has: {has}){why}")
    known = None if groups is None else sorted(map(str, groups))
    good, bad = [], []
    for i, row in df.iterrows():
        name = str(row["name"]) if "name" in df.columns and pd.notna(row["name"]) else f"row {i + 1}"
        vals = {k: pd.to_numeric(pd.Series([row[k]]), errors="coerce").iloc[0] for k in ("N", "D")}
        wrong = [f"{k}={row[k]!r} must be a positive number" for k, v in vals.items() if not (np.isfinite(v) and v > 0)]
        group = str(row[group_by]) if group_by and pd.notna(row[group_by]) else ""
        if group_by and not group:
            wrong.append(f"no {group_by} (each row is answered by its own group's law)")
        elif group_by and known is not None and group not in known:
            wrong.append(f"{group_by}={group} is not a group of the runs ({', '.join(known)})")
        if wrong:
            bad.append(f"predict={path}: {name}: {'; '.join(wrong)}")
        else:
            good.append({"cell_key": name, "N": float(vals["N"]), "D": float(vals["D"]),
                         **({"group": group} if group_by else {})})
    return good, bad


def dex(x: float) -> str:
    """'+0.60 dex' with a sign, never '-0.00' for a cell a rounding error inside the fitted compute."""
    return f"{round(float(x), 2) + 0.0:+.2f} dex"


def where(c: dict) -> str:
    """'+0.30 dex outside the fitted design (N +0.30, D/N +0.12)', or '... beyond the fitted compute'
    for a prediction written before distances had parts."""
    if "distance_dex" not in c:
        return f"{dex(c['projection_dex'])} beyond the fitted compute"
    parts = ", ".join(f"{k} {dex(v)[:-4]}" for k, v in c["distance_parts"].items() if round(v, 2) > 0)
    return f"{dex(c['distance_dex'])} outside the fitted design" + (f" ({parts})" if parts else "")


def answer_line(c: dict) -> str:
    """'name: N=…, D=… (+x dex outside the fitted design (N +x)): loss 4.21 [4.17, 4.24]' (and a
    warning when the forms disagree there: the interval then covers them)."""
    who = f"{c['cell_key']} ({c['group']} law)" if c.get("group") else c["cell_key"]
    line = (f"{who}: N={c['N']:.4g}, D={c['D']:.4g} ({where(c)}): loss {c['predicted']:.4f}, "
            f"95 % interval [{c['pi95'][0]:.4f}, {c['pi95'][1]:.4f}]")
    if c.get("disagree"):
        others = "; ".join(f"{lab} {e['predicted']:.4f}" for lab, e in c["forms"].items() if lab in c["disagree"])
        line += f"; the forms disagree here ({others}): the interval is widened to cover them"
    return line


def unknown_groups(rows: list[dict], path: str, group_by: str, groups) -> tuple[list[dict], list[str]]:
    """(rows whose group is among the fit's `groups`, one line for each that is not)."""
    known = sorted(map(str, groups))
    bad = [f"predict={path}: {r['cell_key']}: {group_by}={r['group']} is not a group of the runs ({', '.join(known)})"
           for r in rows if r["group"] not in known]
    return [r for r in rows if r["group"] in known], bad
