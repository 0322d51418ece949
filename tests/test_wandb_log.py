"""A real wandb offline run is decoded back exactly, with no network and no wandb server."""

import os

import pytest

from harness.errors import HarnessError
from harness.store.wandb_log import is_complete, read_wandb_log, wait_complete

wandb = pytest.importorskip("wandb")


def offline_run(tmp_path, config, history, summary):
    os.environ["WANDB_SILENT"] = "true"
    run = wandb.init(mode="offline", dir=tmp_path, project="harness-test", config=config)
    for row in history:
        run.log(row)
    for k, v in summary.items():
        run.summary[k] = v
    run.finish()
    (log,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    assert wait_complete(log, timeout_s=60)  # finish() may return before the last block is written
    return log, run.id


def test_config_history_summary_round_trip(tmp_path):
    config = {"model": {"n_layer": 2, "d_model": 64, "name": "tiny"}, "optim": {"lr": 3e-4},
              "seed": 1, "derived": {"N": 12345, "D": 6.4e6}}
    # long strings push the log past one 32 KiB block, so chunked records are exercised
    history = [{"train/loss": 4.0 - 0.01 * i, "tokens": 1000 * i, "note": "x" * 200}
               for i in range(300)]
    summary = {"val/loss": 3.25, "N": 12345, "D": 6400000, "status": "finished"}
    log, run_id = offline_run(tmp_path, config, history, summary)
    assert log.stat().st_size > 32768 and log.name == f"run-{run_id}.wandb"
    got_config, got_summary, got_history = read_wandb_log(log)
    assert got_config == config
    assert [{k: r[k] for k in ("train/loss", "tokens", "note")} for r in got_history] == history
    assert [r["_step"] for r in got_history] == list(range(300))
    for k, v in summary.items():
        assert got_summary[k] == v
    assert got_summary["train/loss"] == history[-1]["train/loss"]  # last logged value


def test_not_a_wandb_log(tmp_path):
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"hello world, not a log")
    with pytest.raises(HarnessError, match="not a wandb offline log"):
        read_wandb_log(bad)


def test_a_log_cut_short_reads_as_an_incomplete_prefix(tmp_path):
    history = [{"train/loss": 4.0 - 0.01 * i, "note": "x" * 200} for i in range(300)]
    log, _ = offline_run(tmp_path, {"seed": 0}, history, {"status": "finished"})
    assert is_complete(log)
    cut = tmp_path / "cut.wandb"
    cut.write_bytes(log.read_bytes()[: 2 * 32768])  # what a reader sees before the last flush
    assert not is_complete(cut)
    _, _, got = read_wandb_log(cut)
    assert 0 < len(got) < len(history)
    assert [r["train/loss"] for r in got] == [h["train/loss"] for h in history[: len(got)]]
