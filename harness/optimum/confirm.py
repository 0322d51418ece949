"""`harness-study study=optimum`: generate the optimum once, train its confirmation sweep, score it.

A study YAML with an `optimum:` block ({fit: a sweep folder under results_dir, study: whose fit stage
is the law, budget, family}) runs: harness-optimum into <results_dir>/<sweep>/conf (kept, never
rewritten, once written), the confirmation sweep (3 cells, 2 at a time) and the optimum's second
seed, then the verdict (<results_dir>/<sweep>/conf/verdict.json). Rerunning resumes like every study.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from harness.errors import HarnessError

OPTIONS = ("fit", "study", "budget", "family")  # an optimum block's keys


def check(block, path: Path) -> None:
    """A study YAML's optimum block: a mapping of OPTIONS with fit and budget (harness.study.load calls it)."""
    if not isinstance(block, dict) or any(k not in OPTIONS for k in block) or not {"fit", "budget"} <= set(block):
        raise HarnessError(f"{path}: optimum is a mapping of {', '.join(OPTIONS)} (fit and budget required)")


def run_study(study, args: dict, common: list[str], config_dir: str | None, run_stage, keys_of) -> int:
    """`run_stage` is harness.study's (each entry a harness-train -m); `keys_of(study name)` a study's fit
    stage's cell keys (the law's cells: those of the block's `study`, else all)."""
    from harness.optimum import verdict
    from harness.optimum.make import answer_lines, make
    from harness.report.document import write_json

    spec, results_dir = study.optimum, args["results_dir"]
    keys = keys_of(spec["study"]) if spec.get("study") else None
    sweep_dir = Path(results_dir) / study.sweep
    out = sweep_dir / "conf"
    t0 = time.time()
    if (out / "optimum.json").exists():
        optimum = json.loads((out / "optimum.json").read_text())
        print(f"harness-study: keeping {out / 'optimum.json'} (created {optimum['created']}); it is never rewritten")
    else:
        optimum = make(str(Path(results_dir) / spec["fit"]), float(spec["budget"]), str(out),
                       str(spec.get("family", "")), "", keys, f"study {spec.get('study')}'s fit stage", results_dir,
                       study.sweep, config_dir)
        for line in answer_lines(optimum):
            print(f"harness-study: {line}")
        print(f"harness-study: wrote {out} before training its {len(optimum['confirm']['cells'])} cells")
    name = optimum["model"]
    run_stage("confirm", [[f"sweep={name}_confirm", "hydra/launcher=parallel"]], common, str(out))
    run_stage("seed", [[f"sweep={name}_confirm", f"model={name}", "seed=1"]], common, str(out))
    v = verdict.score(optimum, verdict.measured(optimum, results_dir))
    for line in verdict.lines(v):
        print(f"harness-study: {line}")
    write_json(v, out / "verdict.json")  # as harness-optimum confirm= writes it
    print(f"harness-study: {study.name} done in {(time.time() - t0) / 60:.1f} min")
    return 0
