"""Exact parameter and FLOP accounting, torch-free: the one place N, D and C are computed.

N counts every trainable parameter of the HF model built from the same config (a test checks it
against the built model). Conventions for FLOPs per training token:
  6N       Hoffmann et al. (2022): 6 x total parameters.
  6N_attn  Kaplan et al. (2020) eq. 2.2 with embeddings: 6N + 6 n_layer n_ctx d_model (attention scores).
  kaplan   Kaplan et al. (2020): 6 x non-embedding parameters.
"""
from __future__ import annotations

from harness.config import BudgetConfig, ModelConfig
from harness.errors import HarnessError
from harness.train.arch import check_arch, counts, mlp_width

CONVENTIONS = ("6N", "6N_attn", "kaplan")
DEFAULT_TOKENS = 1_500_000  # D when no budget is set: the default run, about a minute on 2 CPU cores


def validate_model(m: ModelConfig, vocab_size: int) -> None:
    if m.arch not in ("gpt2", "llama"):
        check_arch(m.arch)
    for key in ("n_layer", "n_embd", "n_head", "n_positions"):
        if getattr(m, key) < 1:
            raise HarnessError(f"model.{key}={getattr(m, key)} must be >= 1")
    if m.n_embd % m.n_head:
        raise HarnessError(f"model.n_embd={m.n_embd} is not divisible by model.n_head={m.n_head}")
    if m.arch != "gpt2" and (m.n_embd // m.n_head) % 2:  # rotary embeddings: transformers refuses it
        raise HarnessError(f"model.n_embd={m.n_embd} / model.n_head={m.n_head} = {m.n_embd // m.n_head}: "
                           "Llama's rotary embedding needs an even head dimension")
    kv = m.n_kv_head or m.n_head
    if m.n_head % kv:
        raise HarnessError(f"model.n_head={m.n_head} is not divisible by model.n_kv_head={kv}")
    if vocab_size > 65535:
        raise HarnessError(f"data.vocab_size={vocab_size} does not fit the uint16 token memmap")


def param_counts(m: ModelConfig, vocab_size: int) -> tuple[int, int]:
    """(N total, N non-embedding). Non-embedding drops token and position embeddings and an untied head.
    GPT-2 and Llama by formula (checked against the built model in tests); any other architecture is
    built on the meta device and counted (train/model.py, which needs torch; only for those)."""
    if m.arch not in ("gpt2", "llama") or m.hf:
        c = counts(m, vocab_size)  # built on the meta device: torch, for architectures without a formula
        return c["total"], c["nonembed"]
    d, f, L, V = m.n_embd, mlp_width(m), m.n_layer, vocab_size
    head = 0 if m.tie_word_embeddings else V * d
    if m.arch == "gpt2":
        embed = V * d + m.n_positions * d
        attn = d * 3 * d + 3 * d + d * d + d  # c_attn and c_proj with biases
        mlp = d * f + f + f * d + d  # c_fc and c_proj with biases
        block = attn + mlp + 4 * d  # two LayerNorms, weight and bias
        body = L * block + 2 * d  # final LayerNorm
    else:
        embed = V * d
        kv_dim = d // m.n_head * (m.n_kv_head or m.n_head)
        attn = 2 * d * d + 2 * d * kv_dim  # q, o and k, v projections, no bias
        mlp = 3 * d * f  # gate, up, down
        block = attn + mlp + 2 * d  # two RMSNorm weights
        body = L * block + d  # final RMSNorm
    return embed + body + head, body


def active_counts(m: ModelConfig, vocab_size: int) -> tuple[int, int]:
    """(N active, N active non-embedding): the parameters one token uses. A Mixture-of-Experts layer's
    experts count at top-k/E (arch.counts); for a dense model these are param_counts."""
    if m.arch in ("gpt2", "llama") and not m.hf:
        return param_counts(m, vocab_size)
    c = counts(m, vocab_size)
    return c["total"] - (c["nonembed"] - c["active_nonembed"]), c["active_nonembed"]


def flops_per_token(m: ModelConfig, vocab_size: int) -> dict:
    """Training FLOPs per token under each convention, from the active parameters (for a dense model,
    all of them): an MoE's cost per token is set by what a token uses, its capacity by the total."""
    n, n_ne = active_counts(m, vocab_size)
    attn = 6 * m.n_layer * m.n_positions * m.n_embd
    return {"6N": 6 * n, "6N_attn": 6 * n + attn, "kaplan": 6 * n_ne}


def budget_kind(b: BudgetConfig) -> str | None:
    """Which field sets D. At most one may be set: a preset's `budget.flops` next to a command
    line's `budget.tokens` is a contradiction to name, not a precedence to apply silently."""
    given = [k for k in ("flops", "tokens_per_param", "tokens") if getattr(b, k) is not None]
    if len(given) > 1:
        both = " and ".join(f"budget.{k}={getattr(b, k):g}" for k in given)
        raise HarnessError(f"{both} are both set; a run has one budget: set the others to null")
    return given[0] if given else None


def budget_tokens(b: BudgetConfig, m: ModelConfig, vocab_size: int) -> float:
    """The requested D in tokens, before rounding to whole steps (DEFAULT_TOKENS if no budget is set)."""
    kind = budget_kind(b)
    if b.convention not in CONVENTIONS:
        raise HarnessError(f"budget.convention={b.convention!r} is not one of {CONVENTIONS}")
    if kind is None:
        return float(DEFAULT_TOKENS)
    value = getattr(b, kind)
    if not value > 0:
        raise HarnessError(f"budget.{kind}={value} must be positive")
    if kind == "tokens":
        return float(value)
    if kind == "tokens_per_param":  # per parameter a token uses, as the FLOP budgets count (store/counts.py)
        n, n_ne = active_counts(m, vocab_size)
        return value * (n_ne if b.convention == "kaplan" else n)
    return value / flops_per_token(m, vocab_size)[b.convention]


def budget_name(b: BudgetConfig) -> str:
    """The budget as the user wrote it, for messages."""
    kind = budget_kind(b)
    return f"budget.{kind}={getattr(b, kind):g}" if kind else f"the default budget of {DEFAULT_TOKENS:,} tokens"
