"""`harness-study study=NAME`: train a study, predict its held-out cells before they run, then score.

A study (conf/study/NAME.yaml) names a sweep directory and two stages of `harness-train -m` argument
lists. The `fit` stage trains first. Then the law is fitted to those runs, and `prediction.json` is
written beside them: each held-out cell's predicted loss with a 95 % prediction interval
(prediction.py). Only then does the `holdout` stage train, and `harness-fit` scores the prediction
in fit.json. A prediction is never rewritten: on a rerun the file that exists is kept, and held-out
cells that ran before any prediction existed are refused.

Runs are resumable as in harness-train: finished cells are skipped, so rerunning the command after an
interruption continues it. This module starts processes and reads files; it never imports torch.
"""
from __future__ import annotations

import difflib
import importlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.config import CONF_DIR, quote, search_dirs, split_config_dir, unquote, user_dir
from harness.errors import HarnessError, entry_point, is_config_error, one_line

USAGE = ("harness-study study=NAME [--config-dir DIR] [results_dir=DIR] [compare=REFERENCE_DIR] [n_bootstrap=N] "
         "[KEY=VALUE ...]")
HELP = f"""usage: {USAGE}

Train a scaling study and test its law on cells it has not seen:
  1. train the study's `fit` stage (harness-train -m, entries side by side),
  2. fit the law to those runs and write prediction.json (predicted loss and 95 % prediction
     interval of every held-out cell, and the compute-optimal size at their budget),
  3. train the `holdout` stage,
  4. harness-fit the sweep directory: fit.json and report.md score the prediction and, with
     compare=, compare every cell and the law with a reference study.
Everything goes to results_dir/<the study's sweep> (default results). Rerunning resumes; an existing
prediction.json is never rewritten. The prediction is fitted on the fit stage's cells only; a study
YAML may name its own `prediction:` file and final-fit `out:` folder, so two studies can share one
sweep. Any other KEY=VALUE is a Hydra override for every stage's harness-train (it changes the
cells' identities: use a new results_dir). --config-dir DIR puts your config folder (study/,
model/, sweep/ ...) before the shipped one, for this command and every harness-train it starts.

studies (shipped):
"""


@dataclass(frozen=True)
class Study:
    name: str
    sweep: str  # results_dir/<sweep> holds every stage's runs
    fit: list  # [[harness-train -m args], ...], run side by side
    holdout: list
    fit_args: list = ()  # extra harness-fit options for the final fit, e.g. [group_by=arch]
    prediction: str = "prediction.json"  # its file in the sweep directory; a second study of one sweep names its own
    out: str = ""  # the final fit's folder inside the sweep directory ("" = the sweep directory itself)
    optimum: dict | None = None  # an optimum study: {fit, study, budget, family} (harness/optimum/confirm.py)
    mixing: dict | None = None  # a data study's mixing law: {sweep, model, held, target} (harness/mixing_study.py)


KEYS = ("sweep", "fit", "holdout", "fit_args", "prediction", "out", "optimum", "mixing")  # a study YAML's keys
BLOCKS = {"optimum": "harness.optimum.confirm", "mixing": "harness.mixing_study"}  # its block's check, run_study


def load(name: str, config_dir: str | None = None) -> Study:
    """study=NAME from the user's config folder's study/ (first) or the shipped ones, or a YAML path."""
    from omegaconf import OmegaConf

    folders = [user_dir(config_dir) / "study"] if config_dir else []
    folders.append(CONF_DIR / "study")
    if name.endswith(".yaml"):
        path = Path(name)
    else:
        found = [f / f"{name}.yaml" for f in folders if (f / f"{name}.yaml").is_file()]
        path = found[0] if found else folders[0] / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted({p.stem for f in ([path.parent] if name.endswith(".yaml") else folders)
                                  for p in f.glob("*.yaml")}))
        raise HarnessError(f"study={name}: no {path} (studies: {known})")
    d = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(d, dict):
        raise HarnessError(f"{path}: a study is a mapping of keys ({', '.join(KEYS)}), not a {type(d).__name__}")
    unknown = [k for k in d if k not in KEYS]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), KEYS, n=1)
        raise HarnessError(f"{path}: unknown key {unknown[0]!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                           + f"; a study has {', '.join(KEYS)}")
    need = ("sweep", "optimum") if "optimum" in d else ("sweep", "fit", "mixing") if "mixing" in d else \
        ("sweep", "fit", "holdout")
    if missing := [k for k in need if not d.get(k)]:
        raise HarnessError(f"{path}: missing {', '.join(missing)}")
    for key in set(BLOCKS) & set(d):  # checked with the rest of the YAML, before anything is resolved or trained
        importlib.import_module(BLOCKS[key]).check(d[key], path)
    prediction = str(d.get("prediction") or "prediction.json")
    if Path(prediction).name != prediction or not prediction.endswith(".json"):
        raise HarnessError(f"{path}: prediction={prediction!r} must be a file name ending in .json")
    return Study(path.stem, str(d["sweep"]), [list(map(str, e)) for e in d.get("fit") or []],
                 [list(map(str, e)) for e in d.get("holdout") or []], [str(a) for a in d.get("fit_args") or []],
                 prediction, str(d.get("out") or ""), d.get("optimum"), d.get("mixing"))


def parse(argv: list[str]) -> dict:
    """The study's own options, and `overrides`: every other KEY=VALUE, for each harness-train."""
    allowed = {"study": None, "results_dir": "results", "compare": "", "n_bootstrap": "1000"}
    out = {**allowed, "overrides": []}
    for a in argv:
        key, eq, value = a.partition("=")
        if not eq or not key:
            raise HarnessError(f"unknown argument {a!r}; takes {', '.join(k + '=' for k in allowed)} "
                               "and Hydra overrides KEY=VALUE")
        if key in allowed:
            out[key] = unquote(value)  # quoted as harness-train takes it, or plain
        else:
            out["overrides"].append(a)
    if not out["study"]:
        raise HarnessError("missing required option: study=NAME")
    if not out["n_bootstrap"].isdigit():
        raise HarnessError(f"n_bootstrap={out['n_bootstrap']} is not a whole number")
    return out


def run_stage(label: str, entries: list[list[str]], common: list[str], config_dir: str | None = None) -> None:
    """Each entry as `harness-train -m ENTRY COMMON`, all at once; fail if any fails."""
    procs = []
    extra = ["--config-dir", str(user_dir(config_dir))] if config_dir else []
    for entry in entries:
        cmd = [sys.executable, "-c", "from harness.cli import train_main; train_main()", *extra, "-m", *entry, *common]
        print(f"harness-study: {label}: harness-train -m {shlex.join(entry + common)}", flush=True)
        procs.append((entry, subprocess.Popen(cmd)))
    failed = [(e, p.wait()) for e, p in procs]
    failed = [(e, rc) for e, rc in failed if rc != 0]
    if failed:
        e, rc = failed[0]
        raise HarnessError(f"{label} stage: `harness-train -m {shlex.join(e + common)}` exited {rc} "
                           "(finished cells are kept; rerun to resume)")


def held_out_cells(study: Study, common: list[str], config_dir: str | None = None) -> list:
    """Every cell of the holdout stage as harness-train will resolve it (plan.cells_of: no torch)."""
    from harness import plan

    rows = []
    for entry in study.holdout:
        for r in plan.cells_of([*entry, *common], config_dir):
            if r.cfg is None:
                raise HarnessError(f"held-out cell {r.cell} is invalid: {r.values['error']}")
            rows.append(r)
    return rows


def fit_stage_keys(study: Study, common: list[str], config_dir: str | None = None) -> list[str]:
    """cell_key of every run the fit stage trains: each WSD branch of a trunk (Spec.branch names
    them), or the run itself."""
    from harness import plan
    from harness.train import spec

    keys = []
    for entry in study.fit:
        for r in plan.cells_of([*entry, *common], config_dir):
            if r.cfg is not None:
                s = spec.resolve(r.cfg)
                keys += [s.branch(end).cell_key for _, end in s.branches] or [s.cell_key]
    return keys


def only_cells(runs, keys):
    """The runs whose cell_key is one of keys."""
    return runs[runs["cell_key"].isin(set(keys))]


def predict(sweep_dir: Path, held: list, n_bootstrap: int, group_by: str, fit_keys: list[str],
            path: Path | None = None) -> dict:
    """Fit the fit stage's runs in sweep_dir (harness-fit's defaults) and predict the held-out cells.
    Only the runs of fit_keys are fitted: other studies' held-out cells may share the directory."""
    from harness.fit.collect import collect
    from harness.fit.points import fit_table, resolve_convention
    from harness.fit.prediction import NAME

    path = path or sweep_dir / NAME
    refuse_late(held, path)
    runs = only_cells(collect(str(sweep_dir))[0], fit_keys)
    convention = resolve_convention(runs, "auto")
    table, _ = fit_table(runs, convention, group_by=group_by or None)
    return predict_table(table, held, n_bootstrap, convention, group_by)


def refuse_late(held: list, path: Path) -> None:
    """No prediction yet, so no held-out cell may have a record (plan.cells_of read each one's)."""
    ran = [r.cell for r in held if r.values["status"] != "todo"]
    if ran:
        raise HarnessError(f"held-out cell(s) {', '.join(ran)} already ran but {path} does not exist: a prediction "
                           "must be written before its check; remove those cells' directories to pre-register one")


def existing_prediction(path: Path) -> dict | None:
    """The prediction already written at `path` (kept, never rewritten), or None if there is none."""
    if not path.exists():
        return None
    try:
        made = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HarnessError(f"{path} is not a readable prediction ({type(e).__name__}: {e}); a prediction is "
                           "never rewritten: restore it, or move it away to pre-register a new one before "
                           "any held-out cell trains") from None
    if not isinstance(made, dict) or not isinstance(made.get("cells"), list):
        raise HarnessError(f"{path} is not a prediction (no list of cells); restore it, or move it away to "
                           "pre-register a new one before any held-out cell trains")
    return made


# Held-out cells are config rows (plan.cells_of), fitted runs are table rows: the group columns a
# study can predict per group, read from each side.
GROUP_OF = {"arch": lambda cfg: cfg.model.arch, "model": lambda cfg: cfg.model.name,
            "schedule": lambda cfg: cfg.optim.schedule}


def predict_table(table, held: list, n_bootstrap: int, convention: str, group_by: str = "") -> dict:
    """prediction.json for the held-out rows from a law fitted to `table`; with group_by, a law per
    group (e.g. arch: each ladder's own law predicts its own held-out cells), by the code path of
    harness-fit predict= (prediction.by_group)."""
    from harness.fit import prediction
    from harness.fit.analysis import analyse

    n_key = {"nonembed": "N_nonembed", "active": "N_active"}.get(convention, "N")
    cells = [{"cell_key": r.values["cell_key"], "N": r.values[n_key], "D": r.values["D"]} for r in held]
    if not group_by:
        results, fits = analyse(table, n_bootstrap=n_bootstrap)
        out = prediction.make(fits[results["model_choice"]["headline"]], table, cells, convention, fits)
        out["why_form"] = results["model_choice"]["why"]
        return out
    if group_by not in GROUP_OF:
        raise HarnessError(f"group_by={group_by}: a study predicts per group of {', '.join(GROUP_OF)} only")
    for c, r in zip(cells, held):
        c["group"] = str(GROUP_OF[group_by](r.cfg))
    return prediction.by_group(table, cells, group_by, convention, n_bootstrap=n_bootstrap)


@entry_point("harness-study")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        studies = sorted((CONF_DIR / "study").glob("*.yaml"))
        print(HELP + "\n".join(f"  study={p.stem}" for p in studies))
        return 0
    try:
        return _main(argv)
    except HarnessError as e:
        print(f"harness-study: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  Hydra composition errors (a bad override), as harness-plan
        if not is_config_error(e):
            raise
        print(f"harness-study: error: {one_line(e, search_dirs(argv))}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    from harness.cli_fit import fit_main

    config_dir, argv = split_config_dir(argv)
    args = parse(argv)
    study = load(args["study"], config_dir)
    common = [*args["overrides"], f"results_dir={quote(args['results_dir'])}"]
    sweep_dir = Path(args["results_dir"]) / study.sweep
    os.environ["HARNESS_COMMAND"] = shlex.join(["harness-study", *argv])  # recorded with every run
    if block := next((k for k in BLOCKS if getattr(study, k) is not None), None):  # a study of its own kind
        return importlib.import_module(BLOCKS[block]).run_study(study, args, common, config_dir, run_stage, lambda s: (
            fit_stage_keys(s if isinstance(s, Study) else load(s, config_dir), common, config_dir)))
    held = held_out_cells(study, common, config_dir)  # resolved first: a bad holdout stage fails before any training
    path = sweep_dir / study.prediction
    made = existing_prediction(path)
    if made is None:
        refuse_late(held, path)  # held-out cells that ran before any prediction: refused before training
    t0 = time.time()
    run_stage("fit", study.fit, common, config_dir)
    if made is not None:
        print(f"harness-study: keeping {path} (created {made.get('created')}); it is never rewritten")
    else:
        group_by = next((a.partition("=")[2] for a in study.fit_args if a.startswith("group_by=")), "")
        keys = fit_stage_keys(study, common, config_dir)
        made = predict(sweep_dir, held, int(args["n_bootstrap"]), group_by, keys, path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(made, indent=2) + "\n")
        tmp.replace(path)
        from harness.fit.ask import where

        print(f"harness-study: wrote {path} ({made['form']}, fitted on {len(made['fitted_on'])} cells) before "
              f"training the {len(held)} held-out cells:")
        for c in made["cells"]:
            print(f"  {c['cell_key']}: predicted {c['predicted']:.4f} [{c['pi95'][0]:.4f}, {c['pi95'][1]:.4f}] "
                  f"at {where(c)}")
    run_stage("holdout", study.holdout, common, config_dir)
    fit_args = [f"runs={sweep_dir}", f"out={sweep_dir / study.out}", f"prediction={path}", *study.fit_args]
    if args["compare"]:
        fit_args.append(f"compare={args['compare']}")
    if args["n_bootstrap"] != "1000":
        fit_args.append(f"n_bootstrap={args['n_bootstrap']}")
    rc = fit_main(fit_args)
    print(f"harness-study: {study.name} done in {(time.time() - t0) / 60:.1f} min")
    return rc


if __name__ == "__main__":
    sys.exit(main())
