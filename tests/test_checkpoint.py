"""Runs that survive: SIGKILL or SIGTERM mid-cell, then the same command resumes bit for bit."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.store import records
from harness.store.wandb_log import is_complete, read_wandb_log
from harness.train import cell, checkpoint, spec
from tests.conftest import cli, make_config, own_wandb

COSINE = ["model=gpt2-5k", "budget.tokens=40000", "threads=1"]
WSD = ["model=gpt2-5k", "optim=wsd", "branches=[0.5]", "budget.tokens=40000", "threads=1"]


def _start(args, cwd):
    code = "import sys; sys.argv[0] = 'harness-train'; from harness.cli import train_main; sys.exit(train_main())"
    env = {**own_wandb(), "WANDB_MODE": "offline", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, p, what: str, timeout=300):
    t = time.time()
    while not condition():
        assert p.poll() is None, f"exited before {what}: {p.communicate()[1][-2000:]}"
        assert time.time() - t < timeout, f"no {what} in {timeout} s"
        time.sleep(0.05)


def _checkpoint_step(directory: Path) -> int | None:
    try:
        return torch.load(directory / checkpoint.NAME / "extra.pt", weights_only=False)["step"]
    except (OSError, EOFError, RuntimeError, KeyError):
        return None


def _steps_logged(directory: Path) -> list[int]:
    (log,) = directory.glob("wandb/offline-run-*/run-*.wandb")
    assert is_complete(log)
    return [h["_step"] for h in read_wandb_log(log)[2]]


@pytest.mark.slow  # end to end, 15-35 s on 2 cores; CI runs the slow tier
def test_a_killed_cosine_cell_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    reference = cell.run(make_config(*COSINE, f"results_dir={tmp_path / 'ref'}"))
    cfg = make_config(*COSINE, "checkpoint.every_steps=150", f"results_dir={tmp_path / 'r'}")
    s = spec.resolve(cfg)
    args = [*COSINE, "checkpoint.every_steps=150", f"results_dir={tmp_path / 'r'}"]
    p = _start(args, tmp_path)
    _wait_for(lambda: _checkpoint_step(s.directory) == 150, p, "checkpoint at step 150")
    p.send_signal(signal.SIGKILL)  # no chance to write anything more: the checkpoint at 150 is what is left
    p.wait()
    assert records.read(s.directory)["status"] == "running"
    again = cli("harness-train", *args, cwd=tmp_path)
    assert again.returncode == 0 and "resumed from step 150" in again.stdout, again.stderr[-2000:]
    rec = records.read(s.directory)
    assert rec["status"] == "finished" and rec["summary"]["val/loss"] == reference["summary"]["val/loss"]
    assert rec["summary"]["train/loss"] == reference["summary"]["train/loss"]
    steps = _steps_logged(s.directory)  # one complete log, every step once, none missing
    assert steps == sorted(set(steps)) and steps == _steps_logged(spec.resolve(
        make_config(*COSINE, f"results_dir={tmp_path / 'ref'}")).directory)
    assert not (s.directory / checkpoint.NAME).exists()  # a finished cell keeps no checkpoint


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_then_stops_and_the_rerun_finishes_it(tmp_path):
    reference = cell.run(make_config(*COSINE, f"results_dir={tmp_path / 'ref'}"))
    args = [*COSINE, f"results_dir={tmp_path / 'r'}"]  # no periodic checkpoint: only the signal's
    s = spec.resolve(make_config(*args))
    p = _start(args, tmp_path)
    _wait_for(lambda: (records.read(s.directory) or {}).get("status") == "running", p, "a running record")
    time.sleep(2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode == 143 and len(lines) == 1 and "stopped by SIGTERM at step" in lines[0], err[-2000:]
    step = _checkpoint_step(s.directory)
    assert step and f"at step {step} of" in lines[0]
    assert records.read(s.directory)["status"] == "failed"  # not a data point until it finishes
    again = cli("harness-train", *args, cwd=tmp_path)
    assert again.returncode == 0 and f"resumed from step {step}" in again.stdout, again.stderr[-2000:]
    assert records.read(s.directory)["summary"]["val/loss"] == reference["summary"]["val/loss"]


@pytest.mark.slow
def test_a_wsd_trunk_killed_between_branches_keeps_the_branch_it_wrote(tmp_path):
    reference = cell.run(make_config(*WSD, f"results_dir={tmp_path / 'ref'}"))
    args = [*WSD, f"results_dir={tmp_path / 'r'}"]
    s = spec.resolve(make_config(*args))
    first = s.branch(s.branches[0][1]).directory
    p = _start(args, tmp_path)
    _wait_for(lambda: (records.read(first) or {}).get("status") == "finished" and _checkpoint_step(s.directory),
              p, "the first branch and the checkpoint after it")
    p.send_signal(signal.SIGKILL)
    p.wait()
    kept = records.read(first)
    again = cli("harness-train", *args, cwd=tmp_path)
    assert again.returncode == 0 and f"resumed from step {s.branches[0][0]}" in again.stdout, again.stderr[-2000:]
    assert records.read(first)["run_id"] == kept["run_id"]  # not retrained
    last = s.branch(s.branches[-1][1]).directory
    ref_last = spec.resolve(make_config(*WSD, f"results_dir={tmp_path / 'ref'}")).branch(s.branches[-1][1]).directory
    assert records.read(last)["summary"]["val/loss"] == records.read(ref_last)["summary"]["val/loss"]
    assert records.read(s.directory, records.TRUNK)["branches"] == reference["branches"]


@pytest.mark.slow
def test_a_checkpoint_of_another_run_is_refused_and_a_damaged_one_restarts_the_cell(tmp_path):
    args = [*COSINE, f"results_dir={tmp_path / 'r'}"]
    s = spec.resolve(make_config(*args))
    p = _start(args, tmp_path)
    _wait_for(lambda: (records.read(s.directory) or {}).get("status") == "running", p, "a running record")
    time.sleep(1)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    extra = torch.load(s.directory / checkpoint.NAME / "extra.pt", weights_only=False)
    extra["identity"]["lr"] *= 2  # as if the LR rule had changed since it was written
    torch.save(extra, s.directory / checkpoint.NAME / "extra.pt")
    out = cli("harness-train", *args, cwd=tmp_path)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "written for a different run: lr" in lines[0], out.stderr
    (s.directory / checkpoint.NAME / "extra.pt").write_bytes(b"not a checkpoint")
    out = cli("harness-train", *args, cwd=tmp_path)
    assert out.returncode == 0 and "is unreadable" in out.stdout and "starting the cell from scratch" in out.stdout
    assert records.read(s.directory)["status"] == "finished"


def test_micro_batches_give_the_full_batch_step(tmp_path):
    base = ["model=gpt2-5k", "budget.tokens=4096", "optim.batch_tokens=512", "threads=1"]  # 8 steps: float-order
    # differences grow with every step at this LR (80 steps reached 2e-5 on an AMD EPYC; 8 steps 1e-8); a wrong split
    # of the batch changes the tokens seen, so shows at once
    whole = cell.run(make_config(*base, f"results_dir={tmp_path / 'a'}"))
    micro = cell.run(make_config(*base, "optim.micro_batch_tokens=128", f"results_dir={tmp_path / 'b'}"))
    assert micro["cell_id"] == whole["cell_id"]  # the same cell: micro-batching is not part of its identity
    full = whole["summary"]["val/loss"]  # summed in 4 parts: only the float order differs
    assert abs(micro["summary"]["val/loss"] - full) / full < 1e-5, (micro["summary"]["val/loss"], full)
    with pytest.raises(Exception, match="micro_batch_tokens=100"):
        spec.resolve(make_config(*base, "optim.micro_batch_tokens=100"))
