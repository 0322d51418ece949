"""`harness-prepare data=... out=DIR`: a corpus as a self-describing folder that trains anywhere offline.

The folder holds the tokenizer, train.bin/val.bin (uint16 tokens) and manifest.json (token counts,
byte sizes and sha256 of every file, the data settings and source it came from, when and by what
command). `harness-train data=prepared data.path=DIR` trains from it with no network and no
re-tokenizing, on any machine and at any path (a cell's identity is the folder's contents, not its
path). A folder whose files differ from its manifest is refused with one line.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from harness import validate
from harness.config import compose, search_dirs, split_config_dir, unquote
from harness.data import corpus
from harness.errors import HarnessError, entry_point, is_config_error, one_line

HELP = """usage: harness-prepare out=DIR [--config-dir DIR] [data=PRESET] [data.KEY=VALUE ...]

Tokenize a corpus once into DIR, a folder `harness-train data=prepared data.path=DIR` trains from
with no network (copy it to an offline GPU box or a cluster's shared filesystem). Sources: the
default corpus (data=wiki), local files (data=files 'data.paths=[a.txt,b.txt]'), or a hub dataset
streamed with a token cap (data=fineweb_edu data.max_tokens=500000000). Examples:
  harness-prepare data=tinystories data.max_tokens=100000000 out=/data/tinystories-100m
  harness-prepare out=wiki-2048            # the default corpus"""


def parse(argv: list[str]) -> tuple[Path, list[str], str | None]:
    """(out folder, Hydra overrides, the user's config folder from --config-dir)."""
    config_dir, argv = split_config_dir(argv)
    outs = [unquote(a.partition("=")[2]) for a in argv if a.startswith("out=")]
    if len(outs) != 1 or not outs[0]:
        raise HarnessError("give exactly one out=DIR (the folder to write)")
    return Path(outs[0]).expanduser(), [a for a in argv if not a.startswith("out=")], config_dir


def run(overrides: list[str], out: Path, config_dir: str | None = None) -> dict:
    """Prepare the corpus the overrides select into `out`; returns its manifest."""
    full = compose(overrides, config_dir)
    validate.check(full, validate.TRAIN)  # the data options' ranges, as harness-train checks them
    cfg = full.data
    if cfg.source == "prepared":
        raise HarnessError("data=prepared is already a prepared folder; copy the folder instead")
    if out.exists() and (out.is_file() or any(out.iterdir())):
        existing = out / corpus.MANIFEST
        if existing.is_file() and corpus.read_manifest(out).get("corpus_key") == corpus.corpus_key(cfg):
            print(f"harness-prepare: {out} already holds this corpus; checking it")
            return corpus.verify(out)
        raise HarnessError(f"out={out} exists and is not empty; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    source = {"wiki": corpus.WIKI_PACKAGE, "files": cfg.paths, "hub": [cfg.hub_name, cfg.hub_config, cfg.hub_split]}
    extra = {"corpus_key": corpus.corpus_key(cfg), "source": source.get(cfg.source),
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": shlex.join(["harness-prepare", *sys.argv[1:]])}
    t0 = time.time()
    corpus.build(cfg, out, extra)
    manifest = corpus.verify(out)
    size = sum(f["bytes"] for f in manifest["files"].values())
    print(f"harness-prepare: {out}: {manifest['train_tokens']:,} train and {manifest['val_tokens']:,} val tokens "
          f"(vocab {manifest['vocab_size']}, {size / 1e6:.1f} MB) in {time.time() - t0:.0f} s\n"
          f"train from it: harness-train data=prepared data.path={out} data.vocab_size={cfg.vocab_size}")
    return manifest


@entry_point("harness-prepare")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(HELP)
        return 0
    try:
        out, overrides, config_dir = parse(argv)
        run(overrides, out, config_dir)
    except HarnessError as e:
        print(f"harness-prepare: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  Hydra composition errors, one line
        if not is_config_error(e):
            raise
        print(f"harness-prepare: error: {one_line(e, search_dirs(argv))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
