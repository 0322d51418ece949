"""harness-optimum: shapes by each family's rule, the generated folder, pre-registration, bad input, scoring."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli_optimum import main
from harness.config import CONF_DIR, DataConfig
from harness.optimum import shapes, verdict
from harness.train.arch import counts

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = sorted(p.stem for p in (CONF_DIR / "family").glob("*.yaml"))
V = DataConfig().vocab_size


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_shapes_a_model_within_5_percent_of_the_target_at_three_sizes(family):
    rule = shapes.load_rule(family)
    convention = "active" if rule.expert_width else "nonembed"
    for target in (6e4, 7e5, 2.5e7):
        got = shapes.shape_for(rule, target, convention, V)
        exact = counts(got["model"], V)  # counted again, independently, on the meta device
        key = shapes.COUNT_KEYS[convention]
        assert exact[key] == got["N"]
        assert abs(exact[key] / target - 1) <= shapes.TOLERANCE, (family, target, exact[key])
        m = got["model"]
        assert m.arch == rule.arch and m.n_layer >= rule.min_layers and m.n_embd % m.n_head == 0
        if rule.rotary:
            assert (m.n_embd // m.n_head) % 2 == 0


def test_the_moe_family_holds_its_active_count_with_every_expert_beside_it():
    rule = shapes.load_rule("moe")
    got = shapes.shape_for(rule, 4e5, "active", V)
    c = got["counts"]
    assert abs(c["active_nonembed"] / 4e5 - 1) <= shapes.TOLERANCE
    assert c["experts"] == rule.hf["num_experts"] and c["top_k"] == rule.hf["num_experts_per_tok"]
    assert c["nonembed"] > 2 * c["active_nonembed"]  # 8 experts, 2 active: most expert weights idle per token
    assert got["model"].hf["moe_intermediate_size"] > 0


def test_a_budget_above_the_fit_gives_a_folder_that_composes_and_a_prediction_made_first(tmp_path, capsys):
    from harness import plan

    out, res = tmp_path / "opt", tmp_path / "res"
    rc = main(["fit=results/tiny", "budget=1.2e12", f"out={out}", "study=tiny", f"results_dir={res}"])
    printed = capsys.readouterr().out
    assert rc == 0 and "train it:" in printed and "confirm it:" in printed
    o = json.loads((out / "optimum.json").read_text())
    pred = json.loads((out / "prediction.json").read_text())
    assert abs(o["N"] / o["N_opt"] - 1) <= shapes.TOLERANCE
    assert o["N_opt_ci95"][0] < o["N_opt"] < o["N_opt_ci95"][1]
    assert o["pi95"][0] < o["predicted_loss"] < o["pi95"][1]
    assert o["projection_dex"] == pytest.approx(np.log10(1.2e12 / 6e11), abs=0.01)  # the fit stage's top is 6e11
    assert [c["role"] for c in pred["cells"]] == ["optimum", "small", "large"]
    Ns = [c["N"] for c in pred["cells"]]
    assert Ns[1] < Ns[0] < Ns[2]
    rows = plan.cells_of([f"sweep={o['model']}_confirm", f"results_dir={res}"], str(out))
    assert {r.values["cell_key"] for r in rows} == {c["cell_key"] for c in pred["cells"]}
    assert all(r.values["C_kaplan"] == pytest.approx(1.2e12, rel=0.01) for r in rows)  # every cell at the budget
    opt = next(r for r in rows if r.cfg.model.name == o["model"])
    assert (opt.values["lr"], opt.values["batch_tokens"]) == (o["lr"], o["batch_tokens"])  # the ladder's rules

    # a prediction is never rewritten, and none is made once a confirmation cell has started
    before = (out / "prediction.json").read_bytes()
    assert main(["fit=results/tiny", "budget=1.2e12", f"out={out}", "study=tiny", f"results_dir={res}"]) == 2
    assert (out / "prediction.json").read_bytes() == before
    from harness.store import records

    cell = opt.values["cell_id"]
    records.write(res / o["confirm"]["sweep"] / cell, records.new("run", cell_id=cell, sweep=o["confirm"]["sweep"],
                                                                 config={}, summary={}))
    assert main(["fit=results/tiny", "budget=1.2e12", f"out={tmp_path / 'late'}", "study=tiny",
                 f"results_dir={res}"]) == 2
    assert "already ran" in capsys.readouterr().err and not (tmp_path / "late").exists()


@pytest.mark.parametrize("args, says", [
    (["fit=results/nowhere", "budget=1e12"], "no such study directory"),
    (["fit=results/tiny", "budget=0"], "must be a positive"),
    (["fit=results/tiny", "budget=lots"], "is not a number"),
    (["fit=results/tiny", "budget=1e12", "family=gpt3"], "family=gpt3"),
    (["fit=results/tiny", "budget=1e12", "family=moe"], "no law of its own"),
    (["fit=results/arch", "budget=1e12", "family=llama"], "no group arch=llama"),
    (["fit=results/arch", "budget=1e12"], "name the family"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, says):
    out = tmp_path / "opt"
    assert main([*args, f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness-optimum: error:") and says in err[0]
    assert not out.exists() and not list(tmp_path.glob(".optimum-*"))


def test_the_verdict_finds_the_isoflop_minimum_and_says_when_the_optimum_is_not_lowest():
    N = np.array([5e4, 1e5, 2e5])
    L = 4.0 + 0.1 * np.log(N / 1.3e5) ** 2
    assert verdict.isoflop_minimum(N, L) == pytest.approx(1.3e5, rel=1e-6)
    assert verdict.isoflop_minimum(N, -L) is None
    cells = [{"role": r, "model": r, "cell_key": r, "N": float(n), "D": 1.0, "predicted": 4.0, "pi95": [3.95, 4.05]}
             for r, n in zip(("optimum", "small", "large"), (1e5, 5e4, 2e5))]
    optimum = {"budget": 1e12, "model": "optimum", "N_opt_ci95": [8e4, 1.6e5],
               "confirm": {"cells": cells, "spacing": {"noise_sd": 0.005}}}
    got = {"optimum": (4.0, 2), "small": (4.2, 1), "large": (4.06, 1)}
    v = verdict.score(optimum, got)
    assert v["optimum_inside_pi95"] and v["optimum_lowest_or_within_noise"] and v["minimum_inside_N_interval"]
    v = verdict.score(optimum, {**got, "large": (3.9, 1)})  # a bigger model did better: the law's N* is too small
    assert v["lowest"] == "large" and not v["optimum_lowest_or_within_noise"]
    assert not v["minimum_inside_N_interval"]
    assert verdict.score(optimum, {"optimum": (4.0, 2)})["not_yet_run"] == ["small", "large"]


def test_the_confirmation_trains_on_the_data_the_law_was_fitted_on(tmp_path):
    from harness.optimum import generate, law
    from harness.store import records

    run = tmp_path / "study" / "cell-a"
    rec = records.new("run", cell_id="cell-a", sweep="study", summary={"cell_key": "a"},
                      config={"data": {"source": "files", "paths": ["/data/x.txt"], "vocab_size": 512,
                                       "cache_dir": "/elsewhere"}, "device": "cuda", "compile": True})
    records.write(run, {**rec, "status": "finished"})
    import pandas as pd

    got = law.trained_with(tmp_path / "study", pd.DataFrame({"cell_key": ["a"]}))
    assert got == {"data": {"source": "files", "paths": ["/data/x.txt"], "vocab_size": 512},
                   "device": "cuda", "compile": True}  # where the cache lives is not what was trained on
    text = "\n".join(generate._settings_yaml(got))
    assert "vocab_size: 512" in text and "device: cuda" in text
    assert law.trained_with(tmp_path / "study", pd.DataFrame({"cell_key": ["b"]})) == {}  # not a fitted cell


@pytest.mark.parametrize("sweep", ["optimum", "optimum_moe"])
def test_the_committed_optimum_study_was_predicted_first_and_its_verdict_follows_from_its_runs(sweep):
    from harness import plan
    from harness.store import records

    conf = ROOT / "results" / sweep / "conf"
    o = json.loads((conf / "optimum.json").read_text())
    pred = json.loads((conf / "prediction.json").read_text())
    rows = plan.cells_of([f"sweep={o['model']}_confirm", f"results_dir={ROOT / 'results'}"], str(conf))
    assert rows and all(r.values["status"] == "finished" for r in rows)  # nothing left to train
    started = [rec["started"] for _, rec in records.iter_records(ROOT / "results" / o["confirm"]["sweep"])]
    assert len(started) == 4 and pred["created"] < min(started)  # the prediction came before every run
    v = verdict.score(o, verdict.measured(o, str(ROOT / "results")))
    committed = json.loads((conf / "verdict.json").read_text())
    for key in ("optimum_inside_pi95", "minimum_inside_N_interval", "optimum_lowest_or_within_noise", "lowest"):
        assert v[key] == committed[key]
    assert v["isoflop_minimum_N"] == pytest.approx(committed["isoflop_minimum_N"], rel=1e-9)


def test_a_users_family_in_their_config_folder_is_found_and_its_rule_followed(tmp_path):
    (tmp_path / "family").mkdir()
    (tmp_path / "family" / "wide.yaml").write_text("arch: gpt2\naspect: 128\nhead_dim: 32\nrotary: false\n")
    rule = shapes.load_rule("wide", str(tmp_path))
    wide = shapes.shape_for(rule, 3e6, "nonembed", V)["model"]
    narrow = shapes.shape_for(shapes.load_rule("gpt2", str(tmp_path)), 3e6, "nonembed", V)["model"]
    assert wide.n_embd / wide.n_layer > 2 * narrow.n_embd / narrow.n_layer  # its own aspect ratio, not gpt2's
    (tmp_path / "family" / "bad.yaml").write_text("arch: gpt2\naspects: 3\n")
    with pytest.raises(Exception, match="aspects"):
        shapes.load_rule("bad", str(tmp_path))


@pytest.mark.parametrize("block", ["tiny", "{fit: tiny}", "{fit: tiny, budget: 1e12, famly: gpt2}"])
def test_a_study_whose_optimum_block_is_malformed_is_refused_in_one_line(tmp_path, block):
    from harness import study
    from harness.errors import HarnessError

    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "bad.yaml").write_text(f"sweep: x\noptimum: {block}\n")
    with pytest.raises(HarnessError, match="optimum is a mapping of fit, study, budget, family"):
        study.load("bad", str(tmp_path))
