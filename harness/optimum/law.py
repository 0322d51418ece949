"""The law an optimum is read from: a study's runs fitted as harness-fit fitted them (torch-free).

fit=PATH is a study directory or its fit.json. With a fit.json (PATH/fit.json where it exists), its
recorded settings are used again (forms, bootstrap, seed, n_convention, group_by ...), so the optimum's
numbers are harness-fit's at that budget; without one, harness-fit's defaults. The caller may keep
only some cells (harness-optimum study=NAME: that study's fit stage, the law its prediction.json was
made from). With group_by, the family's group is fitted alone with its own bootstrap seed
(groups.group_seed), as predict= does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError


@dataclass
class Law:
    table: pd.DataFrame  # the fitted points (the group's own, with group_by)
    convention: str  # n_convention: nonembed, active or total
    options: dict  # analyse's options
    seed: int  # the bootstrap seed (the group's own with group_by)
    source: str  # what was fitted, for optimum.json
    runs_path: Path  # where the fitted runs' records are (a study directory, or its runs.csv beside them)
    group_by: str = ""
    group: str = ""


def settings_of(path: Path) -> tuple[Path, dict]:
    """(the runs, harness-fit's recorded settings or {}) for fit=PATH: with a fit.json, the points it
    fitted (its runs.csv, which reads back whole: fit/points.py) where they sit beside it."""
    fit_json = path if path.is_file() else path / "fit.json"
    if path.is_file() and path.suffix != ".json":
        raise HarnessError(f"fit={path}: not a study directory or its fit.json")
    if not fit_json.is_file():
        if not path.is_dir():
            raise HarnessError(f"fit={path}: no such study directory or fit.json")
        return path, {}
    try:
        settings = json.loads(fit_json.read_text())["provenance"]["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HarnessError(f"fit={path}: {fit_json} is not a harness-fit fit.json ({type(e).__name__})") from None
    if (fit_json.parent / "runs.csv").is_file():
        return fit_json.parent / "runs.csv", settings
    runs = Path(settings.get("runs") or fit_json.parent)
    return (runs if runs.exists() else fit_json.parent), settings


def load(path: str, arch: str | None, keys: list[str] | None = None, keys_label: str = "") -> Law:
    """The law of fit=PATH for a family of architecture `arch` (None: the study's own), fitted on the
    cells of `keys` only where given (e.g. a study's fit stage, named by keys_label)."""
    from harness.cli_fit import FitConfig, _analyse_options
    from harness.fit.collect import collect
    from harness.fit.groups import group_seed
    from harness.fit.points import fit_table, resolve_convention

    runs_path, settings = settings_of(Path(path))
    known = {k: v for k, v in settings.items() if k in FitConfig.__dataclass_fields__}
    cfg = FitConfig(**{**known, "runs": str(runs_path), "out": "-"})
    columns = {k: getattr(cfg, f"col_{k}") for k in ("N", "N_nonembed", "N_active", "D", "C", "C_kaplan", "loss")}
    runs, _ = collect(cfg.runs, columns=columns)
    if keys is not None:
        runs = runs[runs["cell_key"].isin(set(keys))]
        if runs.empty:
            raise HarnessError(f"none of {keys_label or 'the named cells'} are in {runs_path}")
    convention = resolve_convention(runs, cfg.n_convention)
    table, _ = fit_table(runs, convention, cfg.drop_highest, cfg.schedule, cfg.group_by or None)
    source = str(runs_path) + (f" ({keys_label})" if keys is not None else "")
    archs = sorted(table["arch"].dropna().astype(str).unique()) if "arch" in table else []
    if not cfg.group_by:
        if arch is not None and archs and archs != [arch]:
            raise HarnessError(f"family of arch {arch}: fit={path} fitted {', '.join(archs)} without group_by, "
                               "so it has no law of its own for that architecture")
        return Law(table, convention, _analyse_options(cfg), cfg.seed, source, runs_path)
    if cfg.group_by != "arch":
        raise HarnessError(f"fit={path} is grouped by {cfg.group_by}; harness-optimum reads a law per arch only")
    if arch is None:
        raise HarnessError(f"fit={path} has a law per arch ({', '.join(archs)}): name the family (family=NAME)")
    sub = table[table["arch"].astype(str) == arch].reset_index(drop=True)
    if sub.empty:
        raise HarnessError(f"fit={path} has no group arch={arch} (groups: {', '.join(archs)})")
    return Law(sub, convention, _analyse_options(cfg), group_seed(cfg.seed, arch), source, runs_path, "arch", arch)


def study_arch(law_table: pd.DataFrame) -> str | None:
    """The one architecture a study's runs have (None if it is not recorded or not one)."""
    if "arch" not in law_table:
        return None
    archs = law_table["arch"].dropna().astype(str).unique()
    return str(archs[0]) if len(archs) == 1 else None


def trained_with(runs_path: Path, table: pd.DataFrame) -> dict:
    """The data, device and compile settings the fitted runs trained with, where they differ from the
    defaults (one finished record's config): the optimum must train on the same corpus, tokenizer and
    validation split as the law it was read from, and on the same kind of device."""
    from dataclasses import asdict

    from harness.config import DataConfig
    from harness.store import records
    from harness.train.spec import DATA_NOT_IDENTITY

    root = runs_path.parent if runs_path.is_file() else runs_path
    keys = set(table["cell_key"].dropna()) if "cell_key" in table else set()
    defaults = asdict(DataConfig())
    for _, rec in records.iter_records(root) if root.is_dir() else []:
        if rec.get("status") != "finished" or (rec.get("summary") or {}).get("cell_key") not in keys:
            continue
        c = rec.get("config") or {}
        data = {k: v for k, v in (c.get("data") or {}).items()
                if k in defaults and k not in DATA_NOT_IDENTITY and v != defaults[k]}
        out = {"data": data} if data else {}
        out.update({k: c[k] for k in ("device", "compile") if k in c and c[k] not in ("auto", False)})
        return out
    return {}


def schedule(table: pd.DataFrame) -> str:
    """The LR schedule most of the fitted runs trained with (the optimum trains with it too)."""
    if "schedule" not in table or table["schedule"].dropna().empty:
        return "cosine"
    return str(table["schedule"].dropna().mode().iloc[0])
