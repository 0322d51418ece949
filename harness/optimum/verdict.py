"""Score a confirmation sweep against its pre-registered optimum (torch-free).

Three questions, one line each: is the optimum's loss inside its 95 % prediction interval; does the
IsoFLOP minimum through the three cells (a parabola in log N, Chinchilla approach 2's shape) lie
inside the N* interval; is the optimum's loss the lowest of the three or within noise of it (twice
the sd of a difference, from the noise the spacing was chosen against).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.errors import HarnessError


def read(out: Path) -> tuple[dict, dict]:
    try:
        return (json.loads((out / "optimum.json").read_text()), json.loads((out / "prediction.json").read_text()))
    except (OSError, ValueError) as e:
        raise HarnessError(f"confirm={out}: no readable optimum.json and prediction.json there "
                           f"({type(e).__name__}); harness-optimum writes them") from None


def measured(optimum: dict, results_dir: str | None = None) -> dict:
    """{cell_key: (mean loss, seeds)} of the confirmation cells that finished."""
    from harness.fit.collect import collect
    from harness.fit.points import fit_table

    conf = optimum["confirm"]
    sweep_dir = Path(results_dir or conf["results_dir"]) / conf["sweep"]
    if not sweep_dir.is_dir():
        return {}
    runs, _ = collect(str(sweep_dir))
    keys = {c["cell_key"] for c in conf["cells"]}
    runs = runs[runs["cell_key"].isin(keys)]
    if runs.empty:
        return {}
    table, _ = fit_table(runs, optimum["convention"]["N"])
    return {k: (float(v["loss"]), int(v.get("n_seeds", 1))) for k, v in table.set_index("cell_key").iterrows()}


def isoflop_minimum(N, L) -> float | None:
    """The minimum of the parabola in log N through the points (None if it opens downward)."""
    a, b, _ = np.polyfit(np.log(N), L, 2)
    return float(np.exp(-b / (2 * a))) if a > 0 else None


def score(optimum: dict, got: dict) -> dict:
    cells = optimum["confirm"]["cells"]
    missing = [c["model"] for c in cells if c["cell_key"] not in got]
    out = {"budget": optimum["budget"], "model": optimum["model"], "not_yet_run": missing, "cells": []}
    for c in cells:
        if c["cell_key"] in got:
            loss, seeds = got[c["cell_key"]]
            out["cells"].append({**c, "measured": loss, "seeds": seeds, "rel_error": c["predicted"] / loss - 1,
                                 "inside_pi95": c["pi95"][0] <= loss <= c["pi95"][1]})
    if missing:
        return out
    by = {c["role"]: c for c in out["cells"]}
    opt = by["optimum"]
    N = np.array([c["N"] for c in out["cells"]])
    L = np.array([c["measured"] for c in out["cells"]])
    n_min = isoflop_minimum(N, L)
    lo, hi = optimum["N_opt_ci95"] or [None, None]
    sd = optimum["confirm"]["spacing"]["noise_sd"]
    best = min(out["cells"], key=lambda c: c["measured"])
    margin = 2 * sd * np.sqrt(1 / opt["seeds"] + 1 / best["seeds"]) if best is not opt else 0.0
    out.update({
        "optimum_inside_pi95": opt["inside_pi95"],
        "isoflop_minimum_N": n_min, "N_opt_ci95": [lo, hi],
        "minimum_inside_N_interval": n_min is not None and lo is not None and lo <= n_min <= hi,
        "minimum_within_cells": n_min is not None and N.min() <= n_min <= N.max(),
        "lowest": best["role"], "optimum_gap": opt["measured"] - best["measured"], "noise_margin": margin,
        "optimum_lowest_or_within_noise": opt["measured"] - best["measured"] <= margin})
    return out


def lines(v: dict) -> list[str]:
    """The verdict as a person reads it."""
    if v["not_yet_run"]:
        return [f"not yet run: {', '.join(v['not_yet_run'])}"]
    opt = next(c for c in v["cells"] if c["role"] == "optimum")
    ok = {True: "yes", False: "NO"}
    n_min = v["isoflop_minimum_N"]
    lo, hi = v["N_opt_ci95"]
    where = ("the curve through them has no minimum (it is not convex)" if n_min is None else
             f"{n_min:,.0f}{'' if v['minimum_within_cells'] else ' (extrapolated beyond the three cells)'}")
    return [f"optimum's loss inside its 95 % interval: {ok[v['optimum_inside_pi95']]} (measured {opt['measured']:.4f}, "
            f"predicted {opt['predicted']:.4f} [{opt['pi95'][0]:.4f}, {opt['pi95'][1]:.4f}], {opt['seeds']} seeds)",
            f"IsoFLOP minimum inside the N* interval: {ok[v['minimum_inside_N_interval']]} (minimum through the three "
            f"cells at N = {where}; N* interval [{lo:,.0f}, {hi:,.0f}])",
            f"optimum the lowest or within noise of it: {ok[v['optimum_lowest_or_within_noise']]} (lowest: "
            f"{v['lowest']}, optimum {v['optimum_gap']:+.4f} nats from it, noise margin {v['noise_margin']:.4f})"]
