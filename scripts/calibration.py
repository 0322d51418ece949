"""Coverage of the nominal 95 % prediction interval, measured three ways (nothing retrained):

  (a) back-test every committed study's fit-stage cells; at each split the fitter sees only part
                of them (forms fitted, bootstrapped, their own back-tests measuring the form error,
                headline chosen) and predicts the rest: the rollout (the cheapest k compute groups,
                predicting every dearer cell), the largest sizes left out, the extreme fifths of D/N
                left out; binned by the kind of split and the distance outside its fitted design;
  (b) held out  every pre-registered held-out cell the project has committed (tiny 2, laptop 4, arch 3,
                laptop blind check 2), its interval re-made from the same fitted cells with each
                study's current settings (a law per ladder where the study says group_by=arch);
  (c) simulated laws outside the candidate forms (harness/fit/coverage.py) at the designs of the
                committed studies, predicted outside the design along C (+1 dex), N (2x the largest
                N at the fitted compute) and D/N (3x beyond its range at the fitted compute).

Usage: python scripts/calibration.py [results_dir=results] [out=results/calibration] [draws=50]
Writes OUT/calibration.json and OUT/table.md (the README's coverage table).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness import study
from harness.fit import coverage, forms, prediction
from harness.fit.analysis import fit_forms, form_section, model_choice
from harness.fit.backtest import axis_masks, compute_groups, noise_sd
from harness.fit.collect import collect
from harness.fit.extrapolation import Design
from harness.fit.law import interval_parts
from harness.fit.points import fit_table, resolve_convention

BINS = ((0.0, 0.5), (0.5, 1.0), (1.0, np.inf))
# (study, ladder column value or None): the fit-stage cells each committed law is fitted on
DESIGNS = (("tiny", None), ("laptop", "gpt2"), ("laptop", "llama"))
N_BOOT = 200  # bootstrap resamples per fit (fit.json uses 1000; the coverage changes by sampling noise only)


def fit_stage(results_dir: str, name: str, ladder: str | None, group_by: str = "") -> pd.DataFrame:
    s = study.load(name)
    common = [f"results_dir={results_dir}"]
    runs, _ = collect(str(Path(results_dir) / s.sweep))
    runs = study.only_cells(runs, study.fit_stage_keys(s, common))
    table = fit_table(runs, resolve_convention(runs, "auto"), group_by=group_by or None)[0]
    return table[table["arch"] == ladder].reset_index(drop=True) if ladder else table


def rollout_coverage(table: pd.DataFrame, seed=0) -> list[dict]:
    """(a): what the fitter would have said at every back-test split, against the cells it left out."""
    groups = compute_groups(table["C"].to_numpy(float))
    splits = [("C", k, groups < k) for k in range(2, groups.max() + 1)]
    splits += axis_masks(table["N"].to_numpy(float), table["D"].to_numpy(float))
    rows = []
    for axis, k, mask in splits:
        train = table[mask].reset_index(drop=True)
        test = table[~mask].reset_index(drop=True)
        if len(train) <= 6 or test.empty:
            continue
        fits, rollouts, _ = fit_forms(train, ("chinchilla", "kaplan"), n_bootstrap=N_BOOT, seed=seed)
        head = model_choice({lab: form_section(f) for lab, f in fits.items()}, rollouts, None)["headline"]
        fit = fits[head]
        iv = interval_parts(fit, forms.data(fit.form, test), seed=seed)
        c_cut = train["C"].max()
        where = Design.of(train["N"], train["D"]).describe(test["N"], test["D"])
        for j in range(len(test)):
            m = float(test["loss"][j])
            rows.append({"axis": axis, "k": k, "form": head, "projection_dex": float(np.log10(test["C"][j] / c_cut)),
                         **where[j],
                         "inside": bool(iv["lo"][j] <= m <= iv["hi"][j]),
                         "rel_error": float(iv["point"][j] / m - 1),
                         "halfwidth": float(np.log(iv["hi"][j] / iv["lo"][j]) / 2),
                         "kappa": fit.form_error.per_dex if fit.form_error is not None else None})
    return rows


def held_out(results_dir: str) -> list[dict]:
    """(b): each committed study's pre-registered cells, re-predicted by this code."""
    out = []
    for name in ("tiny", "laptop", "laptop_check", "arch"):
        s = study.load(name)
        common = [f"results_dir={results_dir}"]
        group_by = next((a.partition("=")[2] for a in s.fit_args if a.startswith("group_by=")), "")
        sweep = Path(results_dir) / s.sweep
        runs, _ = collect(str(sweep))
        convention = resolve_convention(runs, "auto")
        table = fit_table(runs, convention, group_by=group_by or None)[0]
        fitted = fit_table(study.only_cells(runs, study.fit_stage_keys(s, common)), convention,
                           group_by=group_by or None)[0]
        held = study.held_out_cells(s, common)
        made = study.predict_table(fitted, held, 1000, convention, group_by)
        was = json.loads((sweep / s.prediction).read_text())
        before = {c["cell_key"]: c for c in was["cells"]}
        for c in prediction.score(made, table)["cells"]:
            old = before[c["cell_key"]]
            out.append({"study": name, **c, "form": next(x.get("form", made["form"]) for x in made["cells"]
                                                         if x["cell_key"] == c["cell_key"]),
                        "committed_predicted": old["predicted"], "committed_pi95": old["pi95"],
                        "committed_inside": bool(old["pi95"][0] <= c["measured"] <= old["pi95"][1])})
    return out


def simulated(results_dir: str, draws: int) -> list[dict]:
    """(c): each truth at each design, about the Chinchilla law fitted to that design's cells."""
    out = []
    for name, ladder in DESIGNS:
        table = fit_stage(results_dir, name, ladder, "arch" if ladder else "")
        fits, _, _ = fit_forms(table, ("chinchilla",), n_bootstrap=0)
        base = fits["chinchilla"]
        for kind in coverage.TRUTHS:
            for axis in coverage.AXES:
                res = coverage.coverage(kind, base.params, table["N"], table["D"], noise_sd(base), n_draws=draws,
                                        axis=axis)
                out.append({"design": name + (f" ({ladder})" if ladder else ""), **res})
                print(f"  (c) {out[-1]['design']}, {kind}, along {axis}: coverage {res['coverage']:.0%} of "
                      f"{res['n_cells']}, half-width {res['median_halfwidth']:.2%} vs |error| "
                      f"{res['median_abs_error']:.2%}", flush=True)
    return out


def table_md(a: list[dict], b: list[dict], c: list[dict]) -> str:
    lines = ["| check | cells | inside the 95 % interval | median half-width | median \\|error\\| |",
             "|---|---|---|---|---|"]
    for axis, what in (("C", "rollout (dearer cells)"), ("N", "largest sizes left out"),
                       ("D/N", "extreme D/N left out")):
        for lo, hi in BINS:
            rows = [r for r in a if r.get("axis", "C") == axis and lo <= r["distance_dex"] < hi]
            if rows:
                share = np.mean([r["inside"] for r in rows])
                lines.append(f"| (a) {what}, {lo:g}–{hi:g} dex outside | {len(rows)} | {share:.0%} | "
                             f"{np.median([r['halfwidth'] for r in rows]):.2%} | "
                             f"{np.median([abs(np.log1p(r['rel_error'])) for r in rows]):.2%} |")
    inside = sum(r["inside_pi95"] for r in b)
    lines.append(f"| (b) pre-registered held-out cells | {len(b)} | {inside}/{len(b)} "
                 f"(committed intervals: {sum(r['committed_inside'] for r in b)}/{len(b)}) | "
                 f"{np.median([np.log(r['pi95'][1] / r['pi95'][0]) / 2 for r in b]):.2%} | "
                 f"{np.median([abs(np.log1p(r['rel_error'])) for r in b]):.2%} |")
    for r in c:
        where = {"C": "+1 dex in C", "N": "2x the largest N", "D/N": "3x beyond D/N"}[r.get("axis", "C")]
        lines.append(f"| (c) simulated {r['truth'].replace('_', ' ')}, {r['design']}, {where} | {r['n_cells']} | "
                     f"{r['coverage']:.0%} | {r['median_halfwidth']:.2%} | {r['median_abs_error']:.2%} |")
    lines += ["", "| held-out cell | study | form | predicted | 95 % interval | measured | error "
              "| committed interval |",
              "|---|---|---|---|---|---|---|---|"]
    for r in b:
        lines.append(f"| {r['cell_key']} | {r['study']} | {r['form']} | {r['predicted']:.4f} | "
                     f"[{r['pi95'][0]:.4f}, {r['pi95'][1]:.4f}] | {r['measured']:.4f} | {r['rel_error']:+.2%} | "
                     f"[{r['committed_pi95'][0]:.4f}, {r['committed_pi95'][1]:.4f}] |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    args = dict(a.partition("=")[::2] for a in argv)
    results_dir, out = args.get("results_dir", "results"), Path(args.get("out", "results/calibration"))
    t0 = time.time()
    a = []
    for name, ladder in DESIGNS:
        rows = rollout_coverage(fit_stage(results_dir, name, ladder, "arch" if ladder else ""))
        a += [{"design": name + (f" ({ladder})" if ladder else ""), **r} for r in rows]
    print(f"  (a) rollout: {sum(r['inside'] for r in a)}/{len(a)} inside", flush=True)
    b = held_out(results_dir)
    print(f"  (b) held out: {sum(r['inside_pi95'] for r in b)}/{len(b)} inside", flush=True)
    c = simulated(results_dir, int(args.get("draws", 50)))
    out.mkdir(parents=True, exist_ok=True)
    command = "python scripts/calibration.py " + " ".join(argv)
    (out / "calibration.json").write_text(json.dumps({"command": command.strip(), "rollout": a, "held_out": b,
                                                      "simulated": c, "seconds": time.time() - t0}, indent=2) + "\n")
    (out / "table.md").write_text(f"Made by `{command.strip()}`.\n\n" + table_md(a, b, c))
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
