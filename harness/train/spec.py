"""One run's resolved spec: everything that follows from its config, computed once (torch-free).

`resolve(cfg)` validates the config and derives sizes, budget, C, per-size hyperparameters and the
cell's identity and directory into one frozen `Spec`; the training side receives it and derives
nothing again (STYLE 20). A WSD branch is a Spec of its own (`Spec.branch`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from harness import validate
from harness.config import Config, DistributedConfig, OptimConfig, to_dict
from harness.data import spec as data_spec
from harness.data.corpus import check_vocab
from harness.data.spec import DataSpec
from harness.errors import HarnessError
from harness.train import accounting, hparams, schedule

# Fields that do not change what a run computes: excluded from its identity. The environment that
# computes it (threads, device, torch version, dtype) is recorded instead: see records.env_key.
NOT_IDENTITY = ("results_dir", "wandb", "device", "threads", "log_every", "sweep", "compile", "checkpoint",
                "distributed")
OPTIM_NOT_IDENTITY = ("micro_batch_tokens",)  # how a step is computed, not what: the same step
DATA_NOT_IDENTITY = ("cache_dir", "max_epochs", "name")  # where the cache lives; a guard; a label
# Data fields added after cells were first committed: hashed only when set, so the ids of every
# existing cell (which never set them) stay what they were.
DATA_IDENTITY_WHEN_SET = ("path", "max_tokens", "max_train_tokens", "package", "sha256", "members", "domains", "mix",
                          "eval_paths", "filter")


def cell_id(cfg: Config, D: int, data: DataSpec) -> str:
    """Stable id from the resolved config, so reruns of a sweep find the same directories."""
    d = {k: v for k, v in to_dict(cfg).items() if k not in NOT_IDENTITY}
    d["optim"] = {k: v for k, v in d["optim"].items() if k not in OPTIM_NOT_IDENTITY}
    if not d["model"]["hf"]:  # added after cells were first committed: hashed only when set
        del d["model"]["hf"]
    d["data"] = {k: v for k, v in d["data"].items() if k not in DATA_NOT_IDENTITY
                 and not (k in DATA_IDENTITY_WHEN_SET and v in (None, {}, []))}
    if data.shares:  # a mixture: what its domains hold, and the weights as shares (1:1 is 0.5:0.5)
        d["data"]["domains"] = data.key
        d["data"]["mix"] = {k: round(v, 12) for k, v in data.shares}
    elif cfg.data.source == "prepared":  # a prepared folder is the same data wherever it is mounted
        d["data"]["path"] = data.key
    digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.model.name}_D{D:.3g}_s{cfg.seed}_{digest}".replace("+", "")


def seedless_key(cfg: Config, D: int, data: DataSpec) -> str:
    """The cell a run belongs to across seeds: the fitter averages runs that share it."""
    return cell_id(dataclasses.replace(cfg, seed=0), D, data).replace("_s0_", "_")


@dataclass(frozen=True)
class Spec:
    cell_id: str  # directory name and wandb run name
    cell_key: str  # the same cell across seeds
    directory: Path  # results_dir/<sweep>/<cell_id>
    N: int  # total trainable parameters
    N_nonembed: int  # Kaplan's non-embedding parameters
    N_active: int  # active non-embedding parameters per token (an MoE's experts at top-k/E); N_nonembed if dense
    flops_per_token: dict  # {convention: training FLOPs per token}
    batch_tokens: int  # tokens per optimizer step
    steps: int  # optimizer steps
    D: int  # training tokens = steps * batch_tokens
    lr: float  # peak learning rate
    warmup_tokens: int  # linear warmup
    schedule: str  # "cosine" or "wsd"
    branches: tuple = ()  # WSD: (cooldown start step, end step) per budget, the full run last
    # what the loop needs of the rest of the config (below cell.run nothing takes the whole Config)
    seed: int = 0  # model init and data order
    vocab_size: int = 2048  # data.vocab_size
    val_tokens: int = 65536  # data.val_tokens
    evals: int = 4  # validation passes spread over training
    log_every: int = 10  # optimizer steps between host syncs
    compile: bool = False  # torch.compile the loss
    world_size: int = 1  # processes training this run (data parallel), each taking 1/world of every batch
    micro_batch_tokens: int = 0  # tokens per forward/backward within a process's share of a step (0: all of it)
    data: DataSpec | None = None  # the data settings resolved (data/spec.py): what the data side receives

    @property
    def warmup_steps(self) -> int:
        return math.ceil(self.warmup_tokens / self.batch_tokens)

    @property
    def C(self) -> dict:
        return {k: v * self.D for k, v in self.flops_per_token.items()}

    def flat(self) -> dict:
        """The numbers logged with the run (and read by the fitter)."""
        c = self.C
        out = {"cell_id": self.cell_id, "cell_key": self.cell_key, "N": self.N,
               "N_nonembed": self.N_nonembed, "N_active": self.N_active, "D": self.D, "steps": self.steps,
               "batch_tokens": self.batch_tokens, "tokens_per_param": 6 * self.D / self.flops_per_token["6N"],
               "C": c["6N"], "C_attn": c["6N_attn"], "C_kaplan": c["kaplan"], "lr": self.lr,
               "warmup_tokens": self.warmup_tokens, "schedule": self.schedule}
        out.update({f"flops_per_token/{k}": v for k, v in self.flops_per_token.items()})
        return out

    def branch(self, end: int) -> "Spec":
        """The WSD branch that cools down to step `end`: a run of its own, in the trunk's directory."""
        D = end * self.batch_tokens
        return dataclasses.replace(self, cell_id=f"{self.cell_id}_D{D}", cell_key=f"{self.cell_key}_D{D}",
                                   directory=self.directory / f"D{D}", steps=end, D=D, branches=())


def resolve(cfg: Config) -> Spec:
    """Validate and derive everything before any work: sizes, budget, per-size hyperparameters."""
    validate.check(cfg, validate.TRAIN)  # every number in its range first (validate.py)
    schedule.validate(cfg.optim)
    if cfg.branches and cfg.optim.schedule != "wsd":
        raise HarnessError("branches need optim.schedule=wsd (cooldowns branch from a constant-LR trunk)")
    if cfg.sweep.role not in ("fit", "holdout"):
        raise HarnessError(f"sweep.role={cfg.sweep.role!r} is not one of 'fit', 'holdout'")
    m, V = cfg.model, cfg.data.vocab_size
    accounting.validate_model(m, V)
    check_vocab(V)  # the corpus side's floor (data/corpus.py)
    data = data_spec.resolve(cfg.data)
    n, n_ne = accounting.param_counts(m, V)
    requested = accounting.budget_tokens(cfg.budget, m, V)
    n_active = accounting.active_counts(m, V)[1]  # an MoE's per-token size sets its rules; dense: n_ne
    compute = hparams.deepseek_compute(n_active, m.n_layer, m.n_positions, m.n_embd, requested)
    bt = cfg.optim.batch_tokens or hparams.batch_tokens(compute, m.n_positions)
    if bt % m.n_positions:
        raise HarnessError(f"optim.batch_tokens={bt} is not a whole number of sequences of "
                           f"model.n_positions={m.n_positions} tokens")
    if requested < bt:
        raise HarnessError(f"{accounting.budget_name(cfg.budget)} gives {requested:.0f} tokens, "
                           f"fewer than one batch of {bt} tokens")
    world = world_size(cfg.distributed)
    if world > 1 and cfg.distributed.strategy == "fsdp" and m.n_embd < world:
        raise HarnessError(f"distributed.strategy=fsdp: model.n_embd={m.n_embd} rows cannot be sharded over {world} "
                           "processes (some would hold nothing); the model is too small to shard: use "
                           "distributed.strategy=ddp")
    micro = micro_batch(cfg.optim, m.n_positions, bt, world)
    steps = max(1, round(requested / bt))
    D = steps * bt
    shortest = min(cfg.branches) * D if cfg.branches else D  # WSD: warm up once, for the shortest branch
    warmup = cfg.optim.warmup_tokens
    cid = cell_id(cfg, D, data)
    spec = Spec(cell_id=cid, cell_key=seedless_key(cfg, D, data),
                directory=Path(cfg.results_dir) / cfg.sweep.name / cid, N=n, N_nonembed=n_ne,
                N_active=n_active,
                flops_per_token=accounting.flops_per_token(m, V), batch_tokens=bt, steps=steps, D=D,
                lr=cfg.optim.lr if cfg.optim.lr is not None else hparams.learning_rate(compute),
                warmup_tokens=warmup if warmup is not None else hparams.warmup_tokens(
                    n, shortest, hparams.WSD_MAX_WARMUP_FRACTION if cfg.branches else hparams.MAX_WARMUP_FRACTION),
                schedule=cfg.optim.schedule, seed=cfg.seed, vocab_size=V, val_tokens=cfg.data.val_tokens,
                evals=cfg.evals, log_every=cfg.log_every, compile=cfg.compile, world_size=world,
                micro_batch_tokens=micro, data=data)
    return dataclasses.replace(spec, branches=tuple(branch_plan(cfg, steps))) if cfg.branches else spec


def world_size(d: DistributedConfig) -> int:
    """Processes training one run: torchrun's or srun's WORLD_SIZE where it set one, else distributed.nproc."""
    if d.strategy not in ("ddp", "fsdp"):
        raise HarnessError(f"distributed.strategy={d.strategy!r} is not one of 'ddp', 'fsdp'")
    if d.backend not in ("auto", "gloo", "nccl"):
        raise HarnessError(f"distributed.backend={d.backend!r} is not one of 'auto', 'gloo', 'nccl'")
    return launched_world() or d.nproc


def launched_world() -> int | None:
    """The world a launcher started: torchrun's WORLD_SIZE, or srun's SLURM_NTASKS (one task per
    process, as hydra/launcher=slurm with gpus_per_node=K starts them); None when run alone."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return int(os.environ["SLURM_NTASKS"])
    return None


def micro_batch(o: OptimConfig, ctx: int, bt: int, world: int) -> int:
    """Tokens per micro-batch within one process's share of a step (the batch itself is unchanged)."""
    seqs = bt // ctx
    if seqs % world:
        raise HarnessError(f"optim.batch_tokens={bt} is {seqs} sequences, which {world} processes cannot share "
                           f"evenly (distributed.nproc={world}); set optim.batch_tokens to a multiple of "
                           f"{world * ctx}")
    share, micro = bt // world, o.micro_batch_tokens
    if micro is None:
        return share
    if micro % ctx or share % micro:
        raise HarnessError(f"optim.micro_batch_tokens={micro} must be a whole number of sequences of "
                           f"model.n_positions={ctx} tokens that divides each process's {share} tokens per step")
    return micro


def branch_plan(cfg: Config, steps: int) -> list[tuple[int, int]]:
    """(cooldown start step, end step) per budget, the largest last; ends are distinct."""
    ends = sorted({max(1, round(f * steps)) for f in cfg.branches} | {steps})
    return [(end - max(1, round(cfg.optim.cooldown_fraction * end)), end) for end in ends]
