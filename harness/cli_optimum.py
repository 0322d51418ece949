"""`harness-optimum fit=PATH budget=C out=DIR [family=NAME]`: what to train at budget C, ready to launch.

A thin entry point over harness/optimum/: bad input is one line on stderr and exit status 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.errors import HarnessError, entry_point

USAGE = ("harness-optimum fit=PATH budget=C out=DIR [family=NAME] [name=NAME] [study=NAME] [results_dir=DIR] "
         "[sweep=NAME] [--config-dir DIR]\n       harness-optimum confirm=DIR [results_dir=DIR]")
HELP = f"""usage: {USAGE}

From a fitted law to a model you can launch, and a check of it:
  fit=PATH      a study directory or its fit.json (its harness-fit settings are used again)
  budget=C      FLOPs, in the fit's convention (C = 6 N D with the fit's N: non-embedding for dense
                studies, active non-embedding for MoE)
  out=DIR       a Hydra config folder to write: model/<name>.yaml (the optimum), model/<name>-small.yaml
                and model/<name>-large.yaml (N*/s and s N*), sweep/<name>_confirm.yaml, optimum.json
                and prediction.json (every confirmation cell's loss, predicted before any of them trains)
  family=NAME   the shape rule (conf/family/NAME.yaml or your --config-dir's family/): gpt2, llama,
                qwen3, moe; default: the study's own architecture's (with group_by=arch, required)
  name=NAME     the optimum's model name (default <family>-opt-<C>)
  study=NAME    fit only that study's fit-stage cells (the law its prediction.json was made from)
  results_dir   where the confirmation runs go (default results), as harness-train's results_dir
  sweep=NAME    the confirmation sweep's folder name under results_dir (default <name>_confirm)
  confirm=DIR   score a trained confirmation sweep against DIR's pre-registered optimum

It prints one line to act on and the commands that train the optimum and confirm it.
"""
OPTIONS = ("fit", "budget", "out", "family", "name", "study", "results_dir", "sweep", "confirm")


def parse(argv: list[str]) -> dict:
    args = {}
    for a in argv:
        key, eq, value = a.partition("=")
        if not eq or key not in OPTIONS:
            raise HarnessError(f"unknown argument {a!r}; takes {', '.join(k + '=' for k in OPTIONS)}")
        args[key] = value
    if "confirm" in args:
        return args
    missing = [k for k in ("fit", "budget", "out") if not args.get(k)]
    if missing:
        raise HarnessError(f"missing required option(s): {', '.join(k + '=' for k in missing)}")
    try:
        args["budget"] = float(args["budget"])
    except ValueError:
        raise HarnessError(f"budget={args['budget']} is not a number of FLOPs") from None
    return args


def _confirm(args: dict) -> int:
    from harness.optimum import verdict
    from harness.report.document import write_json

    out = Path(args["confirm"])
    optimum, _ = verdict.read(out)
    v = verdict.score(optimum, verdict.measured(optimum, args.get("results_dir")))
    for line in verdict.lines(v):
        print(f"harness-optimum: {line}")
    if not v["not_yet_run"]:
        write_json(v, out / "verdict.json")
    return 0


def _stage_keys(name: str, fit: str, config_dir: str | None) -> list[str]:
    """cell_key of every run study NAME's fit stage trains, in the results_dir that holds fit=PATH."""
    from harness import study

    p = Path(fit)
    results_dir = p.parent.parent if p.is_file() else p.parent
    return study.fit_stage_keys(study.load(name, config_dir), [f"results_dir={results_dir}"], config_dir)


@entry_point("harness-optimum")
def main(argv: list[str] | None = None) -> int:
    from harness.config import split_config_dir

    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(HELP)
        return 0
    try:
        config_dir, argv = split_config_dir(argv)
        args = parse(argv)
        if "confirm" in args:
            return _confirm(args)
        from harness.optimum.make import make

        keys = _stage_keys(args["study"], args["fit"], config_dir) if args.get("study") else None
        o = make(args["fit"], args["budget"], args["out"], args.get("family", ""), args.get("name", ""), keys,
                 f"study {args.get('study')}'s fit stage", args.get("results_dir", "results"), args.get("sweep", ""),
                 config_dir)
    except HarnessError as e:
        print(f"harness-optimum: error: {e}", file=sys.stderr)
        return 2
    from harness.optimum.make import answer_lines

    for line in answer_lines(o):
        print(f"harness-optimum: {line}")
    print(f"harness-optimum: wrote {args['out']} (optimum.json, prediction.json, model/, sweep/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
