"""Approach 2's noise floor at a study's own design: how wide its 95 % interval on a would be if the
study's law were exactly true and the only error were the seed noise it measured (harness/fit/noisefloor.py).

Two noise models, both from the study's seeded cells:
  measured   each cell gets the seed sd measured at its D (linear in log D between seeded cells)
  long-D     every cell gets the sd of the longest-trained seeded cell: the floor this design would
             have if no cell sat on the early loss plateau
The study's own interval (fit.json) sits beside them.

Usage: python scripts/noise_floor.py study=tiny results_dir=results out=results/noise_floor/tiny.json
       [seeds=DIR]  more seeds of the study's cells, trained into DIR (e.g. results/noise_floor/tiny:
                    harness-train -m sweep=tiny seed=1,2 model=gpt2-50k,gpt2-100k results_dir=results/noise_floor)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness import study
from harness.errors import HarnessError
from harness.fit import forms, noisefloor
from harness.fit.collect import collect
from harness.fit.law import fit_form
from harness.fit.points import fit_table, resolve_convention


def main(argv: list[str]) -> int:
    args = dict(a.partition("=")[::2] for a in argv)
    try:
        out = run(args)
    except (HarnessError, KeyError, FileNotFoundError) as e:
        print(f"noise_floor: error: {e}", file=sys.stderr)
        return 2
    Path(args["out"]).parent.mkdir(parents=True, exist_ok=True)
    Path(args["out"]).write_text(json.dumps(out, indent=2) + "\n")
    m = out["study"]
    print(f"{out['study_name']}: approach 2 a = {m['a']:.3f}, 95 % half-width {m['half_width_95']:.3f} "
          f"({out['n_cells']} fitted cells; {m['interval']})")
    for name, s in out["scenarios"].items():
        e = s["estimators"]
        print(f"  noise only ({name}): a = {s['a_mean']:.3f} ± {s['half_width_95']:.3f} over {s['n_draws']} draws "
              f"({s['n_failed']} lost approach 2); reported ±{e['wild']['median_half_width']:.3f} "
              f"(covers {e['wild']['coverage']:.0%}), resampling cells ±{e['case']['median_half_width']:.3f} "
              f"(covers {e['case']['coverage']:.0%})")
    print(f"wrote {args['out']}")
    return 0


def run(args: dict) -> dict:
    s = study.load(args["study"])
    results_dir = args.get("results_dir", "results")
    sweep_dir = Path(results_dir) / s.sweep
    fit_json = json.loads((sweep_dir / s.out / "fit.json").read_text())  # out "": the sweep directory
    runs, _ = collect(str(sweep_dir))
    keys = study.fit_stage_keys(s, [f"results_dir={results_dir}"])
    runs = study.only_cells(runs, keys)
    convention = resolve_convention(runs, "auto")
    table, _ = fit_table(runs, convention)
    head = fit_json["model_choice"]["headline"]
    form = forms.get(head.split(" ")[0])
    if form.label != head:
        raise HarnessError(f"headline form {head!r} is constrained; this script refits unconstrained forms only")
    X = forms.data(form, table)
    truth_fit = fit_form(form, X, table["loss"].to_numpy(float))
    truth = np.exp(form.log_predict(truth_fit.z[None], X)[0])
    seeded = table
    if args.get("seeds"):  # more seeds of the study's own cells, trained into another directory
        extra, _ = collect(args["seeds"])
        extra = study.only_cells(extra, set(runs["cell_key"]))
        if extra.empty:
            raise HarnessError(f"seeds={args['seeds']}: no run of this study's fitted cells")
        seeded, _ = fit_table(pd.concat([runs, extra], ignore_index=True), convention)
    seeded = seeded[seeded["n_seeds"] > 1]
    if seeded.empty:
        raise HarnessError(f"{sweep_dir}: no cell was trained with several seeds, so there is no measured noise")
    sd_D = noisefloor.sd_of_D(seeded["D"], seeded["loss_std"])
    n_seeds = table["n_seeds"].fillna(1).to_numpy(float)
    D, N, C = (table[k].to_numpy(float) for k in ("D", "N", "C"))
    longest = float(sd_D(seeded["D"].max()))
    sims = {"measured": sd_D(D) / np.sqrt(n_seeds), "long-D": np.full(len(D), longest) / np.sqrt(n_seeds)}
    n_draws = int(args.get("n_draws", 400))
    iso_fit = fit_json["isoflop"]
    lo, hi = iso_fit["ci95"]["a"]
    return {"command": "python scripts/noise_floor.py " + " ".join(argv_of(args)), "study_name": s.name,
            "n_cells": int(len(table)), "truth_form": head, "truth_params": truth_fit.params,
            "seeded_cells": [{"cell_key": k, "D": float(d), "sd": float(v), "n_seeds": int(n)} for k, d, v, n
                             in zip(seeded["cell_key"], seeded["D"], seeded["loss_std"], seeded["n_seeds"])],
            "long_D_sd": longest,
            "study": {"a": iso_fit["a"], "ci95": [lo, hi], "half_width_95": (hi - lo) / 2,
                      "interval": iso_fit.get("interval", "resampling cells")},
            "scenarios": {name: {**noisefloor.simulate(truth, N, C, sd, n_draws=n_draws), "cell_sd_range":
                                 [float(sd.min()), float(sd.max())]} for name, sd in sims.items()}}


def argv_of(args: dict) -> list[str]:
    return [f"{k}={v}" for k, v in args.items()]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
