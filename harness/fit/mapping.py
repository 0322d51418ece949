"""Where N, D, C and loss sit in a wandb run the harness did not make (harness-fit col_N= ...).

A spec is `config.KEY`, `summary.KEY`, or a bare KEY meaning the summary key, else the config key.
Dots after the first belong to KEY: `config.model.n_params` walks the nested config, while
`summary.eval/loss` is the one summary key `eval/loss` (a key that exists flat, dots and all, wins
over the walk). When every spec is its default (N, D, C, loss) there is no mapping, and the
collector reads the harness's own summary keys (N, N_nonembed, D, C, C_kaplan, val/loss) as before.
"""

from __future__ import annotations

import math

DEFAULTS = {"N": "N", "D": "D", "C": "C", "loss": "loss"}
# The quantities a mapping replaces; every other summary key (seed, cell_id, schedule, status...)
# passes through. N_nonembed and C_kaplan go: a mapped N is one count, taken as the total.
_REPLACED = ("N", "N_nonembed", "D", "C", "C_kaplan", "val/loss")
_MISSING = object()


def given(columns: dict | None) -> dict | None:
    """The full mapping when the user changed any default, else None."""
    full = {**DEFAULTS, **{k: v for k, v in (columns or {}).items() if v}}
    return None if full == DEFAULTS else full


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
    """(summary with N, D and val/loss read where `mapping` says, why the run cannot be fitted).

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

    N, loss = read("N"), read("loss")
    only_C = mapping["C"] != DEFAULTS["C"] and mapping["D"] == DEFAULTS["D"]
    D = read("C") / (6 * N) if only_C else read("D")
    out = {k: v for k, v in summary.items() if k not in _REPLACED}
    out.update({"N": N, "D": D, "val/loss": loss})
    return out, ("; ".join(problems) or None)
