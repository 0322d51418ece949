"""The README's main command end to end: the tiny study from scratch, its pre-registered prediction
scored, and the comparison with the committed reference in results/tiny.

Slow tier (about 13 minutes on 2 cores); CI runs it with `python -m pytest -m slow`. It asserts the
study's structure (an IsoFLOP design that approach 2 can use, a prediction written before its
check and then scored, every cell matched with the reference); the numbers themselves are in
results/tiny and the README, with what they measured.
"""
import json

import pytest

from harness.fit.collect import collect
from harness.store import records
from tests.conftest import ROOT, cli


@pytest.mark.slow
def test_tiny_study_predicts_before_it_checks_and_matches_the_reference(tmp_path):
    results = tmp_path / "results"
    out = cli("harness-study", "study=tiny", f"results_dir={results}", f"compare={ROOT / 'results' / 'tiny'}",
              cwd=tmp_path, timeout=2400)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = results / "tiny"
    runs, _ = collect(str(sweep))
    assert set(runs["status"]) == {"finished"}
    fit = json.loads((sweep / "fit.json").read_text())

    iso = fit["isoflop"]  # approach 2 active on >= 4 budgets of >= 5 sizes, minima inside them
    assert len(iso["budgets"]) >= 4 and all(b["n_points"] >= 5 for b in iso["budgets"])
    a2, a3 = iso["a"], fit["compute_optimal"]["a"]  # approaches 2 and 3 agree within their 95 % CIs
    (lo2, hi2), (lo3, hi3) = iso["ci95"]["a"], fit["compute_optimal"]["ci95"]["a"]
    assert lo3 <= a2 <= hi3 and lo2 <= a3 <= hi2, (a2, iso["ci95"]["a"], a3, fit["compute_optimal"]["ci95"]["a"])
    assert fit["seed_noise"]["n_cells"] >= 4

    pred = json.loads((sweep / "prediction.json").read_text())
    held = {c["cell_key"] for c in pred["cells"]}
    assert len(held) >= 2 and not held & set(pred["fitted_on"])
    starts = [rec["started"] for _, rec in records.iter_records(sweep) if rec["summary"]["cell_key"] in held]
    assert len(starts) == len(held) and pred["created"] < min(starts)  # written before they ran
    fitted_c = max(r.C_kaplan for r in runs.itertuples() if r.cell_key in set(pred["fitted_on"]))
    assert all(c["C"] >= 3.9 * fitted_c for c in pred["cells"])  # at >= 4x the largest fitted compute
    score = fit["prediction_score"]
    assert {c["cell_key"] for c in score["cells"]} == held and not score["not_yet_run"]

    cmp = fit["comparison"]  # every cell is also in the committed study: same cell ids
    assert cmp["n_matched"] == len(fit["provenance"]["input_runs"]) and not cmp["only_new"]
    assert "harness-fit: against" in out.stdout
