"""One cell across 2 processes (gloo on CPU): the one-process run's loss, recorded once, resumable anywhere."""
import signal
import time

import pytest
from hydra import compose

from harness.config import hydra_context
from harness.errors import HarnessError
from harness.store import records
from harness.train import cell, spec
from tests.conftest import cli, make_config
from tests.test_checkpoint import _checkpoint_step, _start, _steps_logged, _wait_for

# 80 steps of 4 sequences: each process takes 2 sequences of every batch
BASE = ["budget.tokens=40960", "optim.batch_tokens=512", "threads=1"]


def _pair(tmp_path, model: str, strategy: str) -> tuple[dict, dict]:
    one = cell.run(make_config(f"model={model}", *BASE, f"results_dir={tmp_path / 'one'}"))
    two = cell.run(make_config(f"model={model}", *BASE, "distributed.nproc=2", f"distributed.strategy={strategy}",
                               f"results_dir={tmp_path / 'two'}"))
    return one, two


@pytest.mark.parametrize("model,strategy", [
    ("gpt2-5k", "ddp"), pytest.param("gpt2-5k", "fsdp", marks=pytest.mark.slow),
    pytest.param("llama-5k", "ddp", marks=pytest.mark.slow), pytest.param("llama-5k", "fsdp", marks=pytest.mark.slow),
])
def test_two_processes_give_the_one_process_loss_and_record_once(tmp_path, model, strategy):
    one, two = _pair(tmp_path, model, strategy)
    assert two["status"] == "finished" and two["cell_id"] == one["cell_id"]  # the same cell
    a, b = one["summary"]["val/loss"], two["summary"]["val/loss"]
    assert abs(a - b) / a < 1e-4, (a, b)  # the same global batch and data order; only float order differs
    assert two["env"]["world_size"] == 2 and two["env"]["strategy"] == strategy
    directory = spec.resolve(make_config(f"model={model}", *BASE, f"results_dir={tmp_path / 'two'}")).directory
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]  # one cell directory
    assert len(list(directory.glob("wandb/offline-run-*"))) == 1  # one wandb run, by the main process
    assert _steps_logged(directory) == _steps_logged(spec.resolve(
        make_config(f"model={model}", *BASE, f"results_dir={tmp_path / 'one'}")).directory)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_on_one_process(tmp_path):
    """The checkpoint is re-sharded on load: 2 processes write it, 1 reads it."""
    reference = cell.run(make_config("model=gpt2-5k", *BASE, f"results_dir={tmp_path / 'ref'}"))
    args = ["model=gpt2-5k", *BASE, "distributed.nproc=2", "checkpoint.every_steps=40", f"results_dir={tmp_path / 'r'}"]
    s = spec.resolve(make_config(*args))
    p = _start(args, tmp_path)
    _wait_for(lambda: _checkpoint_step(s.directory) == 40, p, "the checkpoint at step 40")
    p.kill()
    p.wait()
    again = cli("harness-train", *[a for a in args if not a.startswith("distributed.")], cwd=tmp_path)
    assert again.returncode == 0 and "resumed from step 40" in again.stdout, again.stderr[-2000:]
    a, b = reference["summary"]["val/loss"], records.read(s.directory)["summary"]["val/loss"]
    assert abs(a - b) / a < 1e-4, (a, b)


@pytest.mark.slow
def test_sigterm_reaches_every_process_and_each_writes_its_shard(tmp_path):
    args = ["model=gpt2-5k", "budget.tokens=204800", "optim.batch_tokens=512", "threads=1", "distributed.nproc=2",
            f"results_dir={tmp_path / 'r'}"]
    s = spec.resolve(make_config(*args))
    p = _start(args, tmp_path)
    _wait_for(lambda: (records.read(s.directory) or {}).get("status") == "running", p, "a running record")
    time.sleep(2)
    p.send_signal(signal.SIGTERM)  # the parent passes it on: both processes write, then stop
    _, err = p.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode == 143 and len(lines) == 1 and "stopped by SIGTERM" in lines[0], err[-2000:]
    step = _checkpoint_step(s.directory)
    assert step and records.read(s.directory)["status"] == "failed"
    assert len(list((s.directory / "checkpoint").glob("*.distcp"))) == 2  # a shard file per process


@pytest.mark.parametrize("args,message", [
    (["distributed.nproc=64", "optim.batch_tokens=8192"], "distributed.nproc=64 is more than the"),
    (["distributed.nproc=2", "distributed.strategy=fsdp", "model.n_embd=1", "model.n_head=1"], "too small to shard"),
    (["distributed.nproc=2", "optim.batch_tokens=384"], "cannot share"),  # 3 sequences for 2 processes
    (["distributed.nproc=2", "distributed.strategy=zero"], "distributed.strategy='zero' is not one of"),
])
def test_bad_distributed_settings_are_refused_in_one_line(tmp_path, args, message):
    out = cli("harness-train", "model=gpt2-5k", "budget.tokens=40960", *args, f"results_dir={tmp_path}", cwd=tmp_path)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr[-2000:]


def test_the_slurm_launcher_composes_one_cell_on_two_gpus():
    with hydra_context():
        c = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=2",
                                         "distributed.nproc=2"], return_hydra_config=True)
    assert c.hydra.launcher.gpus_per_node == 2 and c.hydra.launcher.signal_delay_s > 0
    assert spec.resolve(make_config("distributed.nproc=2", "model=gpt2-5k", *BASE)).world_size == 2
    with pytest.raises(HarnessError, match="cannot share"):
        spec.resolve(make_config("distributed.nproc=2", "model=gpt2-5k", "optim.batch_tokens=384"))


@pytest.mark.slow
def test_the_slurm_launchers_local_twin_trains_one_cell_on_two_processes(tmp_path):
    out = cli("harness-train", "-m", "hydra/launcher=slurm_local", "model=gpt2-5k", *BASE, "distributed.nproc=2",
              f"results_dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (rec,) = [records.read(p) for p in (tmp_path / "single").iterdir()]
    assert rec["status"] == "finished" and rec["env"]["world_size"] == 2
