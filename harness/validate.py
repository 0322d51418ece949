"""Every numeric setting's allowed range, in one place, checked before any work (torch-free).

`check(obj, table)` walks a schema dataclass (harness-train's `Config`, harness-fit's
`FitConfig`) and refuses the first number outside its range with one line naming the setting and
the range. The tables below hold one entry per numeric field; tests/test_validate.py walks the
schemas, so a new numeric option without a range fails the test suite rather than reaching a run.
Ranges say what can run; rules that tie fields together (heads dividing the width, one budget
kind) stay where they are computed (accounting.py, spec.py).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class Range:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded
    hi_open: bool = False
    why: str = ""  # shown after the range

    def holds(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def text(self) -> str:
        lo, hi = _show(self.lo), _show(self.hi)
        if self.hi is None:
            if self.lo == 0 and not self.lo_open:
                return "non-negative (>= 0)"
            if self.lo == 0 or self.lo == 1:
                return f"positive ({'>' if self.lo_open else '>='} {lo})"
            return f"{'>' if self.lo_open else '>='} {lo}"
        return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


POSITIVE, COUNT, NON_NEGATIVE = Range(0, lo_open=True), Range(1), Range(0)
FRACTION_OPEN = Range(0, 1, lo_open=True, hi_open=True)
SEED = Range(0, 2**32 - 1, why="numpy's generators take seeds below 2**32")

# harness-train (harness/config.py)
TRAIN = {
    "model.n_layer": COUNT, "model.n_embd": COUNT, "model.n_head": COUNT, "model.n_positions": COUNT,
    "model.n_inner": COUNT, "model.n_kv_head": COUNT,
    "data.max_docs": COUNT, "data.max_tokens": COUNT, "data.max_train_tokens": COUNT,
    "data.max_epochs": POSITIVE, "data.vocab_size": Range(
        257, 65535, why="byte-level BPE needs 256 bytes plus the end-of-text token; tokens are stored as uint16"),
    "data.val_fraction": FRACTION_OPEN, "data.val_tokens": COUNT,
    "optim.lr": POSITIVE, "optim.batch_tokens": COUNT, "optim.warmup_tokens": NON_NEGATIVE,
    "optim.min_lr_ratio": Range(0, 1), "optim.cooldown_fraction": Range(0, 1, lo_open=True),
    "optim.beta1": Range(0, 1, hi_open=True), "optim.beta2": Range(0, 1, hi_open=True), "optim.eps": POSITIVE,
    "optim.weight_decay": NON_NEGATIVE, "optim.grad_clip": POSITIVE, "optim.micro_batch_tokens": COUNT,
    "checkpoint.every_minutes": NON_NEGATIVE, "checkpoint.every_steps": COUNT, "distributed.nproc": COUNT,
    "budget.tokens": COUNT, "budget.tokens_per_param": POSITIVE, "budget.flops": POSITIVE,
    "seed": SEED, "evals": NON_NEGATIVE, "log_every": COUNT, "threads": COUNT,
    "branches": Range(0, 1, lo_open=True),  # each fraction of D
}

# harness-fit (harness/cli_fit.py)
FIT = {
    "n_bootstrap": NON_NEGATIVE, "seed": SEED, "holdout": NON_NEGATIVE, "budgets": POSITIVE,
    "drop_highest": NON_NEGATIVE, "budget_tol_dex": POSITIVE, "E": POSITIVE,
}


def numeric_fields(cls, prefix: str = ""):
    """(dotted key, is a list) of every int or float field under a schema dataclass, recursively."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t, key = hints[f.name], prefix + f.name
        if dataclasses.is_dataclass(t):
            yield from numeric_fields(t, key + ".")
            continue
        if typing.get_origin(t) is dict:  # a mapping's values are checked where it is read (data.mix: mixture.py)
            continue
        is_list = typing.get_origin(t) is list
        args = set(typing.get_args(t)) - {type(None)} if typing.get_args(t) else {t}
        if args & {int, float}:
            yield key, is_list


def check(obj, table: dict[str, Range]) -> None:
    """Refuse the first numeric field of `obj` outside its range (None means unset and passes)."""
    for key, is_list in numeric_fields(type(obj)):
        value = obj
        for part in key.split("."):
            value = getattr(value, part)
        allowed = table[key]  # a KeyError here: a new numeric option without a range (see the test)
        for v in (value if is_list else [value]):
            if v is not None and not allowed.holds(v):
                what = f"{key}={_show(value)}" + (f" (element {_show(v)})" if is_list else "")
                finite = "" if math.isfinite(v) else " and finite"
                why = f": {allowed.why}" if allowed.why else ""
                raise HarnessError(f"{what} must be {allowed.text()}{finite}{why}")


def _show(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(_show, v)) + "]"
    if isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 1e12:
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)
