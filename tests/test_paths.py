"""One law whatever the path: the same committed runs, read from their directory, from the runs.csv a fit
wrote, from their wandb offline logs alone and through a third party's column mapping, give the same
fit.json to 1e-9; and `predict=` with `group_by` answers each row with its group's own law.

Real runs: a dense study (results/tiny) and an MoE one (results/arch, three ladders by `arch`)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.cli_fit import fit_main
from harness.fit.groups import group_seed

ROOT = Path(__file__).resolve().parents[1]
# The settings every path shares; a short bootstrap keeps the test tier quick (the draws are seeded).
FAST = ["n_bootstrap=12", "holdout=2"]
# What a fresh clone holds of a run (the rest is .gitignore'd: wandb's latest-run link, its logs, files/, tmp/).
AS_CLONED = shutil.ignore_patterns("latest-run", "*.log", "files", "tmp")
# Where a path is allowed to differ: where the runs were read from and how long the fit took.
NOT_THE_LAW = {"provenance", "created", "asked"}
# A third party's names for every count the harness writes (runs.csv column -> theirs).
THEIRS = {"N_total": "params", "N_nonembed": "params_no_emb", "N_active": "params_active", "D": "tokens",
          "C_6N": "flops", "C_kaplan": "flops_no_emb", "loss": "final_loss"}
MAPPING = {"N_total": "col_N", "N_nonembed": "col_N_nonembed", "N_active": "col_N_active", "D": "col_D",
           "C_6N": "col_C", "C_kaplan": "col_C_kaplan", "loss": "col_loss"}


def _differences(a, b, where="", tol=1e-9) -> list[str]:
    """Every place two JSON trees differ (numbers beyond a relative 1e-9)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}/{k}: only on one side" for k in set(a) ^ set(b) if k not in NOT_THE_LAW]
        for k in sorted(set(a) & set(b) - NOT_THE_LAW):
            out += _differences(a[k], b[k], f"{where}/{k}", tol)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]", tol)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=tol, abs_tol=1e-12)
        return [] if same else [f"{where}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def _runs(study: str, dst: Path, keep=lambda name: True) -> Path:
    """The study's run directories only (no fit, no pre-registered prediction), copied."""
    dst.mkdir(parents=True)
    for d in sorted((ROOT / "results" / study).iterdir()):
        if d.is_dir() and keep(d.name) and any(d.rglob("summary.json")):
            shutil.copytree(d, dst / d.name, ignore=AS_CLONED)
    return dst


def _fit(tmp: Path, name: str, runs, *args) -> dict:
    out = tmp / name
    rc = fit_main([f"runs={runs}", f"out={out}", *FAST, *args])
    assert rc == 0, f"harness-fit on {runs} exited {rc}"
    return json.loads((out / "fit.json").read_text())


def _paths(tmp: Path, study: str, *args) -> dict:
    """fit.json by each path a user can take to the same runs."""
    runs = _runs(study, tmp / "runs")
    fits = {"directory": _fit(tmp, "dir", runs, *args)}
    fits["col_loss=val/loss"] = _fit(tmp, "spelt", runs, *args, "col_loss=val/loss")  # the default, spelt out
    fits["runs.csv"] = _fit(tmp, "csv", tmp / "dir" / "runs.csv", *args)
    theirs = pd.read_csv(tmp / "dir" / "runs.csv").rename(columns=THEIRS).drop(columns=["N", "C"])
    theirs.to_csv(tmp / "theirs.csv", index=False)
    fits["a mapping of every count"] = _fit(tmp, "theirs", tmp / "theirs.csv", *args,
                                            *(f"{MAPPING[k]}={v}" for k, v in THEIRS.items()))
    for summary in runs.rglob("summary.json"):  # the wandb offline logs alone
        summary.unlink()
    for trunk in runs.rglob("trunk.json"):
        trunk.unlink()
    fits["wandb logs"] = _fit(tmp, "wandb", runs, *args)
    fits["wandb logs, mapped"] = _fit(tmp, "wandb_mapped", runs, *args, "col_N=summary.N",
                                      "col_N_nonembed=summary.N_nonembed", "col_N_active=summary.N_active",
                                      "col_D=summary.D", "col_C=summary.C", "col_C_kaplan=summary.C_kaplan",
                                      "col_loss=summary.val/loss")
    return fits


def _same_everywhere(fits: dict) -> None:
    ref = fits["directory"]
    for path, fit in fits.items():
        diff = _differences(ref, fit)
        assert not diff, f"{path} differs from the directory's fit:\n" + "\n".join(diff[:12])


def test_a_dense_study_gives_one_law_by_every_path(tmp_path):
    fits = _paths(tmp_path, "tiny")
    _same_everywhere(fits)
    head = fits["directory"]
    assert head["provenance"]["conventions"]["N"] == "nonembed"  # the harness's runs log N_nonembed
    assert head["isoflop"] and head["model_choice"]["headline"]  # approach 2 is there on every path
    seeds = pd.read_csv(tmp_path / "dir" / "runs.csv")
    assert (seeds["n_seeds"] > 1).any() and seeds.loc[seeds["n_seeds"] > 1, "loss_std"].notna().all()


@pytest.mark.slow  # trains or refits end to end (~30-110 s on 2 cores); CI runs the slow tier
def test_an_moe_study_gives_one_law_and_one_multiplier_by_every_path(tmp_path):
    fits = _paths(tmp_path, "arch", "group_by=arch", "group_ref=gpt2")
    _same_everywhere(fits)
    head = fits["directory"]
    assert head["provenance"]["conventions"]["N"] == "active"
    assert set(head["groups"]["multipliers"]) == {"qwen3", "qwen3_moe"}  # against gpt2, MoE included


def test_predict_with_group_by_is_each_groups_own_law(tmp_path):
    keep = ("gpt2-", "moe-")  # two ladders keep it quick; the MoE one is read at its active count
    runs = _runs("arch", tmp_path / "runs", keep=lambda n: n.startswith(keep))
    rows = pd.DataFrame({"name": ["gpt2-400k", "moe-400k", "gpt2-x", "moe-x"],
                         "N": [4e5, 4e5, 1.5e5, 1e5], "D": [4e6, 4e6, 6e6, 2e6],
                         "arch": ["gpt2", "qwen3_moe", "gpt2", "qwen3_moe"]})
    rows.to_csv(tmp_path / "ask.csv", index=False)
    _fit(tmp_path, "both", runs, "group_by=arch", f"predict={tmp_path / 'ask.csv'}")
    together = json.loads((tmp_path / "both" / "predictions.json").read_text())
    assert {c["group"] for c in together["cells"]} == {"gpt2", "qwen3_moe"}
    for arch, prefix in (("gpt2", "gpt2-"), ("qwen3_moe", "moe-")):
        alone_runs = _runs("arch", tmp_path / f"runs_{arch}", keep=lambda n, p=prefix: n.startswith(p))
        mine = rows[rows["arch"] == arch].drop(columns=["arch"])
        mine.to_csv(tmp_path / f"ask_{arch}.csv", index=False)
        _fit(tmp_path, f"alone_{arch}", alone_runs, f"seed={group_seed(0, arch)}",
             f"predict={tmp_path / f'ask_{arch}.csv'}")
        alone = json.loads((tmp_path / f"alone_{arch}" / "predictions.json").read_text())
        got = {c["cell_key"]: c for c in together["cells"] if c["group"] == arch}
        for c in alone["cells"]:
            g = got[c["cell_key"]]
            assert not _differences({k: c[k] for k in ("N", "D", "C", "predicted", "pi95", "pi95_parts")},
                                    {k: g[k] for k in ("N", "D", "C", "predicted", "pi95", "pi95_parts")})


def test_predict_rows_without_a_known_group_get_one_line_each(tmp_path, capsys):
    runs = _runs("arch", tmp_path / "runs", keep=lambda n: n.startswith(("gpt2-", "moe-")))
    pd.DataFrame({"name": ["ok", "nogroup", "alien"], "N": [4e5, 4e5, 4e5], "D": [4e6, 4e6, 4e6],
                  "arch": ["gpt2", None, "mamba"]}).to_csv(tmp_path / "ask.csv", index=False)
    rc = fit_main([f"runs={runs}", f"out={tmp_path / 'out'}", *FAST, "group_by=arch",
                   f"predict={tmp_path / 'ask.csv'}"])
    err = capsys.readouterr().err
    assert rc == 2  # the good row is answered, the bad ones named
    answered = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [c["cell_key"] for c in answered["cells"]] == ["ok"]
    bad = [line for line in err.splitlines() if "error:" in line]
    assert len(bad) == 2 and any("nogroup" in b for b in bad) and any("mamba" in b for b in bad)
