"""Build HF GPT-2 and Llama models from our config: random init, SDPA attention, never from_pretrained."""
from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from harness.config import ModelConfig
from harness.train.accounting import mlp_width, validate_model


def hf_config(m: ModelConfig, vocab_size: int):
    if m.arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_positions=m.n_positions, n_embd=m.n_embd, n_layer=m.n_layer,
            n_head=m.n_head, n_inner=mlp_width(m), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            tie_word_embeddings=m.tie_word_embeddings, use_cache=False, bos_token_id=0, eos_token_id=0)
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=m.n_embd, intermediate_size=mlp_width(m),
        num_hidden_layers=m.n_layer, num_attention_heads=m.n_head,
        num_key_value_heads=m.n_kv_head or m.n_head, max_position_embeddings=m.n_positions,
        tie_word_embeddings=m.tie_word_embeddings, use_cache=False, bos_token_id=0, eos_token_id=0)


def build(m: ModelConfig, vocab_size: int, seed: int) -> torch.nn.Module:
    validate_model(m, vocab_size)
    torch.manual_seed(seed)
    cls = GPT2LMHeadModel if m.arch == "gpt2" else LlamaForCausalLM
    config = hf_config(m, vocab_size)
    config._attn_implementation = "sdpa"  # fused scaled-dot-product attention (flash on CUDA)
    return cls(config)


def count_params(model: torch.nn.Module) -> int:
    """Trainable parameters, each shared tensor once (tied embeddings)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
