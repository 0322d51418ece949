"""Numbers as report.md writes them: a value, its 95 % interval, a percentage."""
from __future__ import annotations

import math


def g(x, fmt=".4g") -> str:
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"  # an unbounded bootstrap interval
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def ci(ci95: dict, k: str) -> str:
    if k in ci95 and ci95[k] is None:
        return "not identified"
    return f"[{g(ci95[k][0])}, {g(ci95[k][1])}]" if k in ci95 else "–"


def pct(x) -> str:
    return "–" if x is None else f"{x:.2%}"
