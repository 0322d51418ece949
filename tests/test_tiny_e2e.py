"""The README's main job end to end: train the tiny preset, read its wandb logs back, fit, check the law.

Slow tier (about 9 minutes on 2 cores); CI runs it with `python -m pytest -m slow`.
"""
import json

import numpy as np
import pytest

from harness.cli_fit import fit_main
from harness.collect import collect
from tests.conftest import cli

NOISE = 0.03  # allowed rise between neighbouring cells: a tiny model's seed-to-seed spread is ~0.02


@pytest.mark.slow
def test_tiny_preset_gives_a_real_scaling_law(tmp_path):
    results = tmp_path / "results"
    out = cli("harness-train", "-m", "sweep=tiny", f"results_dir={results}", cwd=tmp_path, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    runs, _ = collect(str(results / "tiny"))
    assert len(runs) >= 12 and set(runs["status"]) == {"finished"}
    assert runs["N_nonembed"].max() / runs["N_nonembed"].min() >= 10
    assert runs["D"].max() / runs["D"].min() >= 10

    runs["budget"] = runs["D"].round(-5)  # D is rounded to whole batches, which differ by size
    grid = runs.pivot_table(index="N_nonembed", columns="budget", values="loss")
    assert not grid.isna().any().any()
    assert (np.diff(grid.values, axis=0) < NOISE).all(), f"loss must fall with N at fixed D:\n{grid}"
    assert (np.diff(grid.values, axis=1) < NOISE).all(), f"loss must fall with D at fixed N:\n{grid}"

    assert fit_main([f"runs={results / 'tiny'}", f"out={tmp_path / 'fit'}", "n_convention=nonembed"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    reproduce = (tmp_path / "fit" / "report.md").read_text().split("```")[1].strip().splitlines()
    assert reproduce[0] == f"harness-train -m sweep=tiny results_dir={results}"
    assert reproduce[1].startswith(f"harness-fit runs={results / 'tiny'} ")
    head = fit["forms"][fit["model_choice"]["headline"]]  # the form with the lowest held-out rollout error
    exponents = [k for k in head["params"] if k.startswith(("alpha", "beta"))]
    for name in exponents:
        assert 0.05 < head["params"][name] < 1.5
        assert head["ci95"][name] is not None, f"{name} not identified by the headline form"
        assert head["ci95"][name][0] > 0, f"95% interval of {name} must exclude 0: {head['ci95'][name]}"
    assert all("mean_abs_rel_error" in s["rollout"] for s in fit["forms"].values())  # every form rolled out
    assert fit["backtest"]["n_holdout"] >= 2
    assert fit["backtest"]["max_abs_rel_error"] <= 0.05  # issue 5: fitted on the cheap runs, predict the dearest
