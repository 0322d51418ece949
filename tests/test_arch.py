"""Any architecture from a YAML file, Mixture-of-Experts included: counted from the built model, trained."""
import json

import numpy as np
import pytest
import yaml

from harness.config import ModelConfig
from harness.errors import HarnessError
from harness.store import records
from harness.train import accounting, arch, model
from tests.conftest import CONF, cli

DENSE = "arch: mistral\nn_layer: 2\nn_embd: 32\nn_head: 2\nn_kv_head: 1\n"  # no shipped config uses mistral
MOE = ("arch: qwen3_moe\nn_layer: 2\nn_embd: 32\nn_head: 2\n"
       "hf: {num_experts: 8, num_experts_per_tok: 2, moe_intermediate_size: 32, decoder_sparse_step: 1}\n")


def _model(text: str, name: str) -> ModelConfig:
    return ModelConfig(**{**yaml.safe_load(text), "name": name})


@pytest.mark.parametrize("path", sorted((CONF / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_counts_exactly_as_built(path):
    m = ModelConfig(**{**yaml.safe_load(path.read_text()), "name": path.stem})
    c = arch.counts(m, 2048)  # the meta-device count: every tensor once, tied embeddings once
    assert accounting.param_counts(m, 2048) == (c["total"], c["nonembed"])  # the formulas agree exactly
    if c["experts"]:  # an MoE: 2 of 8 experts per token
        assert c["top_k"] == 2 and c["experts"] >= 8 and c["active_nonembed"] < c["nonembed"]
    else:
        assert c["active_nonembed"] == c["nonembed"]  # dense: every parameter is active


def test_a_new_architecture_and_an_moe_count_from_the_built_model():
    dense, moe = _model(DENSE, "m-dense"), _model(MOE, "m-moe")
    for m in (dense, moe):
        built = model.build(m, 2048, seed=0)
        c = arch.counts(m, 2048)
        assert c["total"] == model.count_params(built) == accounting.param_counts(m, 2048)[0]
    c = arch.counts(moe, 2048)
    assert c["experts"] == 8 and c["top_k"] == 2 and 0 < c["active_nonembed"] < c["nonembed"]
    expert_params = sum(p.numel() for n, p in model.build(moe, 2048, 0).named_parameters() if ".experts." in n)
    assert c["nonembed"] - c["active_nonembed"] == round(expert_params * 6 / 8)  # 6 of 8 experts idle per token


def test_unknown_architectures_and_fields_are_refused_in_one_line():
    with pytest.raises(HarnessError, match="model.arch='qwen4' is not a causal-LM model_type.*qwen"):
        accounting.validate_model(ModelConfig(name="x", arch="qwen4"), 2048)
    with pytest.raises(HarnessError, match="model.hf.num_expert is not a field of"):
        arch.hf_config(ModelConfig(name="x", arch="qwen3_moe", hf={"num_expert": 8}), 2048)


@pytest.mark.slow  # trains or refits end to end (~30-110 s on 2 cores); CI runs the slow tier
def test_a_user_folder_plans_trains_and_fits_a_new_architecture_and_an_moe(tmp_path):
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "mistral-20k.yaml").write_text(DENSE)
    (tmp_path / "mine" / "model" / "qwen3moe-20k.yaml").write_text(MOE)
    args = ["--config-dir", str(tmp_path / "mine"), "model=mistral-20k,qwen3moe-20k", "sweep.name=mine",
            f"results_dir={tmp_path / 'r'}"]
    plan = cli("harness-plan", *args, "budget.tokens=20000", cwd=tmp_path)
    assert plan.returncode == 0 and "mistral-20k" in plan.stdout and "qwen3moe-20k" in plan.stdout, plan.stderr
    out = cli("harness-train", "-m", *args, "budget.tokens=10000,20000,40000", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    recs = [records.read(p) for p in (tmp_path / "r" / "mine").iterdir() if p.is_dir()]
    assert sorted(r["config"]["model"]["arch"] for r in recs) == ["mistral"] * 3 + ["qwen3_moe"] * 3
    assert all(r["status"] == "finished" and r["summary"]["val/loss"] < r["summary"]["val/loss_init"] for r in recs)
    fit = cli("harness-fit", f"runs={tmp_path / 'r' / 'mine'}", f"out={tmp_path / 'fit'}", "n_bootstrap=0",
              "forms=[kaplan]", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-2000:]
    written = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert written["n_points"] == 6 and written["provenance"]["conventions"]["N"] == "active"  # an MoE among them


def test_an_moe_trains_with_its_router_loss_which_the_fitted_loss_leaves_out():
    import torch

    from harness.train import fastpath

    net = model.build(_model(MOE, "m-moe"), 2048, seed=0)
    batch = torch.randint(0, 2048, (2, 33))
    with torch.no_grad():
        lm = fastpath.lm_loss(net, batch)  # evaluation: the LM loss alone (what val/loss and a law use)
    train = fastpath.lm_loss(net, batch)
    aux = net.router_stats["router/aux_loss"]
    assert torch.isclose(train.detach(), lm + net.config.router_aux_loss_coef * aux, rtol=1e-5)
    assert aux > 0 and net.router_stats["router/max_load"].shape == (2,)  # one load figure per MoE layer
    train.backward()
    assert all(p.grad is not None for n, p in net.named_parameters() if "mlp.gate" in n)  # the router learns


def test_an_moe_costs_its_active_parameters_and_the_fitter_uses_them():
    import pandas as pd

    from harness.fit.points import fit_table, resolve_convention
    from harness.train import spec
    from tests.conftest import make_config

    dense = spec.resolve(make_config("model=gpt2-5k", "budget.tokens=20000"))
    assert dense.N_active == dense.N_nonembed and dense.flat()["N_active"] == dense.N_nonembed
    m = _model(MOE, "m-moe")
    active_total, active = accounting.active_counts(m, 2048)
    c = arch.counts(m, 2048)
    assert active == c["active_nonembed"] < c["nonembed"] and active_total < c["total"]
    assert accounting.flops_per_token(m, 2048)["kaplan"] == 6 * active  # cost per token: what a token uses
    runs = pd.DataFrame([{"run_id": f"r{i}", "cell_id": f"c{i}", "cell_key": f"k{i}", "status": "finished",
                          "error": None, "N_total": 2e5, "N_nonembed": 1e5, "N_active": 4e4, "D": d,
                          "C_6N": 6 * 1.4e5 * d, "C_kaplan": 6 * 4e4 * d, "loss": 4.0, "loss_std": float("nan"),
                          "n_seeds": 1, "epochs": 1.0, "U": None, "seed": 0,
                          "schedule": "cosine", "model": "m", "arch": "qwen3_moe", "source": ""}
                         for i, d in enumerate((1e6, 2e6, 4e6))])
    assert resolve_convention(runs, "auto") == "active"
    table, _ = fit_table(runs, "active")
    assert set(table["N"]) == {4e4} and list(table["C"]) == list(runs["C_kaplan"])
    assert np.allclose(table["C"], 6 * table["N"] * table["D"])  # C is 6 N D of the N it reports
    for convention in ("total", "nonembed"):  # they count experts a token skips: 6 N D is not what it spent
        with pytest.raises(HarnessError, match=f"n_convention={convention}: r0, r1, r2 are MoE run"):
            fit_table(runs, convention)


def test_an_moe_cell_sits_at_one_n_in_the_budget_the_trainer_and_the_planner():
    from harness import plan
    from harness.config import BudgetConfig
    from harness.train import spec
    from tests.conftest import make_config

    m = _model(MOE, "m-moe")
    active_total, active = accounting.active_counts(m, 2048)
    for convention, n in (("6N", active_total), ("kaplan", active)):  # tokens per parameter a token uses
        b = BudgetConfig(tokens_per_param=20.0, convention=convention)
        assert accounting.budget_tokens(b, m, 2048) == 20.0 * n
    cfg = make_config("model=moe-7k", "budget.tokens_per_param=20")
    s = spec.resolve(cfg)
    assert s.flat()["tokens_per_param"] == pytest.approx(20.0, rel=0.01)  # what was asked, not D / N_total
    row = plan.Row("moe-7k", cfg, s.flat())
    assert plan.budget_n(row) == pytest.approx(s.flat()["flops_per_token/6N"] / 6) and plan.budget_n(row) < s.N


@pytest.mark.slow  # end to end, 15-35 s on 2 cores; CI runs the slow tier
def test_the_shipped_moe_ladder_trains_and_is_planned_from_moe_runs_only(tmp_path):
    out = cli("harness-plan", "model=moe-7k,llama-5k", "budget.tokens=20000", f"results_dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 0 and "no finished MoE cpu runs" in out.stdout and "time unknown" in out.stdout
    row = next(ln for ln in out.stdout.splitlines() if ln.startswith("moe-7k"))
    assert "      ?" in row  # no MoE run to time it by: not the dense models' speed
    train = cli("harness-train", "model=moe-7k", "budget.tokens=20000", f"results_dir={tmp_path}", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    (rec,) = [records.read(p) for p in (tmp_path / "single").iterdir()]
    s = rec["summary"]
    assert rec["status"] == "finished" and s["N_active"] < s["N_nonembed"]
    assert s["C_kaplan"] == 6 * s["N_active"] * s["D"]  # cost from the active parameters
