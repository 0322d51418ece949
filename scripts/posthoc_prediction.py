"""Post-hoc, labelled as such: what per-group laws fitted on a study's fit stage predict for its
held-out cells, scored against what they measured. Like harness-study, it fits the study's fit-stage cells only.

This is not a pre-registered prediction (it is made after the held-out cells ran, and the choice of
grouping came from seeing them), so it never touches the study's prediction.json; it says what the
study would have predicted had `fit_args: [group_by=...]` been set before it ran.

Usage: python scripts/posthoc_prediction.py study=laptop results_dir=results group_by=arch out=FILE.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness import study
from harness.fit import prediction
from harness.fit.collect import collect
from harness.fit.points import fit_table, resolve_convention


def main(argv: list[str]) -> int:
    args = dict(a.partition("=")[::2] for a in argv)
    s = study.load(args["study"])
    sweep_dir = Path(args.get("results_dir", "results")) / s.sweep
    held = study.held_out_cells(s, [f"results_dir={args.get('results_dir', 'results')}"])
    runs, _ = collect(str(sweep_dir))
    convention = resolve_convention(runs, "auto")
    table, _ = fit_table(runs, convention, group_by=args["group_by"])
    fit_keys = study.fit_stage_keys(s, [f"results_dir={args.get('results_dir', 'results')}"])
    fitted = fit_table(study.only_cells(runs, fit_keys), convention, group_by=args["group_by"])[0]
    made = study.predict_table(fitted, held, 1000, convention, args["group_by"])
    scored = prediction.score(made, table)
    out = {"posthoc": True, "note": __doc__.split("\n\n")[1].replace("\n", " "), "command":
           "python scripts/posthoc_prediction.py " + " ".join(argv), "prediction": made, "score": scored}
    Path(args["out"]).parent.mkdir(parents=True, exist_ok=True)
    Path(args["out"]).write_text(json.dumps(out, indent=2) + "\n")
    for c in scored["cells"]:
        print(f"{c['cell_key']}: predicted {c['predicted']:.4f} [{c['pi95'][0]:.4f}, {c['pi95'][1]:.4f}], "
              f"measured {c['measured']:.4f}, {c['rel_error']:+.2%}")
    print(f"mean |error| {scored['mean_abs_rel_error']:.2%}, {scored['n_inside_pi95']}/{len(scored['cells'])} inside; "
          f"forms {made['groups']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
