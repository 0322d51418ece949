"""The one training loop: a Session (model, optimizer, data, held-out windows) and `run_steps`.

Cosine runs (train.py) and WSD trunks and branches (wsd.py) all step through `run_steps`.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import math
import platform
import time
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from harness.config import ModelConfig, OptimConfig
from harness.data import batches
from harness.errors import Diverged, HarnessError
from harness.train import dist, fastpath, model
from harness.train.spec import Spec

# One intra-op thread unless `threads` says otherwise. Measured on 2 cores (gpt2-50k,
# results/bench/contention_2026-11-23.json, `python scripts/bench_contention.py`): torch's default
# (one thread per core) ran 33.0k tokens/s quiet but 7.9k beside a busy loop and 3.6k beside a second
# cell (0.24x, 0.11x: OpenMP threads spin-waiting for a core that is taken); one thread ran 24.0k
# quiet, 24.5k and 22.6k beside them, so two cells side by side (hydra/launcher=parallel) give 1.37x
# one two-thread cell. OMP_WAIT_POLICY=PASSIVE halved the quiet speed. A fixed count also makes a
# cell's loss independent of the machine's core count (threads change a loss: records.env_key).
DEFAULT_THREADS = 1

# glibc hands freed blocks back to the kernel (mmap above a threshold, heap trimming above another),
# so a big buffer allocated again is page-faulted in again, zero-filled by the kernel. Both thresholds
# start at 128 KiB and rise only after a big block is freed, so how many faults a step pays depends on
# what ran before it: `scripts/bench_throughput.py` (no evaluation) measured ~2000 faults per step of
# gpt2 2L/36d at 512 tokens and 20-25 % of the step; a real cell, where the step-0 evaluation had
# already raised them, ~0.3 per step, but each evaluation then faulted ~300k times. Fixed thresholds
# make it deterministic: real cells (gpt2-30k and -50k, 300k tokens, two side by side, 3 repeats)
# went from 1.8-2.8M to 0.12M faults, 7.2-10.4 s to 3.7-4.7 s for 6 evaluations (with fastpath's
# blocked evaluation), the same step times and the same losses bit for bit (the allocator decides
# where a tensor lives, not what is computed). Blocks above MMAP_THRESHOLD (glibc's maximum) still
# go to mmap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers, glibc malloc.h
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse; False where the C library has no mallopt (macOS,
    Windows) or refuses it (musl), which leaves the allocator as it was."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library, whichever it is
    except (OSError, AttributeError, TypeError):  # TypeError: Windows cannot load None
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError(f"device={name} requested but CUDA is not available")
    return torch.device(name)


def setup(device_name: str, threads: int | None, local_rank: int | None = None) -> tuple[torch.device, dict]:
    """Pick the device (a process of a run across GPUs takes its local rank's), set CPU threads,
    and return the environment recorded with every run."""
    device = pick_device(device_name)
    if local_rank is not None and device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise HarnessError(f"process {local_rank} of this node has no GPU: {torch.cuda.device_count()} visible; "
                               "lower distributed.nproc (or gpus_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    torch.set_num_threads(threads or DEFAULT_THREADS)
    if device.type == "cpu":
        keep_freed_memory()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_model()
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "device": str(device), "device_name": name,
           "threads": torch.get_num_threads(), "dtype": "bfloat16" if bf16(device) else "float32",
           "deterministic": device.type == "cpu" or torch.are_deterministic_algorithms_enabled(),
           "host": platform.node()}
    return device, env


def bf16(device: torch.device) -> bool:
    """bf16 autocast on a CUDA device that has it (Ampere or later); fp32 elsewhere, recorded as the dtype."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_optimizer(net: torch.nn.Module, o: OptimConfig, lr: float, device: torch.device):
    decay = [p for p in net.parameters() if p.dim() >= 2]  # matrices; not norms and biases
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # CUDA: one fused kernel. CPU: foreach, the same per-tensor arithmetic as the default loop (weights
    # bit-identical after 60 steps of gpt2 2L/36d; tests/test_loop.py) without its Python overhead:
    # 1.34 against 1.83 ms per step there. CPU fused=True is faster still but changes the weights.
    cuda = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=lr, betas=(o.beta1, o.beta2), eps=o.eps, fused=cuda, foreach=not cuda)


class LossModule(torch.nn.Module):
    """The LM and its loss as one module, so DDP's and FSDP's hooks see the whole forward."""

    def __init__(self, lm: torch.nn.Module, loss_fn):
        super().__init__()
        self.lm, self.loss_fn = lm, loss_fn

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.lm, batch)


class Session:
    """Model, optimizer, data and held-out windows of one run; `step` is one optimizer step. On K
    processes (dist.py) each takes its 1/K of every batch and of the held-out windows."""

    def __init__(self, spec: Spec, m: ModelConfig, o: OptimConfig, corpus: batches.Corpus, device: torch.device,
                 d: dist.Dist = dist.ALONE):
        self.device, self.batch_tokens, self.d = device, spec.batch_tokens, d
        ctx = m.n_positions
        self.lm = model.build(m, spec.vocab_size, spec.seed).to(device)  # the same init on every process
        # chunked cross-entropy: the (tokens x vocab) fp32 logits are never materialized whole
        self.loss_fn = fastpath.compile_loss() if spec.compile else fastpath.lm_loss
        self.net = dist.wrap(LossModule(self.lm, self.loss_fn), d, device) if d.on else self.lm
        self.opt = make_optimizer(self.lm, o, spec.lr, device)
        self.batches = batches.make_batches(corpus, ctx, spec.batch_tokens // ctx, spec.seed)
        self.micro_seqs = (spec.micro_batch_tokens or spec.batch_tokens // d.world) // ctx
        sets = batches.val_sets(corpus, ctx, spec.val_tokens)  # {"": windows}, or a mixture's {domain: windows}
        # bytes per token, for bits per byte: comparable across tokenizers
        self.bytes_per_token = {name: batches.bytes_per_token(corpus, val) for name, val in sets.items()}
        # every process evaluates as many windows (FSDP's collectives need it): its share, and the
        # remainder, which every process evaluates and only the main one counts
        self.val = {name: self._shares(val, device) for name, val in sets.items()}
        self.last_eval: dict[str, float] = {}
        self.grad_clip = o.grad_clip
        self.log_every = spec.log_every
        self.check_every = 1 if device.type == "cpu" else spec.log_every  # CPU: checking costs no host sync

    def _shares(self, val: np.ndarray, device) -> tuple:
        share = len(val) // self.d.world
        mine = torch.from_numpy(val[self.d.rank * share:(self.d.rank + 1) * share]).to(device)
        return mine, torch.from_numpy(val[self.d.world * share:]).to(device), len(val)

    def autocast(self):
        return torch.autocast(self.device.type, torch.bfloat16, enabled=bf16(self.device))

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.net(batch) if self.d.on else self.loss_fn(self.net, batch)

    def step(self, lr: float) -> torch.Tensor:
        """One optimizer step on this process's share of the next batch, in micro-batches; returns
        the share's mean loss (see `mean`)."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        batch = torch.from_numpy(self.batches.next())
        share = len(batch) // self.d.world
        batch = batch[self.d.rank * share:(self.d.rank + 1) * share]
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        parts = batch.split(self.micro_seqs)
        if len(parts) == 1:
            loss = self._loss(batch)
            loss.backward()
        else:  # gradient accumulation: each part weighted by its share, synchronized on the last
            loss = 0.0
            for i, part in enumerate(parts):
                with self._sync(i == len(parts) - 1):
                    part_loss = self._loss(part) * (len(part) / len(batch))
                    part_loss.backward()
                loss = loss + part_loss.detach()
        torch.nn.utils.clip_grad_norm_(self.lm.parameters(), self.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()

    def router_log(self) -> dict:
        """A Mixture-of-Experts model's last router numbers: its load-balancing loss and, per layer,
        the busiest expert's share of tokens times the number of experts (a collapsed router shows)."""
        stats = getattr(self.lm, "router_stats", None)
        if not stats:
            return {}
        out = {"router/aux_loss": float(stats["router/aux_loss"])}
        out.update({f"router/max_load/layer{i}": float(v) for i, v in enumerate(stats["router/max_load"])})
        return out

    def _sync(self, last: bool):
        """DDP and FSDP all-reduce gradients on the last micro-batch of a step only."""
        if not self.d.on:
            return contextlib.nullcontext()
        if hasattr(self.net, "no_sync"):
            return contextlib.nullcontext() if last else self.net.no_sync()
        self.net.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def mean(self, loss: torch.Tensor) -> float:
        """A step's loss over every process (each holds an equal share of the batch)."""
        return dist.sum_([loss.item()], self.d, self.device)[0] / self.d.world

    @torch.no_grad()
    def evaluate(self) -> float:
        """Held-out loss (nats per token); a mixture's is the mean of its domains' (each in last_eval)."""
        self.net.eval()
        totals = []
        for mine, rest, _ in self.val.values():
            total = self._sum(mine)
            if len(rest):
                total += self._sum(rest) if self.d.main else 0.0
            totals.append(total)
        self.net.train()
        sums = dist.sum_(totals, self.d, self.device)
        self.last_eval = {name: t / n for (name, (_, _, n)), t in zip(self.val.items(), sums)}
        return float(np.mean(list(self.last_eval.values())))

    def _sum(self, windows: torch.Tensor) -> float:
        total = 0.0
        for chunk in windows.split(64):
            with self.autocast():
                loss = self.net(chunk) if self.d.on else fastpath.lm_loss(self.net, chunk)
            total += loss.item() * len(chunk)
        return total

    def final_loss(self, step: int) -> float:
        loss = self.evaluate()
        check_finite(loss, "validation loss", step, step)
        return loss

    def held_out(self) -> dict:
        """The last evaluation in bits per byte (nats per token / ln 2 / bytes per token) beside its bytes per
        token; a mixture's per domain (val/<domain>/loss, /bpb) and val/bpb, the mean of its domains'."""
        bpb = {name: loss / math.log(2) / self.bytes_per_token[name] for name, loss in self.last_eval.items()}
        if list(bpb) == [""]:
            return {"val/bpb": bpb[""], "val/bytes_per_token": self.bytes_per_token[""]}
        out = {"val/bpb": float(np.mean(list(bpb.values())))}
        for name, loss in self.last_eval.items():
            out.update({f"val/{name}/loss": loss, f"val/{name}/bpb": bpb[name],
                        f"val/{name}/bytes_per_token": self.bytes_per_token[name]})
        return out

    @property
    def val_tokens(self) -> int:
        return int(sum(n * (mine.shape[1] - 1) for mine, _, n in self.val.values()))

    def snapshot(self) -> dict:
        """Everything a branch changes, to return to the trunk afterwards (WSD cooldowns)."""
        return copy.deepcopy({"net": self.lm.state_dict(), "opt": self.opt.state_dict(),
                              "batches": self.batches.state()})

    def restore(self, snap: dict) -> None:
        self.lm.load_state_dict(snap["net"])
        self.opt.load_state_dict(snap["opt"])
        self.batches.restore(snap["batches"])


def check_finite(value: float, what: str, step: int, steps: int) -> None:
    if not math.isfinite(value):
        raise Diverged(f"non-finite {what} {value} at step {step} of {steps}")


def run_steps(s: Session, first: int, last: int, lr_of: Callable[[int], float],
              log: Callable[[dict, int], None], *, evals=(), of: int | None = None,
              on_step: Callable[[int, list], None] | None = None, recent: list | None = None) -> float:
    """Optimizer steps first..last-1 (0-based) at LR lr_of(step); returns the mean of the last
    (up to 10) checked training losses (`recent`: those of the steps before `first`, on a resume).
    `log(metrics, step)` gets train/loss, lr, tokens and tokens/s every log_every steps and val/loss
    after each step in `evals`; `on_step(done, recent)` runs after every step (checkpoints); `of`
    is the run's length for messages (default `last`)."""
    recent, t0 = list(recent or []), time.time()
    bar = tqdm(total=(last - first) * s.batch_tokens, unit="tok", unit_scale=True, mininterval=2.0,
               leave=False)  # TQDM_DISABLE=1 silences it
    for step in range(first, last):
        lr = lr_of(step)
        loss = s.step(lr)
        done = step + 1
        bar.update(s.batch_tokens)
        if done % s.check_every == 0 or done == last:
            recent = (recent + [s.mean(loss)])[-10:]
            check_finite(recent[-1], "training loss", done, of or last)
        if done % s.log_every == 0:  # a checked step: check_every is 1 or log_every
            log({"train/loss": recent[-1], "lr": lr, "tokens": done * s.batch_tokens,
                 "tokens_per_s": (done - first) * s.batch_tokens / (time.time() - t0), **s.router_log()}, done)
        if done in evals:
            log({"val/loss": s.evaluate(), **{f"val/{n}/loss": v for n, v in s.last_eval.items() if n}}, done)
        if on_step is not None:
            on_step(done, recent)
    bar.close()
    return float(np.mean(recent)) if recent else float("nan")
