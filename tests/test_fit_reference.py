"""Reproduce Besiroglu et al. (2024)'s Chinchilla approach-3 fit from their extracted data.

The data ship in tests/data (source, licence and sha256 in tests/data/README.md), so a missing
file fails these tests instead of skipping them. Tolerances come from the task (alpha, beta 0.003;
E 0.005; A, B 5 %); they are not tuned to this implementation."""

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.fit.allocate import compute_optimal
from harness.fit.law import bootstrap, fit_parametric

DATA = Path(__file__).resolve().parent / "data"
CSV = DATA / "chinchilla_epoch.csv"
EPOCH = {"A": 482.01, "B": 2085.43, "E": 1.8172, "alpha": 0.3478, "beta": 0.3658}
EPOCH_SE = {"A": 124.52, "B": 1293.28, "E": 0.02566, "alpha": 0.01540, "beta": 0.02060}
EPOCH_CI = {"A": (285.214, 743.626), "B": (1042.357, 5810.344), "E": (1.769, 1.871),
            "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}


def test_csv_matches_the_sha256_in_its_readme():
    """The README's provenance only holds for the exact upstream bytes."""
    readme = (DATA / "README.md").read_text()
    published = re.search(r"\*\*sha256:\*\* `([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256(CSV.read_bytes()).hexdigest() == published


@pytest.fixture(scope="module")
def points():
    df = pd.read_csv(CSV)
    df = df[df["loss"] < sorted(df["loss"])[-5]]  # Epoch's filter: drop the 5 highest losses
    N = df["Model Size"].to_numpy(float)
    D = df["Training FLOP"].to_numpy(float) / (6 * N)
    return N, D, df["loss"].to_numpy(float)


@pytest.fixture(scope="module")
def fit(points):
    return bootstrap(fit_parametric(*points), *points, n_resamples=1000, seed=0)


def test_240_points_after_epoch_filter(points):
    assert len(points[0]) == 240


def test_point_estimates_match_epoch(fit):
    assert fit.converged
    assert fit.alpha == pytest.approx(EPOCH["alpha"], abs=0.003)
    assert fit.beta == pytest.approx(EPOCH["beta"], abs=0.003)
    assert fit.E == pytest.approx(EPOCH["E"], abs=0.005)
    assert fit.A == pytest.approx(EPOCH["A"], rel=0.05)
    assert fit.B == pytest.approx(EPOCH["B"], rel=0.05)
    assert compute_optimal(**fit.params, C=1e22)["a"] == pytest.approx(0.513, abs=0.01)


def test_bootstrap_widths_similar_to_epoch(fit):
    """"Similar width": SEs and 95 % intervals within a factor 1.5 of Epoch's 4000-resample run
    (1000 resamples here, so the SE of an SE is a few per cent; B's is heavy-tailed)."""
    assert fit.n_boot_failed == 0
    for k, se in EPOCH_SE.items():
        assert 1 / 1.5 < fit.stderr[k] / se < 1.5, k
        lo, hi = fit.ci95[k]
        width = EPOCH_CI[k][1] - EPOCH_CI[k][0]
        assert 1 / 1.5 < (hi - lo) / width < 1.5, k
        assert lo < EPOCH[k] < hi
