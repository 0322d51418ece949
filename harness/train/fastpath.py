"""CUDA fast path of the training step: chunked cross-entropy and compile caching.

`lm_loss(net, batch)` is a drop-in for `train.loss_fn`: the same mean next-token cross-entropy, but
the (B*T, V) logits are never materialized whole. At small widths the head dominates the step (at
d=128, V=32768 it is ~5x the parameter FLOPs of four blocks) and full fp32 logits cost more memory traffic than
the matmuls that make them, so this is where a compiled HF model loses to a hand-written reference.
"""
from __future__ import annotations

import torch

CHUNK_TOKENS = 8192  # logit rows alive at once: 8192 x 32768 fp32 = 1 GiB; matmuls still full-speed
# Evaluation on CPU: logits in blocks of at most this many bytes. A 64-window evaluation chunk is
# 8192 x 2048 fp32 = 64 MiB of logits plus two temporaries of that size, each above glibc's largest
# mmap threshold (32 MiB), so each was mmapped, page-faulted in and handed back: measured 400k page
# faults and 1.6 s per evaluation of gpt2-30k (65k tokens), 6 evaluations 40 % of a 200k-token cell.
# Per-row losses do not depend on the block (tests/test_fastpath.py), and they are still summed one
# chunk at a time, so the loss is the same bit for bit.
CPU_EVAL_BLOCK_BYTES = 4 << 20


def _compute_dtype(device_type: str, fallback: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return fallback


class ChunkedCrossEntropy(torch.autograd.Function):
    """mean_i CE(h_i W^T, y_i) over chunks of rows, with the gradient computed in the forward.

    Why gradients in the forward rather than recomputing logits in the backward: the backward then
    needs no logits at all, so the head costs 3 matmuls (logits, dh, dW) as in the unfused path,
    where recomputation would cost 4; at small widths the head is most of the step, so that extra
    matmul would cost ~25% of it. The price is that a forward with grad enabled does the backward's
    work even if backward is never called (eval runs under no_grad, which skips it) and that
    double backward is unsupported.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, compute_dtype, chunk_tokens, grad_enabled):
        # Autocast is off in here: dtypes are explicit, so forward and backward agree with or without it.
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute_dtype)
            # needs_input_grad says True for a parameter even under no_grad (evaluation), where no
            # backward can follow: grad_enabled is the caller's grad mode, since in here it is always off
            need_grad = grad_enabled and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
            acc = torch.promote_types(compute_dtype, torch.float32)  # softmax and sums: fp32 at least
            rows = hidden.shape[0]
            loss = hidden.new_zeros((), dtype=acc)
            grad_hidden = torch.empty_like(hidden) if need_grad else None
            grad_weight = torch.zeros_like(weight, dtype=acc) if need_grad else None
            block = chunk_tokens
            if not need_grad and hidden.device.type == "cpu":
                block = max(1, CPU_EVAL_BLOCK_BYTES // (weight.shape[0] * acc.itemsize))
            for start in range(0, rows, chunk_tokens):
                h = hidden[start:start + chunk_tokens].to(compute_dtype)
                y = targets[start:start + chunk_tokens]
                if block < len(h):  # evaluation on CPU: per-row losses block by block, summed as one chunk
                    row_loss = torch.cat([_row_losses(h[i:i + block], w, y[i:i + block], acc)[0]
                                          for i in range(0, len(h), block)])
                    loss = loss + row_loss.sum()
                    continue
                row_loss, logits, lse = _row_losses(h, w, y, acc)
                loss = loss + row_loss.sum()
                if need_grad:  # d(mean CE)/d logits = (softmax - onehot) / rows
                    g = logits.sub_(lse[:, None]).exp_()  # in place: the logits are done with
                    if torch.compiler.is_compiling():  # pointwise: Inductor fuses it into one pass
                        onehot = torch.arange(g.shape[1], device=g.device)[None, :] == y[:, None]
                        g = torch.where(onehot, g - 1, g)
                    else:  # eager: touch one element per row, not the whole chunk again
                        g.scatter_add_(1, y[:, None], g.new_full((len(y), 1), -1.0))
                    g = g.div_(rows).to(compute_dtype)
                    grad_hidden[start:start + chunk_tokens] = (g @ w).to(hidden.dtype)
                    grad_weight += (g.t() @ h).to(acc)  # sum over chunks in fp32
        if need_grad:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return loss / rows

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss.to(grad_hidden.dtype), grad_weight * grad_loss, None, None, None, None


def _row_losses(h, w, y, acc):
    """Per-row cross-entropy of logits h @ w.T against y, with the logits and their logsumexp."""
    logits = (h @ w.t()).to(acc)  # fp32 at least; log-softmax needs the range
    lse = torch.logsumexp(logits, dim=-1)
    return lse - logits.gather(1, y[:, None]).squeeze(1), logits, lse


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """Mean cross-entropy of logits hidden @ weight.T against targets; hidden (rows, d), weight (V, d).

    Logits are computed in the autocast dtype when autocast is on (as the unfused path does), else in
    hidden's dtype; the softmax is always fp32.
    """
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1] or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"shapes hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}, "
                         f"targets {tuple(targets.shape)} do not match")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens} must be >= 1")
    dtype = _compute_dtype(hidden.device.type, hidden.dtype)
    return ChunkedCrossEntropy.apply(hidden, weight, targets, dtype, chunk_tokens, torch.is_grad_enabled())


def lm_loss(net: torch.nn.Module, batch: torch.Tensor, chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """Mean next-token cross-entropy of an HF causal LM on batch (B, T+1); equals `train.loss_fn`.
    A Mixture-of-Experts model in training also gets its router's load-balancing loss, at the
    architecture's own coefficient (as its HF forward adds it), kept on `net.router_stats` for the
    log; evaluation (no grad) is the LM loss alone, the loss a law is fitted to."""
    moe = router(net) if torch.is_grad_enabled() else None
    out = net.base_model(input_ids=batch[:, :-1], **({"output_router_logits": True} if moe else {}))
    head = net.get_output_embeddings().weight
    loss = chunked_cross_entropy(out.last_hidden_state.flatten(0, 1), head, batch[:, 1:].flatten(), chunk_tokens)
    if moe is None:
        return loss
    balance, E, k, coef = moe
    aux = balance(out.router_logits, E, k, None)
    with torch.no_grad():  # tokens per expert, per layer: max share x E (1 = balanced, E = one expert takes all)
        load = [torch.bincount(g.topk(k, dim=-1).indices.flatten(), minlength=E).float() for g in out.router_logits]
        net.router_stats = {"router/aux_loss": aux.detach(),
                            "router/max_load": torch.stack([c.max() / c.sum() * E for c in load]).detach()}
    return loss + coef * aux


def router(net: torch.nn.Module):
    """(load-balancing loss function, experts, top-k, coefficient) of a Mixture-of-Experts LM, else None."""
    import sys

    cfg = net.config
    E = getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts", None)
    k = getattr(cfg, "num_experts_per_tok", None)
    balance = getattr(sys.modules[type(net).__module__], "load_balancing_loss_func", None)
    if not (E and k and balance and hasattr(cfg, "router_aux_loss_coef")):
        return None
    return balance, E, k, cfg.router_aux_loss_coef


RECOMPILE_LIMIT = 64  # distinct (size, batch shape) graphs per function in one process: a whole sweep's sizes


def compile_loss(fn=lm_loss, backend: str = "inductor"):
    """torch.compile(fn) set up for a sweep that trains many cells in one process.

    What we measured (CPU, torch 2.13, transformers 5.23, GPT-2 2L/32d; same guards apply on CUDA):
    - a second model instance of identical shapes reuses the compiled graphs: no recompile, ~0.6 s
      against ~43 s for the first compile (parameters are graph inputs, not baked-in constants);
    - a second `torch.compile(fn)` of the same function shares that cache (it hangs off fn's code
      object), so `Session` may compile per cell: cells of one size pay the warm-up once;
    - a new width or depth recompiles (guards on int module attributes such as Conv1D.nf), ~17 s.
    So we pass dynamic=False: otherwise the second size turns on automatic dynamic shapes, and
    symbolic-shape kernels are slower and cannot serve a new depth anyway. And we raise the recompile
    limit: at the default (8) the ninth size in a process would silently run eager. Across processes
    Inductor's on-disk FX-graph and autotune caches (on by default) skip code generation, not tracing.
    """
    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, RECOMPILE_LIMIT)
    return torch.compile(fn, dynamic=False, backend=backend)


def full_logits_loss(net: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The plain reference: whole (tokens x vocab) fp32 logits, then F.cross_entropy."""
    logits = net(input_ids=batch[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
