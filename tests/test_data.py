"""One datasets code path for every source; a fixed held-out split by document; tokenized once."""
import json

import numpy as np
import pytest

from harness.config import DataConfig
from harness.data import batches, corpus
from harness.data.spec import resolve
from harness.errors import HarnessError

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hum songs".split()


def write_corpus(tmp_path, n_docs=300, kind="txt"):
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(WORDS, size=40)) + f" doc {i}." for i in range(n_docs)]
    path = tmp_path / f"corpus.{kind}"
    if kind == "txt":
        path.write_text("\n\n".join(docs) + "\n")
    else:
        path.write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    return path, docs


@pytest.mark.parametrize("kind", ["txt", "jsonl"])
def test_local_files_prepare_split_and_cache(tmp_path, kind):
    path, docs = write_corpus(tmp_path, kind=kind)
    cfg = DataConfig(source="files", paths=[str(path)], text_field="body", vocab_size=300,
                     val_fraction=0.1, cache_dir=str(tmp_path / "cache"))
    assert list(corpus.documents(cfg)) == docs
    c = batches.prepare(resolve(cfg))
    train = np.memmap(c.train_bin, dtype=np.uint16, mode="r")
    val = np.memmap(c.val_bin, dtype=np.uint16, mode="r")
    assert len(train) == c.train_tokens and len(val) == c.val_tokens > 0
    assert train.max() < c.vocab_size <= 300
    n_val = sum(corpus.is_val(d, 0.1) for d in docs)
    assert 0 < n_val < len(docs) // 4
    mtime = c.train_bin.stat().st_mtime_ns
    assert batches.prepare(resolve(cfg)) == c and c.train_bin.stat().st_mtime_ns == mtime  # cached


def test_split_is_by_document_and_stable():
    docs = [f"document number {i}" for i in range(2000)]
    first = [corpus.is_val(d, 0.05) for d in docs]
    assert first == [corpus.is_val(d, 0.05) for d in docs]
    assert 0.03 < sum(first) / len(docs) < 0.07


def test_batches_are_seeded_windows_of_the_memmap(tmp_path):
    path, _ = write_corpus(tmp_path)
    corpus = batches.prepare(resolve(DataConfig(source="files", paths=[str(path)], vocab_size=300,
                                     cache_dir=str(tmp_path / "cache"))))
    a, b = batches.Batches(corpus, 16, 4, seed=1), batches.Batches(corpus, 16, 4, seed=1)
    x = a.next()
    assert x.shape == (4, 17) and np.array_equal(x, b.next())
    tokens = np.memmap(corpus.train_bin, dtype=np.uint16, mode="r")
    start = next(i for i in range(0, len(tokens) - 16, 16) if np.array_equal(tokens[i:i + 17], x[0]))
    assert start % 16 == 0
    seen = {tuple(a.next()[0]) for _ in range(a.n_windows)}  # epochs wrap around without error
    assert len(seen) > 1


def test_missing_file_and_bad_field_fail_clearly(tmp_path):
    with pytest.raises(HarnessError, match="not found"):
        batches.prepare(resolve(DataConfig(source="files", paths=[str(tmp_path / "nope.txt")],
                                cache_dir=str(tmp_path))))
    path, _ = write_corpus(tmp_path, kind="jsonl")
    with pytest.raises(HarnessError, match="no field 'text'"):
        list(corpus.documents(DataConfig(source="files", paths=[str(path)])))


def test_hub_source_needs_a_name():
    with pytest.raises(HarnessError, match="hub_name"):
        list(corpus.documents(DataConfig(source="hub")))


def test_hub_code_path_on_a_local_dataset_directory(tmp_path):
    """`load_dataset(name, streaming=True)` is the hub path; a local dataset folder exercises it offline."""
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    _, docs = write_corpus(folder, kind="jsonl")
    cfg = DataConfig(source="hub", hub_name=str(folder), text_field="body", max_docs=50)
    assert list(corpus.documents(cfg)) == docs[:50]


def _truncate_half(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _odd_size(p):
    p.write_bytes(p.read_bytes() + b"\x00")


def _flip_one_byte(p):
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))


@pytest.mark.parametrize("name,damage", [("train.bin", _truncate_half), ("val.bin", _truncate_half),
                                         ("train.bin", _odd_size), ("train.bin", _flip_one_byte),
                                         ("tokenizer.json", _flip_one_byte)])
def test_a_damaged_cache_is_detected_and_rebuilt_never_trained_on(tmp_path, capsys, name, damage):
    """Each used to be trusted: half the data trained silently, a different validation set scored,
    or numpy's 'not a multiple of the data-type size' on every later run."""
    path, _ = write_corpus(tmp_path)
    cfg = DataConfig(source="files", paths=[str(path)], vocab_size=300, cache_dir=str(tmp_path / "cache"))
    good = batches.prepare(resolve(cfg))
    want = {n: (good.dir / n).read_bytes() for n in corpus.FILES}
    damage(good.dir / name)
    with pytest.raises(HarnessError, match=name):
        corpus.verify(good.dir)
    again = batches.prepare(resolve(cfg))
    err = capsys.readouterr().err
    assert name in err and "rebuilding" in err and len(err.strip().splitlines()) == 1
    assert again == good and {n: (again.dir / n).read_bytes() for n in corpus.FILES} == want
    assert len(np.memmap(again.train_bin, dtype=np.uint16, mode="r")) == again.train_tokens


def test_the_byte_count_of_every_token_sums_to_the_held_out_texts_utf8_bytes(tmp_path):
    """val/bpb's denominator: the tokenizer's own decoding of the validation split, byte for byte
    (multi-byte characters included), equals the per-token byte table summed."""
    from tokenizers import Tokenizer

    docs = [f"naïve Zürich 東京 the fox {i} jumps — “quoted” text" for i in range(400)]
    (tmp_path / "c.txt").write_text("\n\n".join(docs) + "\n")
    cfg = DataConfig(source="files", paths=[str(tmp_path / "c.txt")], vocab_size=300, cache_dir=str(tmp_path / "c"))
    c = batches.prepare(resolve(cfg))
    val = np.memmap(c.val_bin, dtype=np.uint16, mode="r")
    table = batches.token_bytes(c.dir / "tokenizer.json")
    held_out = [d for d in docs if corpus.is_val(d, cfg.val_fraction)]
    decoded = Tokenizer.from_file(str(c.dir / "tokenizer.json")).decode([int(t) for t in val], skip_special_tokens=True)
    assert table[val].sum() == len(decoded.encode()) == sum(len(d.encode()) for d in held_out) > 0
    windows = batches.val_windows(c, 8, 10**6)
    assert batches.bytes_per_token(c, windows) == pytest.approx(table[windows[:, 1:]].mean())
