"""Benchmark: the harness's training step against a hand-written compiled GPT of identical shapes.

Usage:
  python scripts/bench_throughput.py --device cuda            # 4L/128d .. 12L/768d, V=32768, T=1024
  python scripts/bench_throughput.py --device cpu             # tiny sizes, eager, < 90 s on 2 cores
  python scripts/bench_throughput.py --device cpu --smoke     # one tiny size through torch.compile
Both sides run in one process, alternating in rounds (each reports its median round), on the same
batches with the same step: host uint16 tokens -> pinned, non-blocking copy -> bf16 autocast loss ->
backward -> clip -> fused AdamW (CPU: foreach), no host sync inside the timed steps. They differ
only in model and loss: harness = HF GPT-2 from `harness.train.model.build` with `fastpath.lm_loss`
(chunked CE); reference = the nanoGPT-style `RefGPT` below with full logits.
Writes results/bench/{gpu,cpu}_<YYYY-MM-DD>.json.

MFU conventions (FLOPs per token, training = 3 x forward):
  6N       6 x N_matmul, N_matmul = non-embedding params + V*d: every parameter used in a matmul
           (the head counts, the embedding lookups do not; tied or untied alike).
  6N+attn  6N + 12 L T d: adds attention scores and values, not halved for the causal mask
           (PaLM, Chowdhery et al. 2022, app. B; nanoGPT's estimate_mfu).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.config import ModelConfig, OptimConfig  # noqa: E402
from harness.train import accounting, fastpath, loop, model  # noqa: E402

PEAK_BF16 = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12,
             "A100": 312e12}  # dense bf16 FLOP/s from NVIDIA datasheets; first substring match wins
DEFAULTS = {"cuda": {"sizes": "4x128,6x256,8x512,12x768", "vocab": 32768, "ctx": 1024,
                     "batch_tokens": 65536, "steps": 20, "warmup": 5},
            "cpu": {"sizes": "2x64,4x128", "vocab": 2048, "ctx": 128, "batch_tokens": 4096, "steps": 10,
                    "warmup": 2}}


class Block(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.attn_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.qkv(self.ln_1(x)).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))  # GPT-2's gelu_new


class RefGPT(nn.Module):
    """nanoGPT's model, minus its options: learned positions, tied head, biases, GELU MLP."""

    def __init__(self, n_layer: int, d: int, n_head: int, vocab: int, ctx: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def ref_loss(net: RefGPT, batch: torch.Tensor) -> torch.Tensor:
    logits = net(batch[:, :-1])  # whole (B, T, V) logits; cross_entropy autocasts them to fp32
    return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())


def build(side: str, m: ModelConfig, args, device: torch.device):
    """(net, optimizer, loss_fn) of one side; the optimizer is the harness's for both."""
    if side == "reference":
        net, loss = RefGPT(m.n_layer, m.n_embd, m.n_head, args.vocab, m.n_positions), ref_loss
    else:
        net = model.build(m, args.vocab, seed=0)
        loss = fastpath.full_logits_loss if side == "hf_full_logits" else fastpath.lm_loss  # the former: unfused
    net = net.to(device)
    return net, loop.make_optimizer(net, OptimConfig(), 1e-3, device), loss


def make_side(side, m, args, device, tokens) -> dict:
    """One side's model, optimizer and step function, warmed up (the first step compiles)."""
    net, opt, loss_fn = build(side, m, args, device)
    if args.compile:
        loss_fn = fastpath.compile_loss(loss_fn)
    cuda = device.type == "cuda"
    seqs, rng = args.batch_tokens // args.ctx, np.random.default_rng(0)

    def step():  # loop.Session.step, with random windows of a uint16 token array for the memmap
        for group in opt.param_groups:
            group["lr"] = 1e-3
        starts = rng.integers(0, len(tokens) - args.ctx - 1, seqs)
        batch = torch.from_numpy(np.stack([tokens[s:s + args.ctx + 1] for s in starts]).astype(np.int64))
        if cuda:
            batch = batch.pin_memory().to(device, non_blocking=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
            loss = loss_fn(net, batch, args.chunk_tokens) if side == "harness" else loss_fn(net, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        loss = step()
    sync(device)
    return {"step": step, "loss": loss,
            "out": {"N": model.count_params(net), "warmup_s": round(time.perf_counter() - t0, 2)}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_sides(sides: list[str], m, args, device, tokens) -> dict:
    """Every side's step time: `args.rounds` rounds, each timing steps/rounds steps of every side in
    turn, reported as the median round. A machine whose speed drifts (a shared host: the same side
    measured 16.3 and 25.9 ms/step an hour apart here) then slows every side alike."""
    state = {side: dict(make_side(side, m, args, device, tokens), round_ms=[], peak=0.0) for side in sides}
    per_round = max(1, args.steps // args.rounds)
    for _ in range(args.rounds):
        for side, st in state.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in range(per_round):
                st["loss"] = st["step"]()
            sync(device)
            st["round_ms"].append(1e3 * (time.perf_counter() - t0) / per_round)
            if device.type == "cuda":
                st["peak"] = max(st["peak"], torch.cuda.max_memory_allocated() / 2**30)
    results = {}
    for side, st in state.items():
        ms = float(np.median(st["round_ms"]))
        out = dict(st["out"], step_ms=ms, tokens_per_s=1e3 * args.batch_tokens / ms,
                   round_ms=[round(v, 3) for v in st["round_ms"]], final_loss=st["loss"].item())
        if device.type == "cuda":
            out["peak_mem_gib"] = st["peak"]  # all sides are alive at once: an upper bound
        results[side] = out
    return results


def bench_size(spec: str, args, device, tokens, peak) -> dict:
    n_layer, d = (int(v) for v in spec.split("x"))
    m = ModelConfig(arch="gpt2", n_layer=n_layer, n_embd=d, n_head=max(1, d // 64), n_positions=args.ctx)
    _, n_nonembed = accounting.param_counts(m, args.vocab)
    n_matmul = n_nonembed + args.vocab * d
    fpt = {"6N": 6 * n_matmul, "6N+attn": 6 * n_matmul + 12 * n_layer * args.ctx * d}
    row = {"size": f"{n_layer}L/{d}d", "n_layer": n_layer, "n_embd": d, "n_head": m.n_head,
           "N_nonembed": n_nonembed, "N_matmul": n_matmul, "flops_per_token": fpt}
    timed = time_sides(args.sides, m, args, device, tokens)
    gc.collect()  # the sides' models and optimizer states, before the next size allocates
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for side, r in timed.items():
        if peak:
            r.update({f"mfu_{k}": v * r["tokens_per_s"] / peak for k, v in fpt.items()})
        row[side] = r
        print(f"  {row['size']:>9} {side:>15}: {r['tokens_per_s']:>12,.0f} tok/s  {r['step_ms']:8.2f} ms/step"
              + (f"  MFU {r['mfu_6N']:6.1%} (6N) {r['mfu_6N+attn']:6.1%} (6N+attn)" if peak else "")
              + f"  warm-up {r['warmup_s']:.1f} s  loss {r['final_loss']:.3f}", flush=True)
    if row["harness"]["N"] != row["reference"]["N"]:
        raise SystemExit(f"{row['size']}: harness has {row['harness']['N']} params, reference "
                         f"{row['reference']['N']}: shapes differ, the comparison is void")
    row["ratio"] = row["harness"]["tokens_per_s"] / row["reference"]["tokens_per_s"]
    print(f"  {row['size']:>9} ratio harness/reference = {row['ratio']:.3f}")
    return row


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", help="comma-separated n_layer x n_embd, e.g. 4x128,12x768 (n_head = n_embd/64)")
    p.add_argument("--steps", type=int, help="timed optimizer steps per side and size")
    p.add_argument("--rounds", type=int, default=5, help="the timed steps are split into this many "
                   "rounds, alternating sides; each side's step time is its median round")
    p.add_argument("--warmup", type=int, help="untimed steps first (compilation happens in the first)")
    p.add_argument("--batch-tokens", type=int, help="tokens per optimizer step (a multiple of --ctx)")
    p.add_argument("--vocab", type=int)
    p.add_argument("--ctx", type=int, help="context length in tokens")
    p.add_argument("--chunk-tokens", type=int, default=fastpath.CHUNK_TOKENS, help="rows per CE chunk")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="auto: on for cuda")
    p.add_argument("--with-unfused", action="store_true",
                   help="also time HF GPT-2 with full-logits CE (fastpath.full_logits_loss): what the chunked CE buys")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is steadier on a shared machine)")
    p.add_argument("--malloc", choices=["keep", "default"], default="keep",
                   help="CPU: keep freed memory in the heap as harness training does (loop.keep_freed_memory), "
                        "or leave glibc's defaults; both sides share the process, so both get it")
    p.add_argument("--smoke", action="store_true", help="one tiny size, compiled, 2 steps: does it run?")
    p.add_argument("--out", type=Path, help="JSON path; default results/bench/{gpu,cpu}_<date>.json")
    args = p.parse_args(argv)
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.smoke:
        args.sizes, args.steps, args.warmup, args.compile = "1x64", 2, 1, "on"
        args.ctx, args.vocab, args.batch_tokens = 64, 512, 512
    args.compile = args.compile == "on" or (args.compile == "auto" and args.device == "cuda")
    if args.batch_tokens % args.ctx:
        p.error(f"--batch-tokens {args.batch_tokens} is not a multiple of --ctx {args.ctx}")
    args.sides = ["harness", "reference"] + (["hf_full_logits"] if args.with_unfused else [])
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cpu" and args.malloc == "keep" and not loop.keep_freed_memory():
        print("this C library has no mallopt: --malloc keep has no effect")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as loop.Session
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if device.type == "cuda" else None
    tokens = np.random.default_rng(0).integers(0, args.vocab, 2**22, dtype=np.uint16)
    print(f"{name}, torch {torch.__version__}, compile={args.compile}, V={args.vocab}, T={args.ctx}, "
          f"{args.batch_tokens} tokens/step, peak bf16 {peak or 'n/a'} FLOP/s")
    t0 = time.perf_counter()
    rows = [bench_size(spec, args, device, tokens, peak) for spec in args.sizes.split(",")]
    result = {"date": datetime.date.today().isoformat(), "device": name, "torch": torch.__version__,
              "transformers": transformers.__version__, "cuda": torch.version.cuda,
              "peak_bf16_flops": peak, "cpu_threads": torch.get_num_threads(),
              "seconds_total": round(time.perf_counter() - t0, 1),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "mfu_conventions": {"6N": "6 x (non-embedding params + V*d) per token",
                                  "6N+attn": "6N + 12 n_layer ctx n_embd per token (PaLM app. B)"},
              "targets": {"ratio": ">= 1.0 at every size", "mfu_12L/768d_H100": ">= 0.45"},
              "sizes": rows}
    kind = "gpu" if device.type == "cuda" else "cpu"
    out = args.out or ROOT / "results" / "bench" / f"{kind}_{result['date']}{'_smoke' if args.smoke else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({result['seconds_total']} s)")
    return result


if __name__ == "__main__":
    main()
