"""Per-size hyperparameter rules as functions of numbers (torch-free); `spec.resolve` applies them.

Each rule cites where it comes from; any of them is overridden by setting the optim field.
"""
from __future__ import annotations

# DeepSeek-AI (2024), "DeepSeek LLM", eq. 1: eta_opt = 0.3118 C^-0.1250, B_opt = 0.2920 C^0.3271,
# with C = M * D and M the non-embedding FLOPs per token including attention. Their fits span
# C = 1e17..3e20. At C ~ 1e11..1e12 our CPU sweep (results/lr_sweep/table.md) found: batches 4x
# smaller than their B_opt train far better at equal tokens (0.7-1.0 nats lower loss), and their
# eta_opt sits on a stability cliff for 50k-230k-parameter models (2x that LR costs 0.4-0.5 nats),
# while half of it is at the measured optimum. So we keep both exponents and scale the coefficients.
LR_COEF, LR_EXP = 0.3118 / 2, -0.1250
BATCH_COEF, BATCH_EXP = 0.2920 / 4, 0.3271
MAX_WARMUP_FRACTION = 0.25  # warmup never takes more than a quarter of the run
# A WSD trunk warms up once for all its branches, so the cap is set by the shortest branch; a
# quarter of it cut 50k-200k models' warmup to 0.3-0.7 N. At the tiny study's own budgets
# (results/lr_study/table.md) standalone runs warmed up for N tokens beat the trunks' capped
# warmup (75k: 4.520 vs 4.534; 50k: 4.489 vs 4.697 and 4.487 for two seeds), so a trunk may warm
# up for half its shortest branch: N tokens for every size of that study.
WSD_MAX_WARMUP_FRACTION = 0.5


def deepseek_compute(n_nonembed: int, n_layer: int, n_ctx: int, d_model: int, tokens: float) -> float:
    """DeepSeek's C = M D, with M the non-embedding FLOPs per token including attention."""
    return (6 * n_nonembed + 6 * n_layer * n_ctx * d_model) * tokens


def learning_rate(compute: float) -> float:
    return LR_COEF * compute ** LR_EXP


def batch_tokens(compute: float, ctx: int) -> int:
    """Tokens per step, a whole number of sequences of ctx tokens."""
    return max(1, round(BATCH_COEF * compute ** BATCH_EXP / ctx)) * ctx


def warmup_tokens(n_params: int, D: float, max_fraction: float = MAX_WARMUP_FRACTION) -> int:
    """Porian et al. (2024): warm up for N tokens; Kaplan's fixed long warmup hurts small models."""
    return int(min(n_params, max_fraction * D))
