"""Empirical scaling-law harness: train grids of small GPT-style models, fit scaling laws.

The pipeline, one package per stage (each package's __init__ is its map):

  config, validate  the schema of a run (Hydra structured config) and every option's range
  data/             text -> tokenizer -> verified token files -> batches
  train/            config -> Spec -> a trained run, recorded
  store/            what a run leaves on disk: records, wandb logs, cell locks (read by both sides)
  fit/              records -> a table -> laws with intervals (torch-free)
  report/           fit.json, report.md, figures, comparisons (torch-free)

Entry points, thin, at the top: cli (harness-train, harness-plan), plan (the planner behind
harness-plan), cli_fit (harness-fit), study (harness-study; mixing_study: its data studies);
harness-prepare is data/prepare.
"""

from harness import _moved

_moved.install()  # the flat paths of before (harness.records, harness.corpus, ...) stay importable


def __getattr__(name: str):
    """`from harness import records` (the flat layout of before) still finds the moved module."""
    if name in _moved.OLD:
        import importlib

        return importlib.import_module(f"harness.{name}")
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
