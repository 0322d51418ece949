"""A run's counts, defined once: every N, D and C a law can use, and what each n_convention means.

The trainer logs them (train/spec.py, Spec.flat) to summary.json and wandb; collect reads them back
from a record, a wandb log, wandb.Api, a mapping (col_<column>=KEY) or a CSV, into the columns below;
harness-fit writes them to runs.csv under the same names, so every path reads the same numbers.

  column      summary key  meaning
  N_total     N            every trainable parameter (an MoE: every expert)
  N_nonembed  N_nonembed   N_total less the token and position embeddings and an untied head
  N_active    N_active     the non-embedding parameters one token uses: an MoE's experts at top-k/E
                           (arch.counts); N_nonembed for a dense model
  D           D            training tokens
  C_6N        C            FLOPs spent: 6 x the parameters one token uses, embeddings included, x D
                           (Hoffmann et al. 2022); 6 N_total D for a dense model
  C_kaplan    C_kaplan     FLOPs spent without the embeddings: 6 N_active D (Kaplan et al. 2020)

Conventions: n_convention picks the count that is N, and C is then 6 N D, the compute spent:
  total     N = N_total,    C = C_6N     dense models only
  nonembed  N = N_nonembed, C = C_kaplan dense models only
  active    N = N_active,   C = C_kaplan any model; for a dense one the same as nonembed
An MoE's N_total and N_nonembed count experts a token skips, so 6 N D under them is not the compute
it spent: total and nonembed refuse MoE runs rather than label one number with another's formula.
"""
from __future__ import annotations

import math
import numbers

# (table column, summary key) for every count; the order runs.csv writes them in.
COUNTS = (("N_total", "N"), ("N_nonembed", "N_nonembed"), ("N_active", "N_active"), ("D", "D"),
          ("C_6N", "C"), ("C_kaplan", "C_kaplan"))
SUMMARY_KEY = dict(COUNTS)

# n_convention -> (column that is N, column that is C, C's formula as fit.json and the report print it)
CONVENTIONS = {"total": ("N_total", "C_6N", "C = 6 N D, N = every parameter (N_total)"),
               "nonembed": ("N_nonembed", "C_kaplan", "C = 6 N D, N = non-embedding parameters (Kaplan)"),
               "active": ("N_active", "C_kaplan",
                          "C = 6 N D, N = active non-embedding parameters (an MoE's experts at top-k/E)")}
DENSE_ONLY = ("total", "nonembed")


def derive(counts: dict) -> dict:
    """The counts with what follows from the others filled in: N_active of a dense run is its
    N_nonembed; each C is 6 x its count x D where the run did not log it. Values: float or NaN."""
    out = {k: _number(counts.get(k)) for k, _ in COUNTS}
    if not math.isfinite(out["N_active"]):
        out["N_active"] = out["N_nonembed"]
    if not math.isfinite(out["C_6N"]):
        out["C_6N"] = 6 * out["N_total"] * out["D"]
    if not math.isfinite(out["C_kaplan"]):
        out["C_kaplan"] = 6 * out["N_active"] * out["D"]
    return out


def is_moe(N_active, N_nonembed) -> bool:
    """A Mixture-of-Experts run or cell: fewer active than non-embedding parameters."""
    a, n = _number(N_active), _number(N_nonembed)
    return math.isfinite(a) and math.isfinite(n) and 0 < a < n


def refuse_moe(convention: str, moe_runs: list[str]) -> str | None:
    """Why `convention` cannot fit these runs (None when it can): total and nonembed count every
    expert of an MoE, so their 6 N D would not be the compute spent."""
    if convention not in DENSE_ONLY or not moe_runs:
        return None
    shown = ", ".join(moe_runs[:3]) + (f" and {len(moe_runs) - 3} more" if len(moe_runs) > 3 else "")
    return (f"n_convention={convention}: {shown} {'is an' if len(moe_runs) == 1 else 'are'} MoE run(s), whose "
            f"{CONVENTIONS[convention][0]} counts every expert, so 6 N D would not be the compute spent; "
            "use n_convention=active (N = active non-embedding parameters, C = 6 N D)")


def _number(v) -> float:
    """v as a float (numpy scalars included); NaN for anything that is not a number (a flag, a string)."""
    if not isinstance(v, numbers.Real) or type(v).__name__ in ("bool", "bool_"):
        return math.nan
    return float(v)
