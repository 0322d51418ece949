"""Approach 2's interval: the wild bootstrap holds the designed sizes fixed and is calibrated where
resampling cells is not; the noise-floor simulation behind that claim (harness/fit/noisefloor.py)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.fit import isoflop as iso
from harness.fit import noisefloor
from harness.fit.law import predict

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28}  # a = beta / (alpha + beta) = 0.45


def design(n_sizes=5, budgets=(1e17, 2e17, 4e17, 8e17), spacing=1.5):
    """IsoFLOP grid: n_sizes per budget, spaced `spacing` in N around the truth's optimum."""
    G = (TRUTH["alpha"] * TRUTH["A"] / (TRUTH["beta"] * TRUTH["B"])) ** (1 / (TRUTH["alpha"] + TRUTH["beta"]))
    a = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    N, C = [], []
    for c in budgets:
        n_opt = G * (c / 6) ** a
        for k in range(n_sizes):
            N.append(n_opt * spacing ** (k - (n_sizes - 1) / 2))
            C.append(c)
    N, C = np.array(N), np.array(C)
    return N, C, predict(TRUTH, N, C / (6 * N))


def test_sd_of_D_is_linear_in_log_D_and_flat_beyond():
    sd = noisefloor.sd_of_D([1e5, 1e7, 1e7], [0.05, 0.004, 0.002])
    pooled = np.sqrt((0.004 ** 2 + 0.002 ** 2) / 2)
    assert sd(1e5) == pytest.approx(0.05) and sd(1e4) == pytest.approx(0.05)
    assert sd(1e7) == pytest.approx(pooled) and sd(1e9) == pytest.approx(pooled)
    assert sd(1e6) == pytest.approx((0.05 + pooled) / 2)  # halfway in log D
    with pytest.raises(ValueError):
        noisefloor.sd_of_D([], [])


def test_wild_bootstrap_of_exact_parabolas_has_no_spread():
    """Losses exactly parabolic in log N at each budget: every residual is 0, so every resample is the
    fit itself (resampling cells would still move the vertex wherever a resample drops a size)."""
    N, C, _ = design()
    x = np.log(N)
    x_opt = np.array([x[C == c].mean() for c in C]) + 0.1  # a vertex inside each budget's sizes
    L = 3.0 + 0.05 * (x - x_opt) ** 2
    a = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])  # the slope design() centres the sizes on
    s = iso.isoflop_wild_bootstrap(N, L, C, 200, seed=0)["a"]
    assert iso.isoflop(N, L, C)["a"] == pytest.approx(a)
    assert np.all(np.isfinite(s)) and np.allclose(s, a)


def test_wild_bootstrap_is_calibrated_where_resampling_cells_is_not():
    N, C, truth = design()
    out = noisefloor.simulate(truth, N, C, np.full(len(N), 0.01), n_draws=200, n_bootstrap=200, n_boot_draws=60)
    wild, case = out["estimators"]["wild"], out["estimators"]["case"]
    assert out["n_failed"] == 0 and wild["n_draws"] == case["n_draws"] == 60
    # a 95 % interval from 2-4 residual degrees of freedom per budget covers a little less: 88-90 %
    # over 300 draws at 5-7 sizes (the closing note of issue 13); resampling cells covers ~100 %
    assert wild["coverage"] >= 0.8
    assert 0.5 < wild["median_half_width"] / out["half_width_95"] < 2.0  # about the real spread of a
    assert case["median_half_width"] > 1.5 * wild["median_half_width"]  # resampling 5 sizes overstates it


def test_noise_floor_grows_with_noise():
    N, C, truth = design()
    quiet, loud = (noisefloor.simulate(truth, N, C, np.full(len(N), sd), n_draws=100, n_boot_draws=0)
                   for sd in (0.002, 0.02))
    assert quiet["a_noiseless"] == loud["a_noiseless"]
    assert 3 * quiet["half_width_95"] < loud["half_width_95"]
    assert abs(quiet["a_mean"] - quiet["a_noiseless"]) < quiet["half_width_95"]


def test_noise_floor_script_on_the_committed_study(tmp_path):
    out = tmp_path / "nf.json"
    r = subprocess.run([sys.executable, "scripts/noise_floor.py", "study=tiny", "results_dir=results",
                        f"out={out}", "n_draws=40", "seeds=results/noise_floor/tiny"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(out.read_text())
    fit = json.loads((ROOT / "results" / "tiny" / "fit.json").read_text())
    fitted = json.loads((ROOT / "results" / "tiny" / "prediction.json").read_text())["fitted_on"]
    assert got["study"]["ci95"] == fit["isoflop"]["ci95"]["a"] and got["n_cells"] == len(fitted)
    n_seeds = {c["cell_key"]: c["n_seeds"] for c in got["seeded_cells"]}  # the study's 2 seeds + 2 more
    assert set(n_seeds) <= set(fitted) and sorted(n_seeds.values()).count(3) == 5 and len(n_seeds) == 9
    measured, long_d = got["scenarios"]["measured"], got["scenarios"]["long-D"]
    assert measured["cell_sd_range"][1] > long_d["cell_sd_range"][1]  # plateau cells are noisier
    assert measured["half_width_95"] > long_d["half_width_95"]
    bad = subprocess.run([sys.executable, "scripts/noise_floor.py", "study=tiny", "results_dir=/nonexistent",
                          f"out={tmp_path / 'x.json'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "noise_floor: error:" in bad.stderr


def test_groups_get_their_own_approach_2():
    """Two ladders with one a and losses 0.3 nats apart: each group's approach 2 recovers a with a
    narrow interval; pooled, the offset lands in every parabola's residuals and widens it."""
    import pandas as pd

    from harness.fit import forms, groups

    N, C, truth = design()
    rng = np.random.default_rng(3)
    parts = [pd.DataFrame({"N": N, "D": C / (6 * N), "C": C, "arch": g,
                           "loss": truth + shift + 0.005 * rng.standard_normal(len(N))})
             for g, shift in (("gpt2", 0.3), ("llama", 0.0))]
    table = pd.concat(parts, ignore_index=True)
    out = groups.compare(table, "arch", forms.CHINCHILLA, 200)
    a = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    widths = []
    for g in ("gpt2", "llama"):
        iso_g = out["laws"][g]["isoflop"]
        lo, hi = iso_g["ci95"]
        assert iso_g["n_budgets"] == 4 and abs(iso_g["a"] - a) < 0.05 and lo < iso_g["a"] < hi
        widths.append(hi - lo)
    pooled = iso.isoflop_wild_bootstrap(table["N"], table["loss"], table["C"], 200)["a"]
    lo, hi = np.nanpercentile(pooled, [2.5, 97.5])
    assert hi - lo > 2 * max(widths)
