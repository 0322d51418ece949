"""Did a rerun reproduce a reference study? Per-cell loss differences and the two laws side by side.

`harness-fit ... compare=results/tiny` reads the reference's run records and its fit.json (cli_fit
does the I/O); this module only compares (pandas/numpy, no I/O). Cells are matched by cell id,
which hashes everything that defines a cell (spec.cell_id), so a match is the same experiment.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _law(fit: dict) -> dict:
    """The headline law of a fit.json (or its Chinchilla section, for one written before forms)."""
    if "model_choice" in fit:
        label = fit["model_choice"]["headline"]
        sec = fit["forms"][label]
        return {"form": label, "params": sec["params"], "ci95": sec["ci95"]}
    p = fit.get("parametric") or {}
    return {"form": "chinchilla", "params": {k: p.get(k) for k in ("E", "A", "B", "alpha", "beta")},
            "ci95": p.get("ci95", {})}


def _allocation(fit: dict) -> dict:
    co = fit.get("compute_optimal") or {}
    return {"a": co.get("a"), "a_ci95": (co.get("ci95") or {}).get("a")}


def compare(table: pd.DataFrame, results: dict, ref_table: pd.DataFrame, ref_fit: dict,
            envs: tuple[list, list] = ((), ())) -> dict:
    """Per-cell |loss - reference loss| for cells in both, the cells only in one, both laws and a."""
    new = table.set_index("cell")["loss"]
    ref = ref_table.set_index("cell")["loss"]
    both = new.index.intersection(ref.index)
    diff = (new[both] - ref[both]).astype(float)
    cells = [{"cell": c, "loss": float(new[c]), "reference": float(ref[c]), "diff": float(diff[c])}
             for c in sorted(both, key=lambda c: -abs(diff[c]))]
    return {
        "n_matched": int(len(both)), "only_new": sorted(set(new.index) - set(both)),
        "only_reference": sorted(set(ref.index) - set(both)),
        "max_abs_diff": float(np.abs(diff).max()) if len(both) else None,
        "mean_abs_diff": float(np.abs(diff).mean()) if len(both) else None,
        "n_identical": int((diff == 0).sum()), "cells": cells,
        "environments": {"new": sorted({e for e in envs[0] if isinstance(e, str)}) or ["not recorded"],
                         "reference": sorted({e for e in envs[1] if isinstance(e, str)}) or ["not recorded"]},
        "laws": {"new": {**_law(results), **_allocation(results)},
                 "reference": {**_law(ref_fit), **_allocation(ref_fit)}},
    }
