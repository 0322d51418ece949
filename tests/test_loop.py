"""The CPU step's two speed settings change speed only: no page faults per step, the same weights."""
import json
import subprocess
import sys

import pytest
import torch

from harness.config import Config, ModelConfig, OptimConfig
from harness.train import fastpath, loop, model

SHAPE = ModelConfig(arch="gpt2", n_layer=1, n_embd=32, n_head=1, n_positions=128)
VOCAB, ROWS = 2048, 4  # (4 x 128) x 2048 fp32 logits: 4 MiB, above glibc's 128 KiB mmap threshold

FAULTS = f"""
import json, resource, torch
from harness.train import fastpath, loop, model
from harness.config import ModelConfig
torch.set_num_threads(1)
net = model.build(ModelConfig(**{SHAPE.__dict__!r}), {VOCAB}, seed=0)
batch = torch.randint(0, {VOCAB}, ({ROWS}, 129), generator=torch.Generator().manual_seed(0))
def faults_per_step(steps=10):
    fastpath.lm_loss(net, batch).backward()  # first step: the heap grows once, either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        fastpath.lm_loss(net, batch).backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps
default = faults_per_step()
kept = loop.keep_freed_memory()
print(json.dumps({{"default": default, "kept": kept, "keep": faults_per_step()}}))
"""


def test_keeping_freed_memory_ends_the_page_faults_of_each_step():
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True)
    faults = json.loads(out.stdout.strip().splitlines()[-1])
    if not faults["kept"]:
        pytest.skip("this C library has no mallopt")
    assert faults["default"] > 500  # each step's 4 MiB logits and their grads fault in afresh
    assert faults["keep"] < 0.05 * faults["default"]


def test_setup_keeps_freed_memory_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(True) or True)
    cfg = Config()
    cfg.device = "cpu"
    loop.setup(cfg.device, cfg.threads)
    assert calls == [True]


def test_cpu_optimizer_steps_the_same_weights_as_the_single_tensor_loop():
    batch = torch.randint(0, VOCAB, (ROWS, 129), generator=torch.Generator().manual_seed(1))
    weights = []
    for foreach in (True, False):
        net = model.build(SHAPE, VOCAB, seed=0)
        opt = loop.make_optimizer(net, OptimConfig(), 3e-3, torch.device("cpu"))
        for group in opt.param_groups:
            group["foreach"] = foreach  # make_optimizer's choice, then torch's default loop
        for _ in range(20):
            fastpath.lm_loss(net, batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert loop.make_optimizer(net, OptimConfig(), 3e-3, torch.device("cpu")).defaults["foreach"] is True
    assert torch.equal(weights[0], weights[1])
