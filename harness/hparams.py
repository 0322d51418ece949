"""Per-size hyperparameter defaults as functions of model size and budget (torch-free).

Each rule cites where it comes from; any of them is overridden by setting the optim field.
"""
from __future__ import annotations

from harness import accounting, schedule
from harness.accounting import budget_tokens, param_counts
from harness.config import Config
from harness.errors import HarnessError

# DeepSeek-AI (2024), "DeepSeek LLM", eq. 1: eta_opt = 0.3118 C^-0.1250, B_opt = 0.2920 C^0.3271,
# with C = M * D and M the non-embedding FLOPs per token including attention. Their fits span
# C = 1e17..3e20. At C ~ 1e11..1e12 our CPU sweep (results/lr_sweep/table.md) found: batches 4x
# smaller than their B_opt train far better at equal tokens (0.7-1.0 nats lower loss), and their
# eta_opt sits on a stability cliff for 50k-230k-parameter models (2x that LR costs 0.4-0.5 nats),
# while half of it is at the measured optimum. So we keep both exponents and scale the coefficients.
LR_COEF, LR_EXP = 0.3118 / 2, -0.1250
BATCH_COEF, BATCH_EXP = 0.2920 / 4, 0.3271
MAX_WARMUP_FRACTION = 0.25  # warmup never takes more than a quarter of the run


def _deepseek_compute(cfg: Config) -> float:
    m = cfg.model
    _, n_ne = param_counts(m, cfg.data.vocab_size)
    per_token = 6 * n_ne + 6 * m.n_layer * m.n_positions * m.n_embd
    return per_token * budget_tokens(cfg.budget, m, cfg.data.vocab_size)


def learning_rate(cfg: Config) -> float:
    if cfg.optim.lr is not None:
        return cfg.optim.lr
    return LR_COEF * _deepseek_compute(cfg) ** LR_EXP


def batch_tokens(cfg: Config) -> int:
    """Tokens per step, a whole number of sequences of n_positions tokens."""
    ctx = cfg.model.n_positions
    tokens = cfg.optim.batch_tokens or BATCH_COEF * _deepseek_compute(cfg) ** BATCH_EXP
    return max(1, round(tokens / ctx)) * ctx


def warmup_tokens(cfg: Config, D: int) -> int:
    """Porian et al. (2024): warm up for N tokens; Kaplan's fixed long warmup hurts small models."""
    if cfg.optim.warmup_tokens is not None:
        return cfg.optim.warmup_tokens
    n, _ = param_counts(cfg.model, cfg.data.vocab_size)
    return int(min(n, MAX_WARMUP_FRACTION * D))


def resolve(cfg: Config) -> tuple[accounting.Derived, dict]:
    """Validate and derive everything before any work: sizes, budget, per-size hyperparameters."""
    schedule.validate(cfg.optim)
    if cfg.branches and cfg.optim.schedule != "wsd":
        raise HarnessError("branches need optim.schedule=wsd (cooldowns branch from a constant-LR trunk)")
    if any(not 0 < f <= 1 for f in cfg.branches):
        raise HarnessError(f"branches={cfg.branches} must be fractions of D in (0, 1]")
    accounting.validate_model(cfg.model, cfg.data.vocab_size)
    bt = batch_tokens(cfg)
    derived = accounting.derive(cfg.model, cfg.data.vocab_size, cfg.budget, bt)
    shortest = min(cfg.branches) * derived.D if cfg.branches else derived.D  # WSD: warm up once for all
    hp = {"lr": learning_rate(cfg), "warmup_tokens": warmup_tokens(cfg, int(shortest)),
          "batch_tokens": bt, "schedule": cfg.optim.schedule}
    return derived, hp
