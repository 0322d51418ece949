"""A run's data, resolved once: `resolve(cfg.data)` (train/spec.resolve calls it) checks the settings and
derives what the data side and the run's identity need of them, so nothing below derives them again.

A corpus is named by its folder key: corpus.corpus_key for the cache, the content of a prepared folder
(the checksums in its manifest, so the same data mounted elsewhere is the same corpus), mixture.key for
a mixture's folder (whatever its weights), with the arm's shares and label beside it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.config import DataConfig
from harness.data import mixture
from harness.data.corpus import FORMAT_VERSION, MANIFEST, corpus_key, read_manifest
from harness.errors import HarnessError


@dataclass(frozen=True)
class DataSpec:
    cfg: DataConfig  # the settings as given (source, caps, cache_dir, the guard's max_epochs)
    key: str  # the folder the run reads, by what it holds (above)
    shares: tuple = ()  # a mixture: (domain, share of the training tokens) in name order, summing to 1
    label: str = ""  # a mixture: its arm (runs.csv column `data`, mixture.label)

    @property
    def mix(self) -> dict[str, float]:
        return dict(self.shares)


def resolve(cfg: DataConfig) -> DataSpec:
    """One line naming the first problem of the data settings, else their DataSpec."""
    mixture.check(cfg)
    if cfg.domains:
        return DataSpec(cfg, mixture.key(cfg), tuple(mixture.weights(cfg).items()), mixture.label(cfg))
    if cfg.source == "prepared":
        return DataSpec(cfg, content_id(folder_manifest(cfg)[1]))
    return DataSpec(cfg, corpus_key(cfg))


def folder_manifest(cfg: DataConfig) -> tuple[Path, dict]:
    """A folder written by harness-prepare (data.source=prepared) and its manifest, refused in one line
    when it is not one, or was prepared for another vocabulary."""
    if not cfg.path:
        raise HarnessError("data.source=prepared needs data.path=DIR (a folder written by harness-prepare)")
    out = Path(cfg.path).expanduser()
    if not (out / MANIFEST).is_file():
        raise HarnessError(f"data.path={cfg.path}: no {MANIFEST}; not a folder written by harness-prepare")
    manifest = read_manifest(out)
    if manifest.get("format") != FORMAT_VERSION:
        raise HarnessError(f"data.path={cfg.path}: format {manifest.get('format')}, this harness reads "
                           f"{FORMAT_VERSION}; prepare it again")
    vocab = manifest.get("config", {}).get("vocab_size")
    if vocab != cfg.vocab_size:
        raise HarnessError(f"data.path={cfg.path} was prepared with vocab_size={vocab}; "
                           f"set data.vocab_size={vocab}")
    return out, manifest


def content_id(manifest: dict) -> str:
    """What a prepared folder holds, not where it lies: a hash of its files' checksums."""
    sums = sorted(f.get("sha256", "") for f in manifest.get("files", {}).values())
    return "prepared-" + hashlib.sha256(json.dumps(sums).encode()).hexdigest()[:12]
