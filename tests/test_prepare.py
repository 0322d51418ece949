"""Prepared corpora (harness-prepare, data=prepared), hub presets on local folders of their shape,
the repetition guard, and every shipped sweep preset against its own planner."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

from harness import plan
from harness.data import batches, corpus
from harness.data.prepare import run as prepare_run
from harness.data.spec import resolve
from harness.errors import HarnessError
from harness.train import cell, spec
from tests.conftest import CONF, ROOT, cli, make_config
from tests.test_data import write_corpus


def _files(tmp_path, n_docs=3000):
    path, docs = write_corpus(tmp_path, n_docs=n_docs)
    return ["data=files", f"data.paths=[{path}]", "data.vocab_size=300", f"data.cache_dir={tmp_path / 'cache'}"], docs


def _cell(tmp_path, results, *data_args):
    return make_config("model=gpt2-8k", "budget.tokens=20480", "data.val_tokens=4096", "evals=1",
                       f"results_dir={tmp_path / results}", "wandb.mode=disabled", *data_args)


def test_a_moved_prepared_folder_trains_bit_identically_to_its_source(tmp_path):
    source, _ = _files(tmp_path)
    from_source = cell.run(_cell(tmp_path, "r_source", *source))
    prepare_run(source, tmp_path / "made_here")
    moved = tmp_path / "another" / "machine" / "folder"
    shutil.move(tmp_path / "made_here", moved)
    prepared = ["data=prepared", f"data.path={moved}", "data.vocab_size=300"]
    from_folder = cell.run(_cell(tmp_path, "r_folder", *prepared))
    assert from_folder["status"] == from_source["status"] == "finished"
    assert from_folder["summary"]["val/loss"] == from_source["summary"]["val/loss"]
    assert from_folder["summary"]["unique_train_tokens"] == from_source["summary"]["unique_train_tokens"]
    # the folder's identity is its contents: the same cell wherever it is mounted
    copy = tmp_path / "mounted_elsewhere"
    shutil.copytree(moved, copy)
    at_copy = spec.resolve(_cell(tmp_path, "r_folder", "data=prepared", f"data.path={copy}", "data.vocab_size=300"))
    assert at_copy.cell_id == from_folder["cell_id"]
    manifest = json.loads((moved / corpus.MANIFEST).read_text())
    assert manifest["source"] == [str(tmp_path / "corpus.txt")] and manifest["corpus_key"].startswith("files-")


def _flip(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["flip train.bin", "drop val.bin", "wrong vocabulary", "no manifest"])
def test_a_damaged_or_mismatched_folder_is_refused_in_one_line(tmp_path, damage):
    source, _ = _files(tmp_path, n_docs=800)
    folder = tmp_path / "folder"
    prepare_run(source, folder)
    vocab = "300"
    if damage == "flip train.bin":
        _flip(folder / "train.bin")
    elif damage == "drop val.bin":
        (folder / "val.bin").unlink()
    elif damage == "wrong vocabulary":
        vocab = "512"
    else:
        (folder / corpus.MANIFEST).unlink()
    out = cli("harness-train", "model=gpt2-8k", "budget.tokens=4096", "data=prepared", f"data.path={folder}",
              f"data.vocab_size={vocab}", f"results_dir={tmp_path / 'r'}", "wandb.mode=disabled", cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
    assert f"data.path={folder}" in out.stderr
    assert not list((tmp_path / "r").rglob("summary.json"))


def test_prepare_refuses_a_non_empty_out_and_reuses_its_own(tmp_path):
    source, _ = _files(tmp_path, n_docs=800)
    folder = tmp_path / "folder"
    first = prepare_run(source, folder)
    assert prepare_run(source, folder)["files"] == first["files"]  # the same corpus: checked, kept
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="not empty"):
        prepare_run(source, other)
    assert (other / "notes.txt").read_text() == "mine"
    out = cli("harness-prepare", *source, cwd=tmp_path)
    assert out.returncode == 2 and "out=DIR" in out.stderr


def _hub_folder(tmp_path, docs, config=None):
    """A local dataset folder shaped like the hub repository (a README `configs:` entry per config)."""
    folder = tmp_path / "hub_repo"
    sub = folder / "data"
    sub.mkdir(parents=True)
    (sub / "train-0.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    if config:
        (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n"
                                          "  - split: train\n    path: data/*.jsonl\n---\n")
    return folder


@pytest.mark.parametrize("preset,name,config", [("tinystories", "roneneldan/TinyStories", None),
                                                ("fineweb_edu", "HuggingFaceFW/fineweb-edu", "sample-10BT")])
def test_hub_presets_compose_and_stream_a_local_folder_of_their_shape(tmp_path, preset, name, config):
    cfg = make_config(f"data={preset}").data
    assert (cfg.source, cfg.hub_name, cfg.hub_config, cfg.text_field) == ("hub", name, config, "text")
    _, docs = write_corpus(tmp_path, n_docs=3000)
    local = dataclasses.replace(cfg, hub_name=str(_hub_folder(tmp_path, docs, config)), vocab_size=300,
                                max_tokens=20000, cache_dir=str(tmp_path / "cache"))
    made = batches.prepare(resolve(local))  # the hub code path: load_dataset(name, config, streaming=True)
    assert made.train_tokens == 20000 == len(np.memmap(made.train_bin, dtype=np.uint16, mode="r"))
    read = len(corpus.split(local)[0])
    assert read < len(docs) * 0.9  # the stream stopped once it held enough text


def test_repetition_guard_refuses_before_training_and_a_study_raises_it(tmp_path):
    source, _ = _files(tmp_path)
    capped = [*source, "data.max_train_tokens=4000"]  # 20480 tokens = 5.1 epochs of 4000
    with pytest.raises(HarnessError, match=r"5\.\d+ epochs .* data.max_epochs=4"):
        cell.run(_cell(tmp_path, "r", *capped))
    assert not list((tmp_path / "r").rglob("summary.json"))
    rec = cell.run(_cell(tmp_path, "r", *capped, "data.max_epochs=8"))
    assert rec["summary"]["unique_train_tokens"] == 4000 and rec["summary"]["epochs"] == pytest.approx(20480 / 4000)


def _plan(*argv):
    return plan.main(list(argv))


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "sweep").glob("*.yaml")
                                          if p.stem not in ("gpu", "data_gpu", "none")))
def test_every_cpu_preset_passes_its_own_planner(tmp_path, preset):
    found = _plan(f"sweep={preset}", f"results_dir={tmp_path}")
    assert found == {"warnings": [], "errors": []}


def test_gpu_preset_plans_clean_on_enough_data_and_refuses_the_default_corpus(tmp_path, capsys):
    default = cli("harness-plan", "sweep=gpu", "data=wiki", f"results_dir={tmp_path}", cwd=ROOT)
    assert default.returncode == 1 and default.stdout.count("repeats its data") == 8
    assert "time unknown" in default.stdout  # no GPU runs to estimate from; never a CPU-based guess
    assert _plan("sweep=gpu", f"results_dir={tmp_path}") == {"warnings": [], "errors": []}  # fineweb_edu cap
    # a prepared folder: the planner reads its manifest's counts (it never reads the token files)
    source, _ = _files(tmp_path, n_docs=800)
    folder = tmp_path / "folder"
    prepare_run([*source[:-2], "data.vocab_size=8192", source[-1]], folder)
    manifest = json.loads((folder / corpus.MANIFEST).read_text())
    small = _plan("sweep=gpu", "data=prepared", f"data.path={folder}", f"results_dir={tmp_path}")
    assert len(small["errors"]) == 8 and not small["warnings"]
    manifest["train_tokens"] = 1_100_000_000  # as a folder from harness-prepare data=fineweb_edu would say
    (folder / corpus.MANIFEST).write_text(json.dumps(manifest))
    big = _plan("sweep=gpu", "data=prepared", f"data.path={folder}", f"results_dir={tmp_path}")
    assert big == {"warnings": [], "errors": []}
