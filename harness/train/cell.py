"""Train one sweep cell and record it: `run(cfg)` is what the Hydra app and the tests call.

A cell is trained by one job at a time (lock.py); a finished cell is skipped; a cell with a
checkpoint resumes from it (checkpoint.py); the corpus is verified against its manifest before any
step; a cell that fails is recorded as failed. On K processes (dist.py: distributed.nproc=K, or
torchrun / srun) the main one decides, locks and records, and every process trains its share.
"""
from __future__ import annotations

import math
import time

from harness.config import BudgetConfig, CheckpointConfig, Config, ModelConfig, OptimConfig, to_dict
from harness.data import batches, mixture
from harness.errors import HarnessError
from harness.store import records
from harness.store.lock import Busy, CellLock
from harness.train import accounting, checkpoint, dist, launch, loop, schedule, track, wsd
from harness.train.spec import Spec, resolve


def run(cfg: Config, place: tuple[int, int, int] | None = None, locked: bool = False) -> dict:
    """Train one cell unless it is done or being trained elsewhere; return its record
    (WSD: the trunk's record; a busy cell: {"status": "busy", ...}). `place` is (rank, world, local
    rank) of this process in a run across processes (default: what torchrun or srun set, else alone);
    `locked`: the caller holds the cell's lock (launch.py's spawning parent)."""
    spec = resolve(cfg)
    place = place or dist.launched()
    if place is None and spec.world_size > 1:
        return launch.spawn(cfg, spec, _done, _worker)
    rank, world, local = place or (0, 1, 0)
    name = records.TRUNK if spec.branches else records.RUN
    device, env = loop.setup(cfg.device, cfg.threads, local if world > 1 else None)
    d = dist.init(cfg.distributed, device, rank, world, local)
    env.update(world_size=world, strategy=d.strategy if d.on else None, micro_batch_tokens=spec.micro_batch_tokens)
    lock, decision = None, None
    if d.main:  # the main process decides for all: done, busy, or train (and holds the lock)
        try:
            decision = _done(spec, name, env)
            if decision is None and not locked:
                # a corpus that cannot serve the cell is refused before any directory exists
                _checked_corpus(spec, cfg.model, cfg.budget)
                lock = CellLock(spec.directory).acquire()
                if (decision := _done(spec, name, env)) is not None:  # finished while we waited
                    lock.release()
        except Busy as e:  # another job trains it: skip; the sweep report waits for it at the end
            print(f"skip {spec.cell_id}: {e}")
            decision = {"status": "busy", "cell_id": spec.cell_id, "error": str(e)}
        except HarnessError as e:
            decision = {"error": str(e)}
    decision = dist.broadcast(decision, d)
    if decision is not None:
        if set(decision) == {"error"}:
            raise HarnessError(decision["error"])
        return decision
    try:
        return _train(cfg, spec, device, env, d)
    finally:
        if lock is not None:
            lock.release()


def _worker(rank: int, cfg: Config, world: int, errors) -> None:
    """A process spawned by launch.spawn: this cell at place (rank, world, rank), under the parent's lock."""
    launch.serve(rank, world, errors, lambda: run(cfg, place=(rank, world, rank), locked=True))


def _checked_corpus(spec: Spec, m: ModelConfig, b: BudgetConfig) -> batches.Corpus:
    corpus = batches.prepare(spec.data)
    check_corpus(spec, m, b, corpus)
    return corpus


def _train(cfg: Config, spec: Spec, device, env: dict, d: dist.Dist) -> dict:
    corpus = _checked_corpus(spec, cfg.model, cfg.budget)
    if d.main:
        print_header(spec, corpus, env)
    base = {**spec.flat(), "epochs": spec.D / corpus.unique, "seed": cfg.seed,
            "sweep": cfg.sweep.name, "arch": cfg.model.arch, "model": cfg.model.name,
            "corpus": corpus.key, "unique_train_tokens": corpus.unique, **mixture_summary(spec, corpus)}
    dest = track.Destination(cfg.wandb, cfg.sweep.name, to_dict(cfg), d.main)
    s = loop.Session(spec, cfg.model, cfg.optim, corpus, device, d)
    if spec.branches:
        return wsd.train(spec, cfg.optim, cfg.checkpoint, dest, s, env, base)
    return train_cosine(spec, cfg.optim, cfg.checkpoint, dest, s, env, base)


# What the rules derive from a config (hparams.py, accounting.py): the cell id hashes the config,
# not these, so a finished record is only reused while the current rules still give the same values.
DERIVED = ("D", "steps", "batch_tokens", "lr", "warmup_tokens")


def _done(spec: Spec, name: str, env: dict) -> dict | None:
    previous = records.read(spec.directory, name)
    if not records.is_done(previous):
        return None
    if name == records.TRUNK and previous["status"] == "finished" and not _branches_done(spec):
        return None  # the trunk trains again; the branches that are done are skipped (wsd._branch)
    now, then = spec.flat(), previous.get("summary", {})
    changed = [k for k in DERIVED if k in then and not math.isclose(then[k], now[k], rel_tol=1e-12)]
    if changed:
        raise HarnessError(f"{spec.directory} was trained with " + ", ".join(f"{k}={then[k]:.6g}" for k in changed)
                           + " but the current rules give " + ", ".join(f"{k}={now[k]:.6g}" for k in changed)
                           + ": a rule changed since; move that directory away to retrain the cell, or pin "
                           "the old values (optim.lr, optim.batch_tokens, optim.warmup_tokens)")
    note = ""
    if previous.get("env") and env and records.env_key(previous["env"]) != records.env_key(env):
        note = f" (under {records.env_key(previous['env'])}; now {records.env_key(env)})"
    print(f"skip {spec.cell_id}: already {previous['status']}{note}")
    return previous


def _branches_done(spec: Spec) -> bool:
    """Every branch of a finished trunk has a done record; one that is unreadable or gone is rebuilt
    from its complete wandb log where it has one (track.restore)."""
    for _, end in spec.branches:
        b = spec.branch(end).directory
        rec = records.read(b)
        if records.is_done(rec):
            continue
        why = rec["error"] if rec else f"{b / records.RUN} is missing"
        if (rebuilt := track.restore(b)) is not None:
            print(f"{why}: rebuilt it from its complete wandb log ({rebuilt['status']})")
            continue
        print(f"{why} and there is no complete wandb log to rebuild it from: training the trunk again")
        return False
    return True


def check_corpus(spec: Spec, m: ModelConfig, b: BudgetConfig, corpus: batches.Corpus) -> None:
    """What needs the corpus: its vocabulary and one batch of its training split."""
    d = spec.data.cfg
    if corpus.vocab_size > d.vocab_size:
        raise HarnessError(f"tokenizer has {corpus.vocab_size} tokens > data.vocab_size={d.vocab_size}")
    repeats = batches.repetition_errors(spec.cell_id, accounting.budget_name(b), spec.D, corpus, d.max_epochs)
    if repeats:
        raise HarnessError(repeats)
    ctx = m.n_positions
    if (corpus.train_tokens - 1) // ctx < spec.batch_tokens // ctx:
        raise HarnessError(f"{accounting.budget_name(b)}: batches of {spec.batch_tokens:,} tokens "
                           f"(D={spec.D:.3g}, {spec.D / corpus.train_tokens:.3g} epochs) exceed the "
                           f"training split of {corpus.train_tokens:,} tokens; lower the budget or set "
                           "optim.batch_tokens")


def mixture_summary(spec: Spec, corpus: batches.Corpus) -> dict:
    """A mixture run's arm (column `data`) and, per domain, its share, tokens trained and epochs."""
    if not corpus.domains:
        return {}
    out = {"data": spec.data.label}
    for name, share, unique, _ in corpus.domains:
        out.update({f"mix/{name}/share": share, f"mix/{name}/tokens": round(spec.D * share),
                    f"mix/{name}/epochs": spec.D * share / unique, f"mix/{name}/unique_tokens": unique})
    for name, how in corpus.filters:  # what the filter kept (mixture.filtered)
        kept = mixture.filtered(corpus.dir, name, how)
        out.update({f"mix/{name}/filter": how, f"mix/{name}/keep_rate_docs": kept["kept_docs"] / kept["docs"],
                    f"mix/{name}/keep_rate_tokens": kept["kept_tokens"] / kept["tokens"]})
    return out


def print_header(spec: Spec, corpus: batches.Corpus, env: dict) -> None:
    c = spec.C
    print(f"[{spec.cell_id}] N={spec.N:,} (non-embedding {spec.N_nonembed:,})  D={spec.D:,} tokens "
          f"({spec.D / spec.N:.1f}/param, {spec.D / corpus.unique:.2f} epochs)  "
          f"C={c['6N']:.3e} (6N) {c['6N_attn']:.3e} (6N+attn) {c['kaplan']:.3e} (Kaplan)  "
          f"steps={spec.steps} batch={spec.batch_tokens} tokens lr={spec.lr:.2e} "
          f"warmup={spec.warmup_tokens} tokens  [{records.env_key(env)}]")


def train_cosine(spec: Spec, o: OptimConfig, c: CheckpointConfig, dest: track.Destination, s: loop.Session,
                 env: dict, base: dict) -> dict:
    extra = checkpoint.resume(spec, s)
    tracker = track.Tracker(dest, spec.directory, spec.cell_id, base, env, extra)
    try:
        first = extra["step"] if extra else 0
        loss_init = extra["loss_init"] if extra else s.evaluate()
        if not extra:
            tracker.log({"val/loss": loss_init, "tokens": 0}, step=0)
        evals = {round(spec.steps * (i + 1) / (spec.evals + 1)) for i in range(spec.evals)}
        t0, before = time.time(), extra["train_s"] if extra else 0.0
        with checkpoint.Clock(c) as clock:
            def on_step(done: int, recent: list) -> None:
                if done < spec.steps and done % s.check_every == 0 and clock.agreed(done, s):
                    state = {"step": done, "loss_init": loss_init, "recent": recent, "logged": tracker.logged,
                             "run_id": tracker.run_id, "train_s": before + time.time() - t0}
                    checkpoint.write(spec, s, state, clock)

            train_loss = loop.run_steps(
                s, first, spec.steps, lambda i: schedule.lr_at(i, spec.steps, spec.warmup_steps, spec.lr, o),
                tracker.log, evals=evals, on_step=on_step, recent=extra["recent"] if extra else None)
        wall = before + time.time() - t0
        final = s.final_loss(spec.steps)
    except BaseException as e:  # record the failure (KeyboardInterrupt too), then let it propagate
        tracker.fail(e)
        raise
    tracker.log({"val/loss": final, **s.held_out(), "tokens": spec.D}, step=spec.steps)
    if s.d.main:
        print(f"{spec.cell_id}: final val/loss {final:.4f} (step 0: {loss_init:.4f})")
    record = tracker.finish("finished", {"val/loss": final, **s.held_out(), "val/loss_init": loss_init,
                                         "train/loss": train_loss,
                                         "train_s": round(wall, 2), "tokens_per_s": spec.D / wall,
                                         "val_tokens": s.val_tokens})
    if s.d.main:
        checkpoint.clear(spec.directory)  # a finished cell keeps no checkpoint
    return record
