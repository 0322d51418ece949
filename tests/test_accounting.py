"""N, D and C are exact: the analytic counts equal the built model's, and budgets resolve as documented."""
import math

import pytest
import yaml

from harness import accounting, hparams, model
from harness.config import BudgetConfig, ModelConfig
from harness.errors import HarnessError
from tests.conftest import CONF, make_config

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


def test_ladder_spans_20k_to_100m_and_names_are_honest():
    counts = {}
    for path in sorted((CONF / "model").glob("*.yaml")):
        m = ModelConfig(**yaml.safe_load(path.read_text()))
        assert m.name == path.stem
        _, n_ne = accounting.param_counts(m, 2048)
        label = float(m.name.split("-")[1].replace("k", "e3").replace("m", "e6"))
        assert 0.75 < n_ne / label < 1.35, (m.name, n_ne)
        counts.setdefault(m.arch, []).append(n_ne)
    for arch in ("gpt2", "llama"):
        assert min(counts[arch]) <= 20_000 and max(counts[arch]) >= 100_000_000


def test_flop_conventions():
    m = ModelConfig(n_layer=2, n_embd=64, n_head=2, n_positions=128)
    n, n_ne = accounting.param_counts(m, 2048)
    f = accounting.flops_per_token(m, 2048)
    assert f["6N"] == 6 * n and f["kaplan"] == 6 * n_ne
    assert f["6N_attn"] == 6 * n + 6 * 2 * 128 * 64


@pytest.mark.parametrize("budget,expect", [
    (BudgetConfig(tokens=1_000_000), lambda n, f: 1_000_000),
    (BudgetConfig(tokens_per_param=20), lambda n, f: 20 * n),
    (BudgetConfig(flops=1e12), lambda n, f: 1e12 / f["6N"]),
    (BudgetConfig(flops=1e12, convention="6N_attn"), lambda n, f: 1e12 / f["6N_attn"]),
])
def test_budget_resolves_to_whole_steps(budget, expect):
    m = ModelConfig()
    n, _ = accounting.param_counts(m, 2048)
    d = accounting.derive(m, 2048, budget, batch_tokens=1024)
    want = expect(n, accounting.flops_per_token(m, 2048))
    assert d.D % 1024 == 0 and abs(d.D - want) <= 512
    assert d.C["6N"] == 6 * n * d.D


def test_most_specific_budget_wins():
    m = ModelConfig()
    both = accounting.derive(m, 2048, BudgetConfig(tokens=10, flops=1e12), batch_tokens=128)
    only = accounting.derive(m, 2048, BudgetConfig(flops=1e12), batch_tokens=128)
    assert both.D == only.D


@pytest.mark.parametrize("budget", [BudgetConfig(), BudgetConfig(tokens=-5), BudgetConfig(tokens=100),
                                    BudgetConfig(flops=1e12, convention="7N")])
def test_bad_budgets_fail_clearly(budget):
    with pytest.raises(HarnessError):
        accounting.derive(ModelConfig(), 2048, budget, batch_tokens=1024)


def test_per_size_rules_shrink_lr_and_grow_batch_with_compute():
    small = make_config("model=gpt2-100k", "budget.tokens=1000000")
    large = make_config("model=gpt2-13m", "budget.tokens=100000000")
    assert hparams.learning_rate(large) < hparams.learning_rate(small)
    assert hparams.batch_tokens(large) > hparams.batch_tokens(small)
    assert hparams.batch_tokens(small) % small.model.n_positions == 0
    overridden = make_config("optim.lr=0.5", "optim.batch_tokens=4096")
    assert hparams.learning_rate(overridden) == 0.5 and hparams.batch_tokens(overridden) == 4096
    d, hp = hparams.resolve(small)
    assert 0 < hp["warmup_tokens"] <= 0.25 * d.D and math.isclose(d.D / d.batch_tokens, d.steps)
