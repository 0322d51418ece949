"""`harness-fit ... predict=FILE.csv`: ask the headline law what given models will reach (no fitting).

FILE.csv has columns N and D (N in the fit's convention) and optionally name. Each good row gets
prediction.json's layout (predicted, pi95 and the interval's parts, every form's answer); each bad
row is named in one line and left out, so one typo does not cost the other answers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import HarnessError

NAME = "predictions.json"


def read_rows(path: str) -> tuple[list[dict], list[str]]:
    """(good rows {name, N, D}, one problem line per bad row) of a predict= CSV."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise HarnessError(f"predict={path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise HarnessError(f"predict={path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("N", "D") if c not in df.columns]
    if missing:
        has = ", ".join(map(str, df.columns))
        raise HarnessError(f"predict={path}: missing column(s) {', '.join(missing)} (has: {has})")
    good, bad = [], []
    for i, row in df.iterrows():
        name = str(row["name"]) if "name" in df.columns and pd.notna(row["name"]) else f"row {i + 1}"
        vals = {k: pd.to_numeric(pd.Series([row[k]]), errors="coerce").iloc[0] for k in ("N", "D")}
        wrong = [f"{k}={row[k]!r}" for k, v in vals.items() if not (np.isfinite(v) and v > 0)]
        if wrong:
            bad.append(f"predict={path}: {name}: {', '.join(wrong)} must be a positive number")
        else:
            good.append({"cell_key": name, "N": float(vals["N"]), "D": float(vals["D"])})
    return good, bad


def answer_line(c: dict) -> str:
    """'name: N=…, D=… (+x dex beyond the fitted compute): loss 4.21 [4.17, 4.24]' (and a warning
    when the forms disagree there)."""
    line = (f"{c['cell_key']}: N={c['N']:.4g}, D={c['D']:.4g} ({c['projection_dex']:+.2f} dex beyond the fitted "
            f"compute): loss {c['predicted']:.4f}, 95 % interval [{c['pi95'][0]:.4f}, {c['pi95'][1]:.4f}]")
    if c.get("disagree"):
        others = "; ".join(f"{lab} {e['predicted']:.4f}" for lab, e in c["forms"].items() if lab in c["disagree"])
        line += f"; the forms disagree beyond their intervals here ({others}): no one number is trustworthy"
    return line
