"""Architectures: our ModelConfig onto any causal LM of the installed transformers, and its counts.

GPT-2 and Llama keep their explicit configs (every committed cell was trained with them). Any other
`model.arch` is a model_type of transformers: the generic fields (layers, width, heads, KV heads,
MLP width, context, tied embeddings) are mapped onto its config by the standard names every modern
HF config uses, and `model.hf` passes any further field through (experts, top-k, QK-norm...).
Torch-free except `counts`, which builds the model on the meta device (no memory) for the
architectures accounting.py has no formula for.
"""
from __future__ import annotations

import difflib
import math

from harness.config import ModelConfig
from harness.errors import HarnessError


def mlp_width(m: ModelConfig) -> int:
    if m.n_inner is not None:
        return m.n_inner
    if m.arch != "gpt2":  # the gated (SwiGLU) MLP of Llama and the architectures after it
        return 8 * math.ceil(8 * m.n_embd / 3 / 8)  # SwiGLU keeps ~8 d^2 MLP params (Touvron et al. 2023)
    return 4 * m.n_embd


def check_arch(arch: str) -> None:
    """`arch` must be a causal-LM model_type of the installed transformers (read without torch)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if arch not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        near = difflib.get_close_matches(arch, list(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES), n=3)
        raise HarnessError(f"model.arch={arch!r} is not a causal-LM model_type of the installed transformers"
                           + (f" (did you mean {', '.join(near)}?)" if near else "")
                           + "; e.g. gpt2, llama, qwen3, olmo2, mistral, mixtral, olmoe, qwen3_moe")


def hf_config(m: ModelConfig, vocab_size: int):
    from transformers import AutoConfig, GPT2Config, LlamaConfig

    if m.arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_positions=m.n_positions, n_embd=m.n_embd, n_layer=m.n_layer,
            n_head=m.n_head, n_inner=mlp_width(m), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            tie_word_embeddings=m.tie_word_embeddings, use_cache=False, bos_token_id=0, eos_token_id=0, **m.hf)
    if m.arch == "llama":
        return LlamaConfig(
            vocab_size=vocab_size, hidden_size=m.n_embd, intermediate_size=mlp_width(m),
            num_hidden_layers=m.n_layer, num_attention_heads=m.n_head,
            num_key_value_heads=m.n_kv_head or m.n_head, max_position_embeddings=m.n_positions,
            tie_word_embeddings=m.tie_word_embeddings, use_cache=False, bos_token_id=0, eos_token_id=0, **m.hf)
    generic = dict(vocab_size=vocab_size, hidden_size=m.n_embd, intermediate_size=mlp_width(m),
                   num_hidden_layers=m.n_layer, num_attention_heads=m.n_head,
                   num_key_value_heads=m.n_kv_head or m.n_head, max_position_embeddings=m.n_positions,
                   tie_word_embeddings=m.tie_word_embeddings, use_cache=False, bos_token_id=0, eos_token_id=0,
                   pad_token_id=0)
    defaults = AutoConfig.for_model(m.arch)
    if hasattr(defaults, "head_dim"):  # some configs default it to 128 whatever the width
        generic["head_dim"] = m.n_embd // m.n_head
    for key in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(defaults, key):
            generic[key] = 0.0
    unknown = [k for k in m.hf if not hasattr(defaults, k)]
    if unknown:
        raise HarnessError(f"model.hf.{unknown[0]} is not a field of transformers' {type(defaults).__name__} "
                           f"(model.arch={m.arch})")
    return AutoConfig.for_model(m.arch, **{**generic, **m.hf})


def counts(m: ModelConfig, vocab_size: int) -> dict:
    """Parameters of the model built on the meta device (no memory): total (shared tensors once),
    embedding (input and position embeddings, and an untied head), non-embedding, and the active
    non-embedding parameters per token (a Mixture-of-Experts layer's experts count at top-k / E:
    router, shared experts and everything else in full)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = hf_config(m, vocab_size)
    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in net.parameters())
    embed = {id(p) for p in net.get_input_embeddings().parameters()}
    embed |= {id(p) for name, mod in net.named_modules() if "position" in name or name.endswith("wpe")
              for p in mod.parameters(recurse=False)}
    embed |= {id(p) for p in net.get_output_embeddings().parameters()}
    n_embed = sum(p.numel() for p in net.parameters() if id(p) in embed)
    experts = {name: p for name, p in net.named_parameters() if ".experts." in name}
    k = getattr(config, "num_experts_per_tok", None)
    E = getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None)
    if experts and not (k and E):
        raise HarnessError(f"model.arch={m.arch}: expert parameters but no num_experts_per_tok / num_experts")
    inactive = sum(p.numel() for p in experts.values()) * (1 - k / E) if experts else 0
    return {"total": total, "embedding": n_embed, "nonembed": total - n_embed,
            "active_nonembed": int(round(total - n_embed - inactive)), "experts": E or 0, "top_k": k or 0}
