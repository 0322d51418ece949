"""Build HF causal LMs from our config (arch.py): random init, SDPA attention, never from_pretrained."""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, GPT2LMHeadModel, LlamaForCausalLM

from harness.config import ModelConfig
from harness.train.accounting import validate_model
from harness.train.arch import hf_config


def build(m: ModelConfig, vocab_size: int, seed: int) -> torch.nn.Module:
    validate_model(m, vocab_size)
    torch.manual_seed(seed)
    config = hf_config(m, vocab_size)
    config._attn_implementation = "sdpa"  # fused scaled-dot-product attention (flash on CUDA)
    if m.arch == "gpt2":
        return GPT2LMHeadModel(config)
    if m.arch == "llama":
        return LlamaForCausalLM(config)
    return AutoModelForCausalLM.from_config(config)


def count_params(model: torch.nn.Module) -> int:
    """Trainable parameters, each shared tensor once (tied embeddings)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
