"""Shared helpers: compose configs exactly as the CLI does; run the CLI as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import Config, compose

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ.setdefault("WANDB_SILENT", "true")


def make_config(*overrides: str) -> Config:
    return compose(list(overrides))


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a console script the way a user does (via this interpreter, so no PATH assumptions)."""
    prog, rest = args[0], list(args[1:])
    module, entry = {"harness-train": ("cli", "train_main"), "harness-plan": ("cli", "plan_main"),
                     "harness-study": ("study", "main"), "harness-fit": ("cli_fit", "fit_main"),
                     "harness-prepare": ("data.prepare", "main")}[prog]
    code = f"import sys; sys.argv[0] = {prog!r}; from harness.{module} import {entry}; sys.exit({entry}())"
    return subprocess.run([sys.executable, "-c", code, *rest], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=own_wandb())


def own_wandb() -> dict:
    """The environment without this process's wandb service: a child that shares it would share its
    registry of runs, where a run killed mid-test stays "in use" (a real rerun is a fresh process)."""
    return {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}


@pytest.fixture
def tiny(tmp_path):
    """A 20k-parameter model on 30k tokens of the default corpus: a few seconds on 2 cores."""
    return make_config("model=gpt2-20k", "budget.tokens=30000", "data.val_tokens=8192", "evals=1",
                       f"results_dir={tmp_path / 'results'}")
