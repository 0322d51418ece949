"""Train one model on D tokens and log it: `run(cfg)` is what the Hydra app and the tests call."""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from harness import accounting, cells, data, fastpath, hparams, model, schedule, wsd
from harness.config import Config
from harness.errors import HarnessError
from harness.track import Tracker


class Diverged(HarnessError):
    """Loss became NaN or Inf; the message names the step."""


def run(cfg: Config) -> dict:
    """Train one cell unless it already finished; return its summary.json record (WSD: trunk.json)."""
    derived, hp = hparams.resolve(cfg)
    cid = cells.cell_id(cfg, derived.D)
    directory = cells.run_dir(cfg, cid)
    previous = wsd.read_trunk(directory) if cfg.branches else cells.read_summary(directory)
    if previous and previous["status"] in cells.DONE:
        print(f"skip {cid}: already {previous['status']}")
        return previous
    corpus = data.prepare(cfg.data)
    if corpus.vocab_size > cfg.data.vocab_size:
        raise HarnessError(f"tokenizer has {corpus.vocab_size} tokens > data.vocab_size={cfg.data.vocab_size}")
    print_header(cid, derived, hp, corpus)
    flat = {**derived.flat(), **hp, "epochs": derived.D / corpus.train_tokens, "seed": cfg.seed,
            "cell_id": cid, "cell_key": cells.seedless_key(cfg, derived.D), "sweep": cfg.sweep.name,
            "arch": cfg.model.arch, "model": cfg.model.name,
            "corpus": corpus.key, "unique_train_tokens": corpus.train_tokens}
    if cfg.branches:
        return wsd.run(cfg, derived, hp, corpus, directory, flat)
    tracker = Tracker(cfg, directory, cid, flat)
    try:
        result = train(cfg, derived, hp, corpus, tracker)
    except BaseException as e:  # record the failure (KeyboardInterrupt too), then let it propagate
        record_failure(tracker, e)
        raise
    record = tracker.finish("finished", result)
    print(f"{cid}: final val/loss {result['val/loss']:.4f} (step 0: {result['val/loss_init']:.4f})")
    return record


def record_failure(tracker: Tracker, e: BaseException) -> None:
    """Finish the run's record as diverged or failed and mark `e` so the sweep does not record it again."""
    status = "diverged" if isinstance(e, Diverged) else "failed"
    tracker.finish(status, {}, error=str(e) if status == "diverged" else f"{type(e).__name__}: {e}")
    e.recorded = True


def print_header(cid: str, d: accounting.Derived, hp: dict, corpus: data.Corpus) -> None:
    c = d.C
    print(f"[{cid}] N={d.N:,} (non-embedding {d.N_nonembed:,})  D={d.D:,} tokens "
          f"({d.D / d.N:.1f}/param, {d.D / corpus.train_tokens:.2f} epochs)  "
          f"C={c['6N']:.3e} (6N) {c['6N_attn']:.3e} (6N+attn) {c['kaplan']:.3e} (Kaplan)  "
          f"steps={d.steps} batch={d.batch_tokens} tokens lr={hp['lr']:.2e} warmup={hp['warmup_tokens']} tokens")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError(f"device={name} requested but CUDA is not available")
    return torch.device(name)


def make_optimizer(net: torch.nn.Module, cfg: Config, lr: float, device: torch.device):
    o = cfg.optim
    decay = [p for p in net.parameters() if p.dim() >= 2]  # matrices; not norms and biases
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(o.beta1, o.beta2), eps=o.eps,
                             fused=device.type == "cuda")


class Session:
    """Model, optimizer, data and held-out windows of one run; `step` is one optimizer step."""

    def __init__(self, cfg: Config, d: accounting.Derived, hp: dict, corpus: data.Corpus):
        self.device = pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        ctx = cfg.model.n_positions
        self.net = model.build(cfg.model, cfg.data.vocab_size, cfg.seed).to(self.device)
        # chunked cross-entropy: the (tokens x vocab) fp32 logits are never materialized whole
        self.loss_fn = fastpath.compile_loss() if cfg.compile else fastpath.lm_loss
        self.opt = make_optimizer(self.net, cfg, hp["lr"], self.device)
        self.batches = data.Batches(corpus, ctx, d.batch_tokens // ctx, cfg.seed)
        self.val = torch.from_numpy(data.val_windows(corpus, ctx, cfg.data.val_tokens)).to(self.device)
        self.grad_clip = cfg.optim.grad_clip

    def autocast(self):
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.device.type == "cuda")

    def step(self, lr: float) -> torch.Tensor:
        for group in self.opt.param_groups:
            group["lr"] = lr
        batch = torch.from_numpy(self.batches.next())
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        with self.autocast():
            loss = self.loss_fn(self.net, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()

    @torch.no_grad()
    def evaluate(self) -> float:
        self.net.eval()
        total = 0.0
        for chunk in self.val.split(64):
            with self.autocast():
                total += fastpath.lm_loss(self.net, chunk).item() * len(chunk)
        self.net.train()
        return total / len(self.val)

    def snapshot(self) -> dict:
        """Everything a branch changes, to return to the trunk afterwards (WSD cooldowns)."""
        return copy.deepcopy({"net": self.net.state_dict(), "opt": self.opt.state_dict(),
                              "batches": self.batches.state()})

    def restore(self, snap: dict) -> None:
        self.net.load_state_dict(snap["net"])
        self.opt.load_state_dict(snap["opt"])
        self.batches.restore(snap["batches"])


def check_finite(value: float, what: str, step: int, steps: int) -> None:
    if not math.isfinite(value):
        raise Diverged(f"non-finite {what} {value} at step {step} of {steps}")


def train(cfg: Config, d: accounting.Derived, hp: dict, corpus: data.Corpus, tracker: Tracker) -> dict:
    s = Session(cfg, d, hp, corpus)
    warmup_steps = math.ceil(hp["warmup_tokens"] / d.batch_tokens)
    eval_at = {round(d.steps * (i + 1) / (cfg.evals + 1)) for i in range(cfg.evals)}
    check_every = 1 if s.device.type == "cpu" else cfg.log_every  # CPU: checking costs no host sync

    loss_init = s.evaluate()
    tracker.log({"val/loss": loss_init, "tokens": 0}, step=0)
    recent, t0 = [], time.time()
    bar = tqdm(total=d.D, unit="tok", unit_scale=True, mininterval=2.0, leave=False)
    for step in range(d.steps):
        lr = schedule.lr_at(step, d.steps, warmup_steps, hp["lr"], cfg.optim)
        loss = s.step(lr)
        bar.update(d.batch_tokens)
        if (step + 1) % check_every == 0 or step + 1 == d.steps:
            recent = (recent + [loss.item()])[-20:]
            check_finite(recent[-1], "training loss", step + 1, d.steps)
        if (step + 1) % cfg.log_every == 0:
            tokens = (step + 1) * d.batch_tokens
            tracker.log({"train/loss": recent[-1], "lr": lr, "tokens": tokens,
                         "tokens_per_s": tokens / (time.time() - t0)}, step=step + 1)
        if step + 1 in eval_at:
            tracker.log({"val/loss": s.evaluate()}, step=step + 1)
    bar.close()
    wall = time.time() - t0
    final = s.evaluate()
    check_finite(final, "validation loss", d.steps, d.steps)
    tracker.log({"val/loss": final, "tokens": d.D}, step=d.steps)
    return {"val/loss": final, "val/loss_init": loss_init, "train/loss": float(np.mean(recent[-10:])),
            "train_s": round(wall, 2), "tokens_per_s": d.D / wall, "val_tokens": int(s.val[:, 1:].numel())}
