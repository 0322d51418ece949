"""N, D and C are exact: the analytic counts equal the built model's, and budgets resolve as documented."""
import math

import pytest
import yaml

from harness.config import BudgetConfig, ModelConfig
from harness.errors import HarnessError
from harness.train import accounting, model, spec
from tests.conftest import CONF, cli, make_config

SHAPES = [
    dict(arch="gpt2", n_layer=2, n_embd=32, n_head=2),
    dict(arch="gpt2", n_layer=3, n_embd=96, n_head=4, tie_word_embeddings=False, n_inner=200),
    dict(arch="llama", n_layer=2, n_embd=64, n_head=4),
    dict(arch="llama", n_layer=3, n_embd=96, n_head=4, n_kv_head=2, tie_word_embeddings=False),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s['arch']}-{s['n_embd']}")
def test_analytic_count_matches_built_model(shape):
    m = ModelConfig(**shape)
    n, n_ne = accounting.param_counts(m, 512)
    built = model.build(m, 512, seed=0)
    assert model.count_params(built) == n
    embeddings = built.get_input_embeddings().weight.numel()
    if m.arch == "gpt2":
        embeddings += built.transformer.wpe.weight.numel()
    if not m.tie_word_embeddings:
        embeddings += built.get_output_embeddings().weight.numel()
    assert n - embeddings == n_ne


SMALL = [p.stem for p in sorted((CONF / "model").glob("*.yaml"))
         if accounting.param_counts(ModelConfig(**yaml.safe_load(p.read_text())), 2048)[1] < 1_000_000]


@pytest.mark.parametrize("name", SMALL)
def test_every_ladder_config_builds_with_its_analytic_count(name):
    """Validation catches what transformers refuses (llama-8k once had 9-dim heads, which RoPE rejects)."""
    m = ModelConfig(**yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text()))
    accounting.validate_model(m, 2048)
    assert model.count_params(model.build(m, 2048, seed=0)) == accounting.param_counts(m, 2048)[0]


def test_llama_heads_must_be_even_for_rope():
    with pytest.raises(HarnessError, match="even head dimension"):
        accounting.validate_model(ModelConfig(arch="llama", n_embd=18, n_head=2), 2048)


def test_ladder_spans_20k_to_100m_and_names_are_honest():
    counts = {}
    for path in sorted((CONF / "model").glob("*.yaml")):
        fields = yaml.safe_load(path.read_text())
        assert "name" not in fields or fields["name"] == path.stem  # a model's name is its file's name
        m = ModelConfig(**{**fields, "name": path.stem})
        _, n_ne = accounting.active_counts(m, 2048)  # an MoE ladder is named by its active size
        label = float(m.name.split("-")[1].replace("k", "e3").replace("m", "e6"))
        assert 0.75 < n_ne / label < 1.35, (m.name, n_ne)
        counts.setdefault(m.arch, []).append(n_ne)
    for arch in ("gpt2", "llama", "qwen3", "qwen3_moe"):
        assert min(counts[arch]) <= 20_000 and max(counts[arch]) >= 100_000_000


def test_flop_conventions():
    m = ModelConfig(n_layer=2, n_embd=64, n_head=2, n_positions=128)
    n, n_ne = accounting.param_counts(m, 2048)
    f = accounting.flops_per_token(m, 2048)
    assert f["6N"] == 6 * n and f["kaplan"] == 6 * n_ne
    assert f["6N_attn"] == 6 * n + 6 * 2 * 128 * 64


@pytest.mark.parametrize("budget,expect", [
    ("budget.tokens=1000000", lambda n, f: 1_000_000),
    ("budget.tokens_per_param=20", lambda n, f: 20 * n),
    ("budget.flops=1e12", lambda n, f: 1e12 / f["6N"]),
    ("budget.flops=1e12 budget.convention=6N_attn", lambda n, f: 1e12 / f["6N_attn"]),
])
def test_budget_resolves_to_whole_steps(budget, expect):
    s = spec.resolve(make_config(*budget.split(), "optim.batch_tokens=1024"))
    n, _ = accounting.param_counts(ModelConfig(), 2048)
    want = expect(n, accounting.flops_per_token(ModelConfig(), 2048))
    assert s.D % 1024 == 0 and abs(s.D - want) <= 512 and s.D == s.steps * s.batch_tokens
    assert s.C["6N"] == 6 * n * s.D and s.N == n


def test_no_budget_means_the_default_and_two_budgets_are_an_error():
    assert accounting.budget_tokens(BudgetConfig(), ModelConfig(), 2048) == accounting.DEFAULT_TOKENS
    with pytest.raises(HarnessError, match=r"budget.flops=1e\+?12 and budget.tokens=10 are both set"):
        accounting.budget_tokens(BudgetConfig(tokens=10, flops=1e12), ModelConfig(), 2048)


def test_a_preset_budget_and_a_command_line_budget_conflict_with_one_line(tmp_path):
    """`-m sweep=gpu budget.tokens=...` used to keep the preset's budget.flops without a word."""
    out = cli("harness-train", "-m", "sweep=isoflop", "budget.tokens=1000000", f"results_dir={tmp_path}",
              "wandb.mode=disabled", cwd=tmp_path)
    assert out.returncode != 0 and "are both set" in out.stderr
    assert not list(tmp_path.rglob("*.wandb"))


@pytest.mark.parametrize("budget", ["budget.tokens=-5", "budget.tokens=100", "budget.flops=1e12 budget.convention=7N",
                                    "optim.batch_tokens=1000"])
def test_bad_budgets_fail_clearly(budget):
    with pytest.raises(HarnessError):
        spec.resolve(make_config(*budget.split()))


def test_per_size_rules_shrink_lr_and_grow_batch_with_compute():
    small = spec.resolve(make_config("model=gpt2-100k", "budget.tokens=1000000"))
    large = spec.resolve(make_config("model=gpt2-13m", "budget.tokens=100000000"))
    assert large.lr < small.lr and large.batch_tokens > small.batch_tokens
    assert small.batch_tokens % 128 == 0
    overridden = spec.resolve(make_config("optim.lr=0.5", "optim.batch_tokens=4096"))
    assert overridden.lr == 0.5 and overridden.batch_tokens == 4096
    assert 0 < small.warmup_tokens <= 0.25 * small.D and math.isclose(small.D / small.batch_tokens, small.steps)
