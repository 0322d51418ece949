"""harness-study: the prediction is written before its held-out cells run, kept on reruns, then scored."""
import json
from datetime import datetime

import pytest

from harness.fit.collect import collect
from harness.store import records
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


@pytest.mark.slow  # trains or refits end to end (~30-110 s on 2 cores); CI runs the slow tier
def test_prediction_is_written_before_its_check_then_scored_and_never_rewritten(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(STUDY)
    results = tmp_path / "results"
    args = [f"study={study}", f"results_dir={results}", "n_bootstrap=100", "optim.weight_decay=0.05"]
    first = cli("harness-study", *args, cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = results / "smoke"
    pred = json.loads((sweep / "prediction.json").read_text())
    assert CONTRACT <= set(pred) and all(CELL <= set(c) for c in pred["cells"])
    runs, _ = collect(str(sweep))
    assert set(runs["status"]) == {"finished"} and len(runs) == 7
    wds = {records.read(d)["config"]["optim"]["weight_decay"] for d in sweep.glob("*_s0_*") if records.read(d)}
    assert wds == {0.05}  # the override reached both stages' runs
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

    fit_before = (sweep / "fit.json").read_bytes()
    second = tmp_path / "second.yaml"  # a second study of the same sweep: its own file and folder
    second.write_text(STUDY.replace("budget.tokens=480000", "budget.tokens=360000")
                      + "prediction: prediction_b.json\nout: b\n")
    other = cli("harness-study", f"study={second}", *args[1:], cwd=tmp_path, timeout=900)
    assert other.returncode == 0, other.stderr[-3000:]
    pred_b = json.loads((sweep / "prediction_b.json").read_text())
    assert sorted(pred_b["fitted_on"]) == sorted(pred["fitted_on"])  # not the first study's held-out cell
    assert pred_b["cells"][0]["cell_key"] not in (pred["cells"][0]["cell_key"], *pred["fitted_on"])
    scored_b = json.loads((sweep / "b" / "fit.json").read_text())["prediction_score"]
    assert [c["cell_key"] for c in scored_b["cells"]] == [pred_b["cells"][0]["cell_key"]]
    assert (sweep / "prediction.json").read_bytes() == before and (sweep / "fit.json").read_bytes() == fit_before

    (sweep / "prediction.json").unlink()  # a prediction made after its check is refused
    late = cli("harness-study", *args, cwd=tmp_path, timeout=900)
    assert late.returncode == 2 and not (sweep / "prediction.json").exists()
    [line] = late.stderr.strip().splitlines()[-1:]
    assert line.startswith("harness-study: error:") and held["cell_id"].item() in line


def test_a_study_grouped_by_arch_predicts_each_ladders_cells_from_its_own_law(tmp_path):
    """Two ladders on two laws: predicted per group, each held-out cell lands on its own ladder's law;
    one pooled law cannot serve both (the laptop study's first prediction missed by 11 % for this)."""
    import numpy as np
    import pandas as pd

    from harness import plan, study

    laws = {"gpt2": dict(E=2.0, A=40.0, alpha=0.35, B=900.0, beta=0.4),
            "llama": dict(E=1.7, A=25.0, alpha=0.35, B=900.0, beta=0.4)}

    def loss(p, N, D):
        return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]

    rng = np.random.default_rng(0)
    rows = []
    for arch, p in laws.items():
        for N in np.logspace(4, 5.3, 6):
            for D in np.logspace(5.6, 6.8, 6):
                rows.append({"cell_key": f"{arch}-{N:.0f}-{D:.0f}", "arch": arch, "N": N, "D": D, "C": 6 * N * D,
                             "U": 1e12, "loss": loss(p, N, D) * np.exp(0.002 * rng.standard_normal())})
    table = pd.DataFrame(rows)
    held = plan.cells_of(["model=gpt2-400k,llama-400k", "budget.tokens=4000000", f"results_dir={tmp_path}"])
    made = study.predict_table(table, held, 100, "nonembed", "arch")
    assert made["group_by"] == "arch" and set(made["groups"]) == {"gpt2", "llama"}
    assert {c["group"] for c in made["cells"]} == {"gpt2", "llama"} and len(made["fitted_on"]) == len(table)
    pooled = {c["cell_key"]: c["predicted"] for c in study.predict_table(table, held, 100, "nonembed")["cells"]}
    truth = {c["cell_key"]: loss(laws[c["group"]], c["N"], c["D"]) for c in made["cells"]}
    assert all(abs(c["predicted"] / truth[c["cell_key"]] - 1) < 0.01 for c in made["cells"])
    assert max(abs(pooled[k] / truth[k] - 1) for k in truth) > 0.03  # one law sits between the ladders


def test_grouped_prediction_runs_end_to_end_on_the_committed_laptop_study(tmp_path):
    """harness-study's own path (collect -> fit_table(group_by) -> per-ladder laws) on the committed
    laptop runs, with the held-out cells' directories left out as before their check."""
    import shutil

    from harness import plan, study
    from tests.conftest import ROOT

    src = ROOT / "results" / "laptop"
    held = plan.cells_of(["sweep=laptop_holdout", f"results_dir={src.parent}"])
    held_ids = {r.cell for r in held}
    sweep = tmp_path / "laptop"
    for cell in src.iterdir():
        if cell.is_dir() and cell.name not in held_ids:
            shutil.copytree(cell, sweep / cell.name)
    held = plan.cells_of(["sweep=laptop_holdout", f"results_dir={tmp_path}"])
    assert {r.values["status"] for r in held} == {"todo"}
    fit_keys = study.fit_stage_keys(study.load("laptop"), [f"results_dir={tmp_path}"])
    made = study.predict(sweep, held, 50, "arch", fit_keys)  # not laptop_check's later held-out cells
    assert set(made["groups"]) == {"gpt2", "llama"} and len(made["fitted_on"]) == 60
    by = {(c["group"], round(c["N"], -5)): c["predicted"] for c in made["cells"]}
    assert all(c["group"] in c["cell_key"] for c in made["cells"])  # each ladder's cells, its own law
    # the ladders' laws differ by far more than their noise: Llama is ~0.3 nats lower at 1.2e13
    assert by[("gpt2", 400000.0)] - by[("llama", 400000.0)] > 0.1


def test_a_bad_override_fails_in_one_line_before_any_training(tmp_path):
    for bad, message in [("bogus.key=1", "Could not override 'bogus.key'"),
                         ("data.vocab_size=256", "data.vocab_size=256 must be in [257, 65535]")]:
        out = cli("harness-study", "study=tiny", f"results_dir={tmp_path / 'r'}", bad, cwd=tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr[-2000:]
        assert not (tmp_path / "r").exists()


def test_committed_arch_study_follows_from_its_runs(tmp_path):
    """results/arch: the prediction was written before any held-out cell started, and the final fit's
    laws and compute multipliers come back from the committed runs (their point values do not depend
    on the bootstrap)."""
    from harness import plan
    from harness.cli_fit import fit_main
    from tests.conftest import ROOT

    src = ROOT / "results" / "arch"
    made = json.loads((src / "prediction.json").read_text())
    held = plan.cells_of(["sweep=arch_holdout", f"results_dir={src.parent}"])
    assert {c["group"] for c in made["cells"]} == {r.cfg.model.arch for r in held} == {"gpt2", "qwen3", "qwen3_moe"}
    assert all(r.values["status"] == "finished" for r in held)
    started = [datetime.fromisoformat(json.loads((src / r.cell / "summary.json").read_text())["started"])
               for r in held]
    assert datetime.fromisoformat(made["created"]) < min(started)
    fit = json.loads((src / "fit.json").read_text())
    assert fit["provenance"]["conventions"]["N"] == "active" and fit["groups"]["ref"] == "gpt2"
    assert fit_main([f"runs={src}", f"out={tmp_path}", f"prediction={src / 'prediction.json'}", "group_by=arch",
                     "group_ref=gpt2", "n_bootstrap=0"]) == 0
    again = json.loads((tmp_path / "fit.json").read_text())["groups"]
    for g, m in fit["groups"]["multipliers"].items():
        for at in ("at_C_ref", "at_10_C_ref"):
            assert again["multipliers"][g][at]["multiplier"] == pytest.approx(m[at]["multiplier"], rel=1e-6)
            assert m[at]["ci95"][0] <= m[at]["multiplier"] <= m[at]["ci95"][1]
    assert "Compute multiplier against gpt2" in (src / "report.md").read_text()
