"""harness-study: the prediction is written before its held-out cells run, kept on reruns, then scored."""
import json

from harness import records
from harness.collect import collect
from tests.conftest import cli

STUDY = """
sweep: smoke
fit:
  - [sweep=smoke, "budget.tokens=30000,60000,120000"]
holdout:
  - [sweep=smoke, model=gpt2-50k, budget.tokens=480000]
fit_args: [holdout=2]
"""
CONTRACT = {"created", "fitted_on", "form", "cells"}
CELL = {"cell_key", "N", "D", "C", "predicted", "pi95"}


def test_prediction_is_written_before_its_check_then_scored_and_never_rewritten(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(STUDY)
    results = tmp_path / "results"
    args = [f"study={study}", f"results_dir={results}", "n_bootstrap=100"]
    first = cli("harness-study", *args, cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = results / "smoke"
    pred = json.loads((sweep / "prediction.json").read_text())
    assert CONTRACT <= set(pred) and all(CELL <= set(c) for c in pred["cells"])
    runs, _ = collect(str(sweep))
    assert set(runs["status"]) == {"finished"} and len(runs) == 7
    held = runs[runs["D"] > 400000]
    assert len(pred["cells"]) == 1 and pred["cells"][0]["cell_key"] == held["cell_key"].item()
    assert held["cell_key"].item() not in pred["fitted_on"] and len(pred["fitted_on"]) == 6
    started = records.read(sweep / held["cell_id"].item())["started"]
    assert pred["created"] < started  # the prediction existed before the held-out cell began
    lo, hi = pred["cells"][0]["pi95"]
    assert lo < pred["cells"][0]["predicted"] < hi

    fitted = json.loads((sweep / "fit.json").read_text())
    assert fitted["provenance"]["settings"]["holdout"] == 2  # the study's fit_args reach the final fit
    score = fitted["prediction_score"]
    [row] = score["cells"]
    assert row["measured"] == held["loss"].item() and row["inside_pi95"] == (lo <= row["measured"] <= hi)
    assert abs(score["mean_abs_rel_error"] - abs(row["predicted"] / row["measured"] - 1)) < 1e-12
    assert "## Pre-registered prediction" in (sweep / "report.md").read_text()

    before = (sweep / "prediction.json").read_bytes()
    again = cli("harness-study", *args, cwd=tmp_path, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (sweep / "prediction.json").read_bytes() == before  # kept, never refitted
    assert collect(str(sweep))[0]["run_id"].tolist() == runs["run_id"].tolist()  # nothing retrained

    (sweep / "prediction.json").unlink()  # a prediction made after its check is refused
    late = cli("harness-study", *args, cwd=tmp_path, timeout=900)
    assert late.returncode == 2 and not (sweep / "prediction.json").exists()
    [line] = late.stderr.strip().splitlines()[-1:]
    assert line.startswith("harness-study: error:") and held["cell_id"].item() in line
