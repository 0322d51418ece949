"""Where a run's counts and loss sit in a wandb run the harness did not make (harness-fit col_N= ...).

A spec is `config.KEY`, `summary.KEY`, or a bare KEY meaning the summary key, else the config key.
Dots after the first belong to KEY: `config.model.n_params` walks the nested config, while
`summary.eval/loss` is the one summary key `eval/loss` (a key that exists flat, dots and all, wins
over the walk). A spec left at its default is the harness's own summary key (store/counts.py); only
what is mapped is read elsewhere, and a count that follows from mapped ones (N_active from
N_nonembed, each C from its N and D) is derived from them, never taken from an unmapped key beside
them. So `col_loss=val/loss` (the default key spelt out) changes nothing.
"""

from __future__ import annotations

import math

# option suffix (col_<key>) -> the harness's summary key it replaces; the default spec of each is that key
KEYS = {"N": "N", "N_nonembed": "N_nonembed", "N_active": "N_active", "D": "D", "C": "C",
        "C_kaplan": "C_kaplan", "loss": "val/loss"}
DEFAULTS = {"N": "N", "N_nonembed": "N_nonembed", "N_active": "N_active", "D": "D", "C": "C",
            "C_kaplan": "C_kaplan", "loss": "loss"}
# A count that follows from others: unmapped while any of those is mapped, it is derived (counts.derive)
_DERIVED_FROM = {"N_active": ("N_nonembed",), "C": ("N", "D"), "C_kaplan": ("N_active", "N_nonembed", "D")}
_MISSING = object()


def given(columns: dict | None) -> dict | None:
    """{key: spec} of what the user mapped away from its default (the harness's own key), or None."""
    mapped = {k: v for k, v in (columns or {}).items() if v and v != DEFAULTS.get(k) and v != KEYS.get(k)}
    return mapped or None


def _lookup(tree: dict, key: str):
    node = tree.get(key, _MISSING)
    if node is not _MISSING or "." not in key:
        return node
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _find(spec: str, config: dict, summary: dict) -> tuple:
    """(value or _MISSING, a phrase naming where it was looked for)."""
    where, _, key = spec.partition(".")
    if where in ("config", "summary") and key:
        return _lookup(config if where == "config" else summary, key), f"{where} key {key!r}"
    value = _lookup(summary, spec)
    return (_lookup(config, spec) if value is _MISSING else value), f"summary or config key {spec!r}"


def _number(value) -> float:
    if isinstance(value, bool):  # float(True) is 1.0: a flag is not a count
        raise ValueError(value)
    return float(value)  # int, float, or a numeric string ("NaN" is how wandb.Api sends a NaN)


def apply(mapping: dict, config: dict, summary: dict) -> tuple[dict, str | None]:
    """(summary with each mapped quantity read where `mapping` says, why the run cannot be fitted).

    The reason names every mapped key the run lacks or holds as a non-number; None when all are
    there. D comes from C / (6 N) only when the user mapped C and not D."""
    problems = []

    def read(col: str) -> float:
        value, where = _find(mapping[col], config, summary)
        if value is _MISSING:
            problems.append(f"no {where} (col_{col}={mapping[col]})")
            return math.nan
        try:
            return _number(value)
        except (TypeError, ValueError):
            problems.append(f"{where} is {value!r}, not a number (col_{col}={mapping[col]})")
            return math.nan

    out = dict(summary)
    for col, sources in _DERIVED_FROM.items():  # derived from what is mapped, not read beside it
        if col not in mapping and any(s in mapping for s in sources):
            out.pop(KEYS[col], None)
    out.update({KEYS[col]: read(col) for col in mapping})
    if "C" in mapping and "D" not in mapping:
        N = out.get("N")
        out["D"] = out["C"] / (6 * N) if isinstance(N, (int, float)) and not isinstance(N, bool) else math.nan
    return out, ("; ".join(problems) or None)
