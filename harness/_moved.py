"""The flat module paths of the harness before its packages (harness.records, harness.corpus, ...):
old imports keep working as aliases of the modules' new homes, with a DeprecationWarning."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "records": "store.records", "wandb_log": "store.wandb_log", "lock": "store.lock",
    "spec": "train.spec", "accounting": "train.accounting", "hparams": "train.hparams",
    "schedule": "train.schedule", "model": "train.model", "fastpath": "train.fastpath", "loop": "train.loop",
    "wsd": "train.wsd", "track": "train.track", "sweep": "train.sweep", "train": "train.cell",
    "corpus": "data.corpus", "prepare": "data.prepare", "data": "data.batches",
    "collect": "fit.collect", "mapping": "fit.mapping", "forms": "fit.forms", "lm": "fit.lm", "fit": "fit.law",
    "isoflop": "fit.isoflop", "allocate": "fit.allocate", "backtest": "fit.backtest",
    "extrapolation": "fit.extrapolation", "frontier": "fit.frontier", "analysis": "fit.analysis",
    "groups": "fit.groups", "coverage": "fit.coverage", "noisefloor": "fit.noisefloor",
    "repetition": "fit.repetition", "prediction": "fit.prediction", "ask": "fit.ask", "laws": "fit.laws",
    "report": "report.document", "report_horizon": "report.horizon", "plots": "report.plots",
    "compare": "report.compare",
}
# Names that are now packages (harness.data, harness.fit, harness.report, harness.train) resolve to the
# package: their old modules are reachable only under the new path.
OLD = {k: v for k, v in MOVED.items() if k not in ("data", "fit", "report", "train")}


class Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix("harness.")
        if fullname.startswith("harness.") and old in OLD:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = f"harness.{OLD[spec.name.removeprefix('harness.')]}"
        warnings.warn(f"{spec.name} moved to {new}", DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:  # the module is the new one, already executed
        pass


def install() -> None:
    if not any(isinstance(f, Aliases) for f in sys.meta_path):
        sys.meta_path.append(Aliases())
