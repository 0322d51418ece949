"""A mixture of named domains (data.domains, data.mix): one shared tokenizer, per-domain token files, the
same held-out documents of every domain for every arm, and training windows drawn by weight.

The folder belongs to the study, not to an arm: its key is what each domain holds and the tokenizer's
settings, never the weights, so every arm trains with one tokenizer (fitted to equal bytes of each
domain's training documents) and is scored on the same evaluation sets. A document is held out by a
hash of its text (corpus.is_val), so the same text is held out from every domain it appears in; `build`
still checks that no held-out document is in any domain's training split and refuses the folder if one is.
torch-free.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from harness.config import DataConfig, SourceConfig
from harness.data import corpus
from harness.errors import HarnessError

FORMAT = 1  # bump when the folder's files change meaning
TOKENIZER_BYTES = 4_000_000  # per domain, at most: the shared tokenizer's training text (equal bytes of each
# domain's training documents, taken in hash order), so no arm's weights and no domain's size tilt it
NAME = re.compile(r"[a-z][a-z0-9_]*$")  # a domain's name is a file name and a metric key (val/<name>/loss)


def weights(cfg: DataConfig) -> dict[str, float]:
    """Each domain's share of the training tokens, summing to 1, in name order (data.mix; empty: equal)."""
    raw = {name: float(cfg.mix.get(name, 0.0)) if cfg.mix is not None else 1.0 for name in sorted(cfg.domains)}
    total = sum(raw.values())
    return {name: w / total for name, w in raw.items()}


def label(cfg: DataConfig) -> str:
    """The arm's name (runs.csv column `data`): data.name, else its weights in percent and what it filters,
    e.g. code25_wiki75 or code25_wiki75_gopher_quality_wiki."""
    shares = "_".join(f"{name}{100 * p:.3g}" for name, p in weights(cfg).items() if p > 0)
    return cfg.name or shares + "".join(f"_{f}_{name}" for name, f in sorted((cfg.filter or {}).items()))


def check(cfg: DataConfig) -> None:
    """The mixture's settings, before any work: one line naming the first problem."""
    if cfg.eval_paths:
        raise HarnessError("data.eval_paths: a fixed evaluation set belongs to a domain (data.domains.NAME.eval_paths)")
    if cfg.mix is not None and not cfg.domains:
        raise HarnessError("data.mix weighs the domains of data.domains, and none is set")
    if cfg.mix is not None and not (isinstance(cfg.mix, dict) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in cfg.mix.values())):
        raise HarnessError(f"data.mix={cfg.mix!r} is not a mapping of domain to weight, e.g. {{wiki:3,code:1}}")
    for name, src in cfg.domains.items():
        if not NAME.match(name):
            raise HarnessError(f"data.domains: {name!r} is not a domain name (lower case letters, digits, _)")
        if src.source == "prepared":
            raise HarnessError(f"data.domains.{name}: a prepared folder brings its own tokenizer; a mixture trains "
                               "one for all its domains, so give the source itself")
        for p in src.eval_paths:
            if not Path(p).is_file():
                raise HarnessError(f"data.domains.{name}.eval_paths: no file {p}")
        for key in ("max_docs", "max_tokens"):
            if getattr(src, key) is not None and getattr(src, key) < 1:
                raise HarnessError(f"data.domains.{name}.{key}={getattr(src, key)} must be a positive count")
    for name, w in (cfg.mix or {}).items():
        if name not in cfg.domains:
            raise HarnessError(f"data.mix names {name!r}, which is not a source of data.domains "
                               f"({', '.join(sorted(cfg.domains))})")
        if not (math.isfinite(w) and w >= 0):
            raise HarnessError(f"data.mix.{name}={w}: a weight is a finite number >= 0")
    if cfg.mix is not None and sum(cfg.mix.values()) <= 0:
        raise HarnessError("data.mix: the weights sum to 0, so no domain would be trained on")
    if cfg.filter is not None and not isinstance(cfg.filter, dict):
        raise HarnessError(f"data.filter={cfg.filter!r} is not a mapping of domain to filter, "
                           "e.g. {wiki:gopher_quality}")
    for name, f in (cfg.filter or {}).items():
        if name not in cfg.domains:
            raise HarnessError(f"data.filter names {name!r}, which is not a source of data.domains "
                               f"({', '.join(sorted(cfg.domains))})")
        if f not in FILTERS:
            raise HarnessError(f"data.filter.{name}={f!r} is not one of {', '.join(FILTERS)}")
    if cfg.domains and cfg.max_train_tokens is not None:
        raise HarnessError("data.max_train_tokens cuts one corpus; with data.domains cap a domain's "
                           "data.domains.NAME.max_tokens instead")


def key(cfg: DataConfig) -> str:
    """The folder's key: each domain's documents and reading settings, the vocabulary and the split."""
    parts = {name: [corpus.source_ident(src), _eval_ident(src),
                    {k: v for k, v in asdict(src).items() if k not in ("paths", "eval_paths")}]
             for name, src in sorted(cfg.domains.items())}
    blob = json.dumps([parts, cfg.vocab_size, cfg.val_fraction, TOKENIZER_BYTES, FORMAT], sort_keys=True)
    return f"mix-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _eval_ident(src: SourceConfig) -> list:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in src.eval_paths if Path(p).is_file()]


def split(src: SourceConfig, val_fraction: float, root: Path) -> tuple[list[str], list[str]]:
    """A domain's (train, held-out) documents: its fixed evaluation files where it names them (and then
    every document of the source trains), else the hash-chosen split."""
    if not src.eval_paths:
        return corpus.split(src, val_fraction, root)
    held = list(corpus.documents(SourceConfig(source="files", paths=list(src.eval_paths),
                                              text_field=src.text_field), root))
    if not held:
        raise HarnessError(f"eval_paths {src.eval_paths} hold no documents")
    return corpus.split(src, 0.0, root)[0], held


def files(manifest: dict) -> tuple:
    return ("tokenizer.json", *(f"{part}-{name}.bin" for name in manifest["domains"] for part in ("train", "val")))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _tokenizer_text(train: dict[str, list[str]]) -> list[str]:
    """Equal bytes of every domain's training documents (the smallest domain's total, at most
    TOKENIZER_BYTES), each domain's taken in the order of their hash: a sample, fixed and unbiased by
    the source's own order (the wiki corpus is alphabetical)."""
    budget = min(TOKENIZER_BYTES, *(sum(len(t.encode()) for t in docs) for docs in train.values()))
    out = []
    for docs in train.values():
        used = 0
        for text in sorted(docs, key=_digest):
            if used >= budget:
                break
            out.append(text)
            used += len(text.encode())
    return out


def build(cfg: DataConfig, out: Path) -> None:
    """The shared tokenizer, train-<domain>.bin and val-<domain>.bin of every domain, and the manifest."""
    from tokenizers import ByteLevelBPETokenizer

    root = corpus.cache_root(cfg)
    train, val = {}, {}
    for name, src in sorted(cfg.domains.items()):
        try:
            train[name], val[name] = split(src, cfg.val_fraction, root)
        except HarnessError as e:
            raise HarnessError(f"data.domains.{name}: {e}") from None
    held = {_digest(t): name for name, docs in val.items() for t in docs}
    for name, docs in train.items():
        leaked = [held[h] for h in map(_digest, docs) if h in held]
        if leaked:
            raise HarnessError(f"evaluation set {leaked[0]} overlaps training source {name}: {len(leaked)} of its "
                               "held-out documents are in that source's training split")
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(_tokenizer_text(train), vocab_size=cfg.vocab_size, min_frequency=2,
                            special_tokens=[corpus.EOT], show_progress=False)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    tok.save(str(tmp / "tokenizer.json"))
    domains, tokens = {}, {}
    for name, src in sorted(cfg.domains.items()):
        tokens[f"train-{name}.bin"] = corpus.write_tokens(tok, train[name], tmp / f"train-{name}.bin", src.max_tokens)
        tokens[f"val-{name}.bin"] = corpus.write_tokens(tok, val[name], tmp / f"val-{name}.bin")
        domains[name] = {"corpus_key": corpus.corpus_key(DataConfig(**asdict(src), vocab_size=cfg.vocab_size)),
                         "train_docs": len(train[name]), "val_docs": len(val[name]),
                         "train_tokens": tokens[f"train-{name}.bin"], "val_tokens": tokens[f"val-{name}.bin"]}
    manifest = {"format": corpus.FORMAT_VERSION, "mixture_format": FORMAT, "key": out.name,
                "vocab_size": tok.get_vocab_size(), "domains": domains, "tokens": tokens,
                "tokenizer_bytes_per_domain": min(TOKENIZER_BYTES, *(sum(len(t.encode()) for t in d)
                                                                    for d in train.values())),
                "config": asdict(cfg)}
    manifest["files"] = {f: corpus.fingerprint(tmp / f) for f in files(manifest)}
    (tmp / corpus.MANIFEST).write_text(json.dumps(manifest, indent=1))
    os.chmod(tmp, 0o755)
    tmp.rename(out)


SHINGLE_WORDS, PERMUTATIONS, THRESHOLD = 5, 128, 0.8  # the near-duplicate definition (config.py: data.filter)


def documents_of(tokens: np.ndarray, eot: int) -> np.ndarray:
    """(n, 2) [start, end) token spans of the documents of a token file (each ends with the end-of-text token)."""
    ends = np.flatnonzero(tokens == eot) + 1
    if len(ends) == 0 or ends[-1] != len(tokens):  # a file cut at max_tokens ends inside its last document
        ends = np.append(ends, len(tokens))
    return np.stack([np.r_[0, ends[:-1]], ends], axis=1)


def near_duplicates(texts: list[str]) -> np.ndarray:
    """Keep mask: False for a document whose MinHash estimate of Jaccard similarity to an earlier kept one
    is >= THRESHOLD (datasketch's LSH, so the first of each cluster stays)."""
    from datasketch import MinHash, MinHashLSH

    lsh, keep = MinHashLSH(threshold=THRESHOLD, num_perm=PERMUTATIONS), np.ones(len(texts), bool)
    for i, text in enumerate(texts):
        words = text.split()
        shingles = {" ".join(words[j:j + SHINGLE_WORDS]) for j in range(max(1, len(words) - SHINGLE_WORDS + 1))}
        m = MinHash(num_perm=PERMUTATIONS, seed=1)
        m.update_batch([s.encode() for s in shingles])
        if lsh.query(m):
            keep[i] = False
        else:
            lsh.insert(str(i), m)
    return keep


def _datatrove(step: str):
    """A datatrove quality filter's keep decision per text (its defaults; English words by spaCy)."""
    try:
        from datatrove.data import Document
        from datatrove.pipeline import filters
    except ImportError:
        raise HarnessError(f"data.filter {step} needs datatrove and spaCy: pip install 'harness[quality]' "
                           "(or pip install datatrove spacy)") from None
    f = getattr(filters, step)()

    def keep(texts: list[str]) -> np.ndarray:
        out = [f.filter(Document(text=t, id=str(i))) for i, t in enumerate(texts)]
        return np.array([r if isinstance(r, bool) else bool(r[0]) for r in out])
    return keep


FILTERS = {"minhash_dedup": lambda: near_duplicates,  # name -> a function of texts returning the keep mask
           "gopher_quality": lambda: _datatrove("GopherQualityFilter"),
           "gopher_repetition": lambda: _datatrove("GopherRepetitionFilter"),
           "c4_quality": lambda: _datatrove("C4QualityFilter"),
           "fineweb_quality": lambda: _datatrove("FineWebQualityFilter")}


def filtered(folder: Path, name: str, how: str) -> dict:
    """A domain's training documents that pass filter `how` (FILTERS): {spans (kept), docs, kept_docs,
    tokens, kept_tokens}. The mask is computed once per folder and kept beside it (keep-<how>-<name>.npy,
    written whole then renamed; deterministic, so two writers agree)."""
    from tokenizers import Tokenizer

    tokens = np.memmap(folder / f"train-{name}.bin", dtype=np.uint16, mode="r")
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    spans = documents_of(tokens, tok.token_to_id(corpus.EOT))
    path = folder / f"keep-{how}-{name}.npy"
    keep = np.load(path) if path.is_file() else None
    if keep is None or len(keep) != len(spans):
        keep = FILTERS[how]()(tok.decode_batch([tokens[a:b].tolist() for a, b in spans]))
        tmp = path.with_suffix(f".{os.getpid()}.npy")
        np.save(tmp, keep)
        tmp.replace(path)
    if not keep.any():
        raise HarnessError(f"data.filter.{name}={how} keeps none of the domain's {len(spans)} training documents")
    kept = spans[keep]
    return {"spans": kept, "docs": len(spans), "kept_docs": int(keep.sum()), "tokens": int(len(tokens)),
            "kept_tokens": int((kept[:, 1] - kept[:, 0]).sum())}


class MixedBatches:
    """Training batches drawn from several domains by weight. Window j of the run goes to the domain whose
    count lags its share the most (ties to the first by name), so after any number of windows each
    domain's count is within one of its weight times that number: deterministic, and exact to a window
    (a batch's composition follows from the weights alone). Within a domain, windows come in a seeded
    permutation, epoch after epoch, as in batches.Batches."""

    def __init__(self, tokens: dict[str, np.ndarray], shares: dict[str, float], ctx: int, batch_seqs: int,
                 seed: int):
        self.names = [n for n in sorted(shares) if shares[n] > 0]
        self.p = np.array([shares[n] for n in self.names])
        self.tokens = [tokens[n] for n in self.names]
        self.ctx, self.batch_seqs = ctx, batch_seqs
        self.n_windows = [(len(t) - 1) // ctx for t in self.tokens]
        for name, n in zip(self.names, self.n_windows):
            if n < 1:
                raise HarnessError(f"domain {name}'s training split holds less than one window of {ctx} tokens")
        self.rngs = [np.random.default_rng([seed, i]) for i in range(len(self.names))]
        self.orders = [r.permutation(n) for r, n in zip(self.rngs, self.n_windows)]
        self.pos = [0] * len(self.names)
        self.counts = np.zeros(len(self.names), np.int64)

    def _domain(self) -> int:
        return int(np.argmax(self.p * (self.counts.sum() + 1) - self.counts))

    def _window(self, i: int) -> np.ndarray:
        if self.pos[i] >= self.n_windows[i]:
            self.orders[i], self.pos[i] = self.rngs[i].permutation(self.n_windows[i]), 0
        start = self.orders[i][self.pos[i]] * self.ctx
        self.pos[i] += 1
        self.counts[i] += 1
        return self.tokens[i][start:start + self.ctx + 1]

    def next(self) -> np.ndarray:
        """(batch_seqs, ctx + 1) int64 array: inputs are [:, :-1], targets [:, 1:]."""
        return np.stack([self._window(self._domain()) for _ in range(self.batch_seqs)]).astype(np.int64)

    def state(self) -> dict:
        return {"orders": [o.copy() for o in self.orders], "pos": list(self.pos), "counts": self.counts.copy(),
                "rngs": [r.bit_generator.state for r in self.rngs]}

    def restore(self, state: dict) -> None:
        self.orders, self.pos = [o.copy() for o in state["orders"]], list(state["pos"])
        self.counts = state["counts"].copy()
        for r, s in zip(self.rngs, state["rngs"]):
            r.bit_generator.state = s
