"""GPU placement for parallel sweeps, tested on CPU (no GPU here): real processes and real locks, the
device count given instead of read from CUDA; and the GPU path itself, run only where a GPU is."""
import multiprocessing as mp
import time

import pytest

from harness.cli import _gpu_for_job
from harness.train import gpus
from tests.conftest import make_config


def _job(folder, count, seconds, out):
    slot = gpus.take(count, folder, poll_s=0.02)
    start = time.monotonic()
    time.sleep(seconds)
    out.put((slot.index, start, time.monotonic()))
    slot.release()


def test_no_two_running_jobs_share_a_gpu_with_uneven_job_lengths(tmp_path):
    """6 jobs of uneven length, 3 at a time, on 2 GPUs: each runs on a GPU no other running job holds."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    lengths = [0.9, 0.2, 0.5, 0.1, 0.6, 0.3]
    procs = [ctx.Process(target=_job, args=(tmp_path, 2, s, out)) for s in lengths]
    for p in procs[:3]:
        p.start()
    time.sleep(0.3)  # the later jobs arrive while some of the first ones still run
    for p in procs[3:]:
        p.start()
    for p in procs:
        p.join(timeout=60)
    spans = [out.get(timeout=5) for _ in procs]
    assert {g for g, _, _ in spans} == {0, 1}
    for i, (g, a0, a1) in enumerate(spans):
        for h, b0, b1 in spans[i + 1:]:
            assert g != h or a1 <= b0 or b1 <= a0, spans  # same GPU: never at the same time


def test_a_sweep_on_cuda_or_auto_is_placed_and_explicit_choices_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(gpus.tempfile, "gettempdir", lambda: str(tmp_path))
    for device in ("cuda", "auto"):  # sweep=gpu sets device: cuda; it used to put every job on GPU 0
        cfg = make_config(f"device={device}")
        slot = _gpu_for_job(cfg, count=8)
        assert cfg.device == "cuda:0" and slot.index == 0
        other = make_config(f"device={device}")
        second = _gpu_for_job(other, count=8)  # the first job still holds GPU 0
        assert other.device == "cuda:1"
        slot.release()
        second.release()
    for kept in ("cpu", "cuda:3"):
        cfg = make_config(f"device={kept}")
        assert _gpu_for_job(cfg, count=8) is None and cfg.device == kept
    assert _gpu_for_job(make_config("device=cuda"), count=1) is None  # one GPU: nothing to place


@pytest.mark.gpu
def test_the_gpu_path_end_to_end(tmp_path):
    """On a GPU box: bf16 autocast, fused AdamW, compile, a WSD trunk, as a real sweep runs them."""
    import torch

    from harness.train import cell

    assert torch.cuda.is_available()
    rec = cell.run(make_config("sweep=smoke", "device=cuda", "compile=true", "optim=wsd", "branches=[0.5]",
                               "budget.tokens=60000", f"results_dir={tmp_path}"))
    assert rec["status"] == "finished" and rec["env"]["device"].startswith("cuda")
