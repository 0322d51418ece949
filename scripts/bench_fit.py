"""Benchmark: approach 3 plus a bootstrap on Epoch's 240 Chinchilla points.

Usage: python scripts/bench_fit.py [n_resamples]   (default 1000; target <= 10 s on 2 cores)
Writes results/bench/fit_<YYYY-MM-DD>.json with the time, machine and estimates next to
Besiroglu et al. (2024)'s published values and bootstrap SEs.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.fit import bootstrap, fit_parametric  # noqa: E402

CSV = ROOT.parent / "shared" / "reference" / "chinchilla_epoch.csv"
EPOCH = {"A": [482.01, 124.52], "B": [2085.43, 1293.28], "E": [1.8172, 0.02566],
         "alpha": [0.3478, 0.01540], "beta": [0.3658, 0.02060]}  # estimate, bootstrap SE


def main(n_resamples: int = 1000) -> dict:
    df = pd.read_csv(CSV)
    df = df[df["loss"] < sorted(df["loss"])[-5]]  # Epoch's filter: drop the 5 highest losses
    N = df["Model Size"].to_numpy(float)
    D = df["Training FLOP"].to_numpy(float) / (6 * N)
    L = df["loss"].to_numpy(float)
    t0 = time.perf_counter()
    fit = fit_parametric(N, D, L)
    t_fit = time.perf_counter() - t0
    bootstrap(fit, N, D, L, n_resamples=n_resamples, seed=0)
    total = time.perf_counter() - t0
    result = {
        "date": datetime.date.today().isoformat(), "seconds_total": total,
        "seconds_point_fit": t_fit, "seconds_bootstrap": total - t_fit,
        "n_points": len(L), "n_resamples": n_resamples, "n_failed": fit.n_boot_failed,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "scipy": scipy.__version__},
        "estimates": fit.params, "stderr": fit.stderr, "ci95": fit.ci95,
        "objective": fit.objective, "converged": fit.converged,
        "epoch_published": EPOCH,
        "method": "L-BFGS-B, analytic gradient, NNLS-seeded starts; bootstrap as multinomial "
                  "counts, each refit warm-started at the full-data optimum; one process",
    }
    out = ROOT / "results" / "bench" / f"fit_{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n_resamples} resamples in {total:.2f} s (point fit {t_fit:.3f} s) -> {out}")
    for k, (est, se) in EPOCH.items():
        print(f"  {k:5s} {fit.params[k]:10.4f} (SE {fit.stderr[k]:.4g})   "
              f"Epoch {est} (SE {se})")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
