"""A real training run: loss starts at ln V and falls, wandb and summary.json record it, reruns skip."""
import math

import pytest

from harness.config import OptimConfig
from harness.errors import Diverged, HarnessError
from harness.store import records
from harness.store.wandb_log import read_wandb_log
from harness.train import cell, schedule, spec
from tests.conftest import cli


def wandb_logs(directory):
    return sorted(directory.glob("wandb/offline-run-*/run-*.wandb"))


def test_run_trains_logs_and_skips_when_done(tiny):
    record = cell.run(tiny)
    s = record["summary"]
    assert record["status"] == "finished" and s["status"] == "finished"
    assert abs(s["val/loss_init"] - math.log(tiny.data.vocab_size)) < 0.15  # random init: uniform
    assert s["val/loss"] < s["val/loss_init"] - 0.5
    assert s["D"] == s["steps"] * s["batch_tokens"] and s["C"] == 6 * s["N"] * s["D"]
    assert 0 < s["epochs"] < 1
    directory = spec.resolve(tiny).directory
    (log,) = wandb_logs(directory)
    config, summary, history = read_wandb_log(log)
    assert summary["val/loss"] == pytest.approx(s["val/loss"])
    # bits per byte: nats per token / ln 2 x tokens per byte of the held-out text (~3-5 bytes a token here)
    assert 2.5 < s["val/bytes_per_token"] < 6
    assert s["val/bpb"] == pytest.approx(s["val/loss"] / math.log(2) / s["val/bytes_per_token"], rel=1e-12)
    assert summary["val/bpb"] == pytest.approx(s["val/bpb"])
    assert config["derived"]["N"] == s["N"] and config["model"]["name"] == "gpt2-20k"
    val_history = [h["val/loss"] for h in history if "val/loss" in h]
    assert len(val_history) == tiny.evals + 2 and val_history[-1] < val_history[0]

    again = cell.run(tiny)  # finished: skipped, no new wandb run
    assert again["run_id"] == record["run_id"] and wandb_logs(directory) == [log]


def test_nan_aborts_with_the_step_and_is_recorded(tiny):
    tiny.optim.lr = 1e30
    with pytest.raises(Diverged, match=r"at step \d+"):
        cell.run(tiny)
    assert records.read(spec.resolve(tiny).directory)["status"] == "diverged"


def test_cosine_spans_exactly_the_run_and_wsd_cools_down():
    o = OptimConfig(schedule="cosine", min_lr_ratio=0.1)
    lrs = [schedule.lr_at(s, 100, 10, 1.0, o) for s in range(100)]
    assert lrs[9] == 1.0 and lrs[0] == 0.1 and max(lrs) == 1.0
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3) and all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    w = OptimConfig(schedule="wsd", cooldown_fraction=0.2)
    lrs = [schedule.lr_at(s, 100, 10, 1.0, w) for s in range(100)]
    assert set(lrs[10:80]) == {1.0} and lrs[-1] < 0.25 and all(a >= b for a, b in zip(lrs[80:], lrs[81:]))


@pytest.mark.parametrize("args,message", [
    (["model.n_embd=100", "model.n_head=3"], "not divisible"),
    (["model=gpt2-nope"], "Could not find 'model/gpt2-nope'"),
    (["budget.tokens=100"], "budget.tokens=100 gives 100 tokens, fewer than one batch"),
    (["data=files", "data.paths=[/no/such/file.txt]"], "data file not found"),
    (["sweep.role=holdot"], "sweep.role='holdot' is not one of 'fit', 'holdout'"),
    (["data=prepared", "data.path=/no/such/folder"], "data.path=/no/such/folder: no manifest.json"),
    (["data.vocab_size=256"], "data.vocab_size=256 must be in [257, 65535]"),  # byte-level BPE would emit id 256
])
def test_invalid_configs_fail_before_training_with_one_line(tmp_path, args, message):
    out = cli("harness-train", f"results_dir={tmp_path}", *args, cwd=tmp_path)
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr + out.stdout
    assert not list(tmp_path.glob("single/*/wandb"))  # nothing was trained


@pytest.mark.slow
def test_default_command_trains_the_default_model(tmp_path):
    out = cli("harness-train", f"results_dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "N=" in out.stdout and "D=" in out.stdout and "C=" in out.stdout
    final = float(out.stdout.split("final val/loss ")[1].split()[0])
    assert final < math.log(2048) - 2.0
    assert list(tmp_path.glob("single/*/wandb/offline-run-*/run-*.wandb"))


def test_the_environment_is_recorded_and_checked_not_part_of_the_identity(tiny, capsys):
    """threads changes a loss in its last digits but is no part of what the cell is: it is recorded
    with the run, a rerun under other threads says so when it skips, and the fitter warns on a mix."""
    tiny.threads = 1
    first = cell.run(tiny)
    assert first["env"]["threads"] == 1 and first["env"]["dtype"] == "float32"
    assert first["env"]["torch"] and first["env"]["device_name"]
    tiny.threads = 2
    again = cell.run(tiny)
    assert again["run_id"] == first["run_id"]  # same cell: not retrained
    out = capsys.readouterr().out
    assert "already finished (under torch" in out and "| 1 threads |" in out and "now torch" in out
    assert spec.resolve(tiny).cell_id == first["cell_id"]


def test_a_budget_beyond_the_corpus_names_the_budget_and_records_nothing(tmp_path):
    for budget in ("budget.tokens=1000000000000000000000000000000", "budget.flops=1e30"):
        out = cli("harness-train", f"results_dir={tmp_path}", "wandb.mode=disabled", budget, cwd=tmp_path)
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert out.returncode == 2 and len(lines) == 1 and budget.split("=")[0] in lines[0], out.stderr
        assert "epochs of its 1,495,009 unique training tokens, over data.max_epochs=4" in lines[0]
    assert not list(tmp_path.rglob("summary.json"))  # a run that cannot start leaves no record


def test_every_command_has_help(tmp_path):
    train_help = cli("harness-train", "--help", cwd=tmp_path)
    assert train_help.returncode == 0 and "harness-train" in train_help.stdout and "budget" in train_help.stdout
    plan_help = cli("harness-plan", "--help", cwd=tmp_path)
    assert plan_help.returncode == 0 and "usage: harness-plan" in plan_help.stdout
    assert "sweep=smoke" in plan_help.stdout and "sweep=tiny" in plan_help.stdout


def test_a_finished_cell_from_older_rules_is_refused_not_reused(tiny):
    """The cell id hashes the config, not what the rules derive from it: a record trained when a rule
    gave another warmup is not this cell any more, and is never silently skipped as if it were."""
    first = cell.run(tiny)
    directory = spec.resolve(tiny).directory
    old = {**first, "summary": {**first["summary"], "warmup_tokens": first["summary"]["warmup_tokens"] // 2}}
    records.write(directory, old)  # what an earlier version of hparams.warmup_tokens would have left
    with pytest.raises(HarnessError, match=r"trained with warmup_tokens=.* current rules give warmup_tokens="):
        cell.run(tiny)
    assert records.read(directory) == old  # the record is left as it was: nothing lost
