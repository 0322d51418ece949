"""A model family's shape rule, and the shape it gives for a target parameter count.

A family (conf/family/NAME.yaml, or a user's own in --config-dir) states once how its models are
shaped: the architecture, the aspect ratio d_model / n_layer, the width per head, the fewest layers,
and for a Mixture-of-Experts family its experts, top-k and expert width. Why a fixed aspect ratio:
Kaplan et al. (2020, section 3.1, fig. 5) found the loss at a fixed N within a few per cent over aspect
ratios from ~20 to ~200, so the shape is a free choice within that band and one stated ratio keeps a
family's models alike; the shipped ladders sit at 32 from 800k parameters up (128/4 ... 256/8).

shape_for searches depth and width for the model whose count (the fit's N: non-embedding, active or
total) is closest to the target, preferring, among those within TOLERANCE of it, the aspect ratio
nearest the rule's; every count is the one harness-train logs (train/accounting: a formula for GPT-2
and Llama, tested equal to the built model; the model built on the meta device for the others, which
is the only place torch is imported).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.config import CONF_DIR, ModelConfig, user_dir
from harness.errors import HarnessError

TOLERANCE = 0.05  # a shape within 5 % of the target count is as good as any other; then the aspect decides
MAX_LAYERS = 128
COUNT_KEYS = {"nonembed": "nonembed", "active": "active_nonembed", "total": "total"}  # n_convention -> counts key


@dataclass
class ShapeRule:
    arch: str = "gpt2"  # a causal-LM model_type of transformers (as model.arch)
    aspect: float = 32.0  # d_model / n_layer the family keeps (Kaplan et al. 2020, fig. 5: flat over ~20-200)
    head_dim: int = 32  # width per attention head, as near as the width's divisors allow
    min_heads: int = 2  # the fewest heads (the ladders' smallest models have 2)
    rotary: bool = True  # rotary position embeddings: heads of an even width (they pair channels)
    min_layers: int = 2  # the fewest blocks a model of the family has (the ladders' smallest have 2)
    n_positions: int = 128  # context length in tokens, as the family's ladder trains with
    expert_width: Optional[float] = None  # MoE: moe_intermediate_size as a fraction of the dense MLP width
    hf: dict[str, Any] = field(default_factory=dict)  # further HF config fields (experts, top-k ...), as model.hf
    cite: str = ""  # where the rule comes from


def folders(config_dir: str | None = None) -> list[Path]:
    """Where family rules are looked for: the user's config folder's family/ first, then the shipped one."""
    return ([user_dir(config_dir) / "family"] if config_dir else []) + [CONF_DIR / "family"]


def family_for(arch: str | None, config_dir: str | None = None) -> str:
    """The family whose rule builds `arch` (the user's folder first, then the shipped ones)."""
    for f in folders(config_dir):
        for p in sorted(f.glob("*.yaml")) if f.is_dir() else []:
            if load_rule(p.stem, config_dir).arch == arch:
                return p.stem
    raise HarnessError(f"no family rule builds arch {arch!r} (family/NAME.yaml with arch: {arch}); "
                       "name one: family=NAME")


def load_rule(name: str, config_dir: str | None = None) -> ShapeRule:
    """family=NAME from the user's config folder's family/ (first) or the shipped conf/family/."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    where = folders(config_dir)
    found = [f / f"{name}.yaml" for f in where if (f / f"{name}.yaml").is_file()]
    if not found:
        known = sorted({p.stem for f in where if f.is_dir() for p in f.glob("*.yaml")})
        raise HarnessError(f"family={name}: no family/{name}.yaml (families: {', '.join(known)})")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ShapeRule), OmegaConf.load(found[0]))
        rule = ShapeRule(**OmegaConf.to_container(merged))
    except OmegaConfBaseException as e:
        raise HarnessError(f"{found[0]}: {str(e).splitlines()[0]}") from None
    if not (rule.aspect > 0 and rule.head_dim > 0 and rule.min_layers > 0):
        raise HarnessError(f"{found[0]}: aspect, head_dim and min_layers must be positive")
    return rule


def model_config(rule: ShapeRule, n_layer: int, n_embd: int, name: str = "") -> ModelConfig:
    """The family's model of this depth and width (heads and, for MoE, expert width by the rule)."""
    from harness.train.arch import mlp_width

    m = ModelConfig(name=name, arch=rule.arch, n_layer=n_layer, n_embd=n_embd, n_head=heads(rule, n_embd),
                    n_positions=rule.n_positions, hf=dict(rule.hf))
    if rule.expert_width:
        m.hf["moe_intermediate_size"] = max(1, round(rule.expert_width * mlp_width(m)))
    return m


def heads(rule: ShapeRule, n_embd: int) -> int | None:
    """The head count nearest n_embd / head_dim that divides n_embd into heads (of an even width with
    rotary embeddings) within a factor 2 of head_dim (or narrower where min_heads forces it), at least
    min_heads; None if there is none."""
    low = min(rule.head_dim / 2, n_embd / rule.min_heads)
    divisors = {h for i in range(1, math.isqrt(n_embd) + 1) if n_embd % i == 0 for h in (i, n_embd // i)}
    ok = [h for h in divisors if h >= rule.min_heads and low <= n_embd / h <= 2 * rule.head_dim
          and (not rule.rotary or (n_embd // h) % 2 == 0)]
    return min(ok, key=lambda h: (abs(math.log(n_embd / h / rule.head_dim)), h)) if ok else None


def widths(rule: ShapeRule, top: int = 8192) -> list[int]:
    """Widths the rule allows: even, with a valid head count."""  # odd widths would leave most counts unreached
    return [d for d in range(2 * rule.min_heads, top + 1, 2) if heads(rule, d)]


def count(rule: ShapeRule, n_layer: int, n_embd: int, key: str, vocab: int) -> int:
    """The model's count under `key` (accounting's formula where it has one, else built on meta)."""
    from harness.train import accounting

    m = model_config(rule, n_layer, n_embd)
    if key == "total":
        return accounting.param_counts(m, vocab)[0]
    if key == "nonembed":
        return accounting.param_counts(m, vocab)[1]
    return accounting.active_counts(m, vocab)[1]


def shape_for(rule: ShapeRule, target: float, convention: str, vocab: int) -> dict:
    """The family's shape closest to `target` parameters under the fit's n_convention, counted exactly as
    harness-train counts it (accounting: GPT-2 and Llama by formula, which tests hold equal to the model
    built on the meta device; every other architecture built on the meta device)."""
    from harness.train import accounting

    if not target > 0:
        raise HarnessError(f"target parameter count {target} must be positive")
    key = COUNT_KEYS[convention]
    allowed = widths(rule)
    candidates = [(L, d, count(rule, L, d, key, vocab)) for L in _depths(rule, allowed, target, key, vocab)
                  for d in _bracket(allowed, lambda d: count(rule, L, d, key, vocab), target)]
    near = [c for c in candidates if abs(c[2] / target - 1) <= TOLERANCE]
    if near:
        L, d, _ = min(near, key=lambda c: (abs(math.log(c[1] / c[0] / rule.aspect)), abs(c[2] - target)))
    else:
        L, d, _ = min(candidates, key=lambda c: abs(math.log(c[2] / target)))
    m = model_config(rule, L, d)
    total, nonembed = accounting.param_counts(m, vocab)
    exact = {"total": total, "embedding": total - nonembed, "nonembed": nonembed,
             "active_nonembed": accounting.active_counts(m, vocab)[1],
             "experts": rule.hf.get("num_experts", 0), "top_k": rule.hf.get("num_experts_per_tok", 0)}
    return {"model": m, "N": exact[key], "counts": exact, "target": float(target),
            "rel_diff": exact[key] / target - 1, "aspect": d / L}


def _bracket(values: list[int], f, target: float) -> list[int]:
    """The two neighbours in sorted `values` about where the increasing f crosses target."""
    lo, hi = 0, len(values) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if f(values[mid]) < target else (lo, mid)
    return sorted({values[max(lo - 1, 0)], values[lo]})


def _depths(rule: ShapeRule, allowed: list[int], target: float, key: str, vocab: int) -> list[int]:
    """The depth whose model at the rule's aspect ratio first reaches the target, and its neighbours."""
    def at_aspect(L: int) -> int:
        return count(rule, L, min(allowed, key=lambda d: abs(d - rule.aspect * L)), key, vocab)

    layers = list(range(rule.min_layers, MAX_LAYERS + 1))
    L = _bracket(layers, at_aspect, target)[-1]
    return [x for x in (L - 1, L, L + 1) if rule.min_layers <= x <= MAX_LAYERS]


def write_model(m: ModelConfig, path: Path, comment: str) -> None:
    """conf/model/NAME.yaml for the shape (values only; the schema is config.ModelConfig)."""
    lines = [f"# {comment}", f"arch: {m.arch}", f"n_layer: {m.n_layer}", f"n_embd: {m.n_embd}",
             f"n_head: {m.n_head}", f"n_positions: {m.n_positions}"]
    if m.hf:
        lines.append("hf: {" + ", ".join(f"{k}: {v}" for k, v in m.hf.items()) + "}")
    path.write_text("\n".join(lines) + "\n")
