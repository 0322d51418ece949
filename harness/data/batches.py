"""The tokens a run trains on: a verified prepared folder, cut to its unique-token cap, as batches.

`prepare(d)` returns the Corpus of a run (d: its DataSpec, data/spec.py): the cache (built once per
corpus and settings by corpus.build, under a lock, rebuilt when damaged) or a folder written by harness-prepare
(source=prepared, refused when damaged). `Batches` draws seeded training windows from it and
`val_windows` the fixed held-out ones, `bytes_per_token` their text's UTF-8 bytes per token (bits per
byte, which no tokenizer changes, is nats per token / ln 2 / bytes per token).
"""
from __future__ import annotations

import fcntl
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from harness.data import mixture
from harness.data.corpus import MANIFEST, build, cache_root, read_manifest, verify
from harness.data.spec import DataSpec, content_id, folder_manifest
from harness.errors import HarnessError


@dataclass(frozen=True)
class Corpus:
    dir: Path
    train_tokens: int  # a mixture: all its domains' (each domain's in `domains`)
    val_tokens: int
    vocab_size: int
    key: str
    domains: tuple = ()  # a mixture (data.domains): (name, share of training tokens, unique training tokens,
    # held-out tokens) per domain, in name order; () for one corpus
    filters: tuple = ()  # (domain, filter) of a mixture whose domains' training documents are filtered (data.filter)

    @property
    def unique(self) -> int:
        """Unique training tokens as the repetition guard counts them: a mixture's is that of its most
        repeated domain (U / share), so D / unique is the most epochs any domain makes."""
        if not self.domains:
            return self.train_tokens
        return int(min(u / share for _, share, u, _ in self.domains if share > 0))

    @property
    def train_bin(self) -> Path:
        return self.dir / "train.bin"

    @property
    def val_bin(self) -> Path:
        return self.dir / "val.bin"


def prepare(d: DataSpec) -> Corpus:
    """The verified corpus a run trains on: a prepared folder (source=prepared) or the cache, which is
    tokenized once (later calls and parallel workers reuse it); max_train_tokens cuts the training view."""
    cfg = d.cfg
    if cfg.domains:
        return _mixture(d)
    corpus = _folder(d) if cfg.source == "prepared" else _cached(d)
    if cfg.max_train_tokens is None:
        return corpus
    if cfg.max_train_tokens > corpus.train_tokens:
        raise HarnessError(f"data.max_train_tokens={cfg.max_train_tokens:,} exceeds the training split's "
                           f"{corpus.train_tokens:,} tokens")
    return replace(corpus, train_tokens=cfg.max_train_tokens, key=f"{corpus.key}-first{cfg.max_train_tokens}")


def _folder(d: DataSpec) -> Corpus:
    out, _ = folder_manifest(d.cfg)
    try:
        manifest = verify(out)
    except HarnessError as e:  # a user's folder is never rebuilt or trained on when damaged
        raise HarnessError(f"data.path={d.cfg.path} is damaged: {e}") from None
    return Corpus(out, manifest["train_tokens"], manifest["val_tokens"], manifest["vocab_size"],
                  content_id(manifest))


def unique_tokens(d: DataSpec) -> int:
    """Unique training tokens for planning: a prepared folder's manifest (its files are not read), a
    hub stream's max_tokens until it is in the cache (streaming it to count would download it), else
    the cache, built if needed."""
    cfg = d.cfg
    if cfg.domains and not (_cache_dir(d) / MANIFEST).is_file():
        # not built yet: each used domain's cap, as for a hub stream
        caps = {name: cfg.domains[name].max_tokens for name, share in d.shares if share > 0}
        if missing := [name for name, cap in caps.items() if cap is None]:
            raise HarnessError(f"the mixture is not prepared yet and domain {missing[0]} sets no max_tokens")
        n = int(min(caps[name] / d.mix[name] for name in caps))
    elif cfg.source == "prepared":
        n = folder_manifest(cfg)[1]["train_tokens"]
    elif cfg.source == "hub" and not (_cache_dir(d) / MANIFEST).is_file():
        if cfg.max_tokens is None:
            raise HarnessError(f"{cfg.hub_name} is not prepared yet and sets no data.max_tokens")
        n = cfg.max_tokens
    else:
        n = prepare(d).unique
    return min(n, cfg.max_train_tokens or n)


def repetition_errors(cell: str, budget: str, D: int, corpus: Corpus, max_epochs: float) -> str | None:
    """The repetition guard for a run's corpus: of each domain of a mixture, at its share of D."""
    if not corpus.domains:
        return repetition_error(cell, budget, D, corpus.train_tokens, max_epochs)
    for name, share, unique, _ in corpus.domains:
        if share > 0 and (why := repetition_error(cell, budget, round(D * share), unique, max_epochs)):
            return f"source {name} is too small for its share {share:.3g} of the budget: {why}"
    return None


def repetition_error(cell: str, budget: str, D: int, unique: int, max_epochs: float) -> str | None:
    """The one repetition guard (harness-train refuses, harness-plan lists as an error): a cell whose
    D is more than max_epochs passes over its unique training tokens; None when it is within."""
    epochs = D / unique
    if epochs <= max_epochs:
        return None
    d = f"{D:,}" if D < 1e15 else f"{D:.3g}"
    return (f"cell {cell} ({budget}) repeats its data: D={d} tokens is {epochs:.3g} epochs of its {unique:,} "
            f"unique training tokens, over data.max_epochs={max_epochs:g}; use more data (harness-prepare) "
            "or raise data.max_epochs to study repetition")


def _cache_dir(d: DataSpec) -> Path:
    return cache_root(d.cfg) / "prepared" / d.key


def _cached(d: DataSpec) -> Corpus:
    out = _cache_dir(d)
    manifest = _built(out, lambda: build(d.cfg, out), lambda: verify(out))
    return Corpus(out, manifest["train_tokens"], manifest["val_tokens"], manifest["vocab_size"], out.name)


def _mixture(d: DataSpec) -> Corpus:
    """The study's mixture folder (mixture.py), built once; this arm's shares of its domains."""
    out = _cache_dir(d)
    manifest = _built(out, lambda: mixture.build(d.cfg, out),
                      lambda: verify(out, mixture.files(read_manifest(out))))
    parts = manifest["domains"]
    unique = {name: parts[name]["train_tokens"] for name, _ in d.shares}
    filters = tuple(sorted((d.cfg.filter or {}).items()))
    unique.update({name: mixture.filtered(out, name, how)["kept_tokens"] for name, how in filters})
    domains = tuple((name, share, unique[name], parts[name]["val_tokens"]) for name, share in d.shares)
    return Corpus(out, sum(x[2] for x in domains if x[1] > 0), sum(x[3] for x in domains), manifest["vocab_size"],
                  out.name, domains, filters)


def _built(out: Path, build_it, verify_it) -> dict:
    """The manifest of a cached folder, built by one process under a lock (the others wait, then reuse
    it) and rebuilt when damaged, never trained on."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():
            try:
                return verify_it()
            except HarnessError as e:
                print(f"prepared corpus {out.name} is damaged ({e}); rebuilding it", file=sys.stderr)
                out.rename(out.with_name(f".{out.name}.damaged-{time.time_ns()}"))
        build_it()
        return verify_it()


class Batches:
    """Training batches: a seeded permutation of non-overlapping windows, epoch after epoch."""

    def __init__(self, corpus: Corpus, ctx: int, batch_seqs: int, seed: int):
        self.tokens = np.memmap(corpus.train_bin, dtype=np.uint16, mode="r")[:corpus.train_tokens]
        self.ctx, self.batch_seqs = ctx, batch_seqs
        self.n_windows = (len(self.tokens) - 1) // ctx
        if self.n_windows < batch_seqs:
            raise HarnessError(f"training split has {len(self.tokens)} tokens, less than one batch")
        self.rng = np.random.default_rng(seed)
        self.order, self.pos = self.rng.permutation(self.n_windows), 0

    @property
    def unique_tokens(self) -> int:
        return self.n_windows * self.ctx

    def state(self) -> dict:
        return {"order": self.order.copy(), "pos": self.pos, "rng": self.rng.bit_generator.state}

    def restore(self, state: dict) -> None:
        self.order, self.pos = state["order"].copy(), state["pos"]
        self.rng.bit_generator.state = state["rng"]

    def next(self) -> np.ndarray:
        """(batch_seqs, ctx + 1) int64 array: inputs are [:, :-1], targets [:, 1:]."""
        if self.pos + self.batch_seqs > self.n_windows:
            self.order, self.pos = self.rng.permutation(self.n_windows), 0
        starts = self.order[self.pos:self.pos + self.batch_seqs] * self.ctx
        self.pos += self.batch_seqs
        return np.stack([self.tokens[s:s + self.ctx + 1] for s in starts]).astype(np.int64)


def make_batches(corpus: Corpus, ctx: int, batch_seqs: int, seed: int):
    """A run's training batches: Batches for one corpus, mixture.MixedBatches for a mixture's domains."""
    if not corpus.domains:
        return Batches(corpus, ctx, batch_seqs, seed)
    tokens = {name: np.memmap(corpus.dir / f"train-{name}.bin", dtype=np.uint16, mode="r")
              for name, share, _, _ in corpus.domains if share > 0}
    for name, how in corpus.filters:  # the kept documents, end to end
        if name in tokens:
            kept = mixture.filtered(corpus.dir, name, how)["spans"]
            tokens[name] = np.concatenate([tokens[name][a:b] for a, b in kept])
    return mixture.MixedBatches(tokens, {name: share for name, share, _, _ in corpus.domains}, ctx, batch_seqs, seed)


def val_sets(corpus: Corpus, ctx: int, n_tokens: int) -> dict[str, np.ndarray]:
    """The fixed held-out windows a run is scored on: {"": windows} for one corpus, {domain: windows}
    (n_tokens of each) for a mixture, whatever its weights."""
    if not corpus.domains:
        return {"": val_windows(corpus, ctx, n_tokens)}
    return {name: val_windows(corpus, ctx, n_tokens, corpus.dir / f"val-{name}.bin") for name, *_ in corpus.domains}


def val_windows(corpus: Corpus, ctx: int, n_tokens: int, path: Path | None = None) -> np.ndarray:
    """The fixed held-out windows: the first n_tokens of the validation split, (n, ctx + 1)."""
    tokens = np.memmap(path or corpus.val_bin, dtype=np.uint16, mode="r")
    n = min(n_tokens, len(tokens) - 1) // ctx
    if n < 1:
        raise HarnessError(f"validation split has {len(tokens)} tokens, fewer than one window of {ctx}")
    return np.stack([tokens[i * ctx:i * ctx + ctx + 1] for i in range(n)]).astype(np.int64)


def token_bytes(tokenizer_json: Path) -> np.ndarray:
    """UTF-8 bytes of each token id of a byte-level BPE tokenizer: its tokens are strings of
    byte-characters (one character per byte, GPT-2's byte-to-unicode map), so a token's length is its
    byte count; the end-of-text token separates documents and is no text (0 bytes)."""
    from tokenizers import Tokenizer

    from harness.data.corpus import EOT

    vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab(with_added_tokens=True)
    out = np.zeros(max(vocab.values()) + 1, np.int64)
    for token, i in vocab.items():
        out[i] = 0 if token == EOT else len(token)
    return out


def bytes_per_token(corpus: Corpus, windows: np.ndarray) -> float:
    """UTF-8 bytes per predicted token of the held-out windows (their targets, windows[:, 1:])."""
    targets = windows[:, 1:]
    return float(token_bytes(corpus.dir / "tokenizer.json")[targets].sum() / targets.size)
