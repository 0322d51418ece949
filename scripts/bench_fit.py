"""Benchmark: `harness-fit` end to end (every form and approach, 1000 bootstrap refits each,
rollouts, report, figures; start-up included) on the committed tiny study and on Epoch's 240
Chinchilla points, plus the approach-3 fit alone next to Epoch's published values.

Usage: python scripts/bench_fit.py     (target: each end-to-end run <= 10 s on 2 cores)
Writes results/bench/fit_<YYYY-MM-DD>.json. Run it on a quiet machine.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "tests" / "data" / "chinchilla_epoch.csv"  # provenance: tests/data/README.md
EPOCH = {"A": [482.01, 124.52], "B": [2085.43, 1293.28], "E": [1.8172, 0.02566],
         "alpha": [0.3478, 0.01540], "beta": [0.3658, 0.02060]}  # estimate, bootstrap SE
RUNS = {"tiny": [f"runs={ROOT / 'results' / 'tiny'}"],
        "epoch": [f"runs={CSV}", "col_N=Model Size", "col_C=Training FLOP", "drop_highest=5", "n_convention=total"]}


def end_to_end(args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "harness.cli_fit", *args, f"out={out}"],
                              capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        fit = json.loads((Path(out) / "fit.json").read_text())
    choice = fit["model_choice"]
    return {"seconds": round(seconds, 2), "n_points": fit["n_points"], "headline": choice["headline"],
            "ranking": [{k: r[k] for k in ("form", "rollout_mean_abs_rel_error", "bic")} for r in choice["ranking"]],
            "fit_seconds_in_process": round(fit["provenance"]["fit_seconds"], 2)}


def approach3() -> dict:
    from harness.fit.law import bootstrap, fit_parametric

    df = pd.read_csv(CSV)
    df = df[df["loss"] < sorted(df["loss"])[-5]]  # Epoch's filter: drop the 5 highest losses
    N = df["Model Size"].to_numpy(float)
    D = df["Training FLOP"].to_numpy(float) / (6 * N)
    L = df["loss"].to_numpy(float)
    t0 = time.perf_counter()
    fit = fit_parametric(N, D, L)
    t_fit = time.perf_counter() - t0
    bootstrap(fit, N, D, L, n_resamples=1000, seed=0)
    return {"seconds_point_fit": round(t_fit, 3), "seconds_with_1000_bootstrap": round(time.perf_counter() - t0, 2),
            "n_failed": fit.n_boot_failed, "estimates": fit.params, "stderr": fit.stderr, "ci95": fit.ci95,
            "objective": fit.objective, "converged": fit.converged, "epoch_published": EPOCH}


def main() -> dict:
    sys.path.insert(0, str(ROOT))
    result = {"date": datetime.date.today().isoformat(),
              "end_to_end": {name: end_to_end(args) for name, args in RUNS.items()},
              "approach3_epoch": approach3(),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__},
              "method": "batched IRLS Levenberg-Marquardt (all starts / all resamples at once, numpy), "
                        "L-BFGS-B polish of the point fit; one process"}
    out = ROOT / "results" / "bench" / f"fit_{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in result["end_to_end"].items():
        print(f"harness-fit {name}: {r['seconds']:.2f} s end to end ({r['n_points']} points, headline {r['headline']})")
    a3 = result["approach3_epoch"]
    print(f"approach 3 + 1000 bootstrap on Epoch's points: {a3['seconds_with_1000_bootstrap']:.2f} s")
    for k, (est, se) in EPOCH.items():
        print(f"  {k:5s} {a3['estimates'][k]:10.4f} (SE {a3['stderr'][k]:.4g})   Epoch {est} (SE {se})")
    print(f"-> {out}")
    return result


if __name__ == "__main__":
    main()
