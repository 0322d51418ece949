"""`harness-fit`: fit.json contract, report, figures, and one-line errors with exit status 2."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli_fit import fit_main
from harness.errors import HarnessError
from harness.fit.collect import collect
from harness.fit.law import predict
from harness.fit.points import fit_table
from harness.store import records

LAW = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)
ROOT = Path(__file__).resolve().parents[1]


def write_csv(path, N, D, noise=0.003, seed=0):
    rng = np.random.default_rng(seed)
    L = predict(LAW, N, D) * np.exp(noise * rng.standard_normal(len(N)))
    lines = ["N,D,loss"] + [f"{n:.17g},{d:.17g},{loss:.17g}" for n, d, loss in zip(N, D, L)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def isoflop_csv(tmp_path):
    rows = []
    for C in (1e18, 1e19, 1e20, 1e21):
        n_opt = 0.1 * (C / 6) ** 0.5
        rows += [(N, C / (6 * N)) for N in n_opt * np.logspace(-0.8, 0.8, 7)]
    N, D = (np.array(c) for c in zip(*rows))
    return write_csv(tmp_path / "runs.csv", N, D)


def test_fit_json_contract_and_report(isoflop_csv, tmp_path, capsys):
    out = tmp_path / "out"
    rc = fit_main([f"runs={isoflop_csv}", f"out={out}", "n_bootstrap=50", "holdout=3",
                   "budgets=[1e22,1e23]"])
    assert rc == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["n_points"] == 28
    p = fit["parametric"]
    for k in ("E", "A", "B", "alpha", "beta"):
        assert k in p and k in p["stderr"] and len(p["ci95"][k]) == 2
    assert p["convergence"]["converged"] and p["objective"] > 0
    assert p["alpha"] == pytest.approx(LAW["alpha"], abs=0.05)
    iso = fit["isoflop"]
    assert len(iso["budgets"]) == 4 and {"C", "N_opt", "D_opt", "loss_opt"} <= set(
        iso["budgets"][0])
    assert iso["a"] == pytest.approx(LAW["beta"] / (LAW["alpha"] + LAW["beta"]), abs=0.05)
    co = fit["compute_optimal"]
    assert [b["C"] for b in co["budgets"]] == [1e22, 1e23]
    assert set(co["budgets"][0]["ci95"]) == {"N_opt", "D_opt", "tokens_per_param", "loss_opt"}
    assert fit["backtest"]["n_holdout"] == 3 and len(fit["backtest"]["points"]) == 3
    prov = fit["provenance"]
    assert len(prov["input_runs"]) == 28 and prov["conventions"]["N"] == "total"
    report = (out / "report.md").read_text()
    assert prov["command"] in report and "## Back-test" in report
    for png in ("loss_vs_N", "loss_vs_D", "isoflop", "frontier", "residuals"):
        assert (out / f"{png}.png").stat().st_size > 1000


def test_unidentifiable_design_warns_everywhere(tmp_path, capsys):
    N = np.logspace(6, 9, 10)
    csv = write_csv(tmp_path / "fixed.csv", N, 20 * N)
    rc = fit_main([f"runs={csv}", f"out={tmp_path / 'o'}", "n_bootstrap=10"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "not separately identifiable" in err
    fit = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert fit["parametric"]["identifiable"] is False and fit["compute_optimal"] is None
    assert "not separately identifiable" in (tmp_path / "o" / "report.md").read_text()


@pytest.mark.parametrize("args, match", [
    (["out=/tmp/x"], "missing required option"),
    (["runs=/nonexistent.csv", "out=/tmp/x"], "no such directory or file"),
    (["runs=x", "out=y", "n_bootstrap=lots"], "n_bootstrap"),
    (["runs=x", "out=y", "no_such_option=1"], "no_such_option"),
    (["runs"], "key=value"),
    (["runs=x", "out=y", "prediction=/no/such/prediction.json"], "prediction=/no/such/prediction.json: no such file"),
])
def test_errors_are_one_line_exit_2(args, match, capsys):
    assert fit_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness-fit: error:") and "\n" not in err and match in err


def test_missing_column_and_too_few_points(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("N,tokens,loss\n1,2,3\n")
    assert fit_main([f"runs={tmp_path / 'a.csv'}", f"out={tmp_path}"]) == 2
    assert "lacks column" in capsys.readouterr().err
    N = np.logspace(6, 8, 4)
    csv = write_csv(tmp_path / "b.csv", N, N * 30)
    assert fit_main([f"runs={csv}", f"out={tmp_path}"]) == 2
    assert "cannot determine its 5 parameters" in capsys.readouterr().err


def test_module_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli_fit", "runs=/nonexistent",
                           f"out={tmp_path}"], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("harness-fit: error:")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("nested", [False, True])
def test_out_naming_a_file_fails_before_collecting(tmp_path, capsys, monkeypatch, nested):
    import harness.fit.collect

    def no_collect(*args, **kwargs):
        raise AssertionError("collected runs although out= cannot be written")

    monkeypatch.setattr(harness.fit.collect, "collect", no_collect)
    (tmp_path / "taken").write_text("not a directory")
    out = tmp_path / "taken" / "sub" if nested else tmp_path / "taken"
    assert fit_main([f"runs={tmp_path}", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"harness-fit: error: out={out}: {tmp_path / 'taken'} is a file, not a directory"


@pytest.mark.parametrize("text", ["", "N,D,loss\n"])
def test_empty_or_header_only_csv_is_one_line_naming_it(tmp_path, capsys, text):
    csv = tmp_path / "runs.csv"
    csv.write_text(text)
    assert fit_main([f"runs={csv}", f"out={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness-fit: error:") and "\n" not in err and str(csv) in err


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option_with_default_and_comment(flag, capsys):
    from dataclasses import MISSING, fields

    from harness.cli_fit import FitConfig, option_help

    helps = option_help()
    assert fit_main(["runs=x", flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: harness-fit")
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    for f in fields(FitConfig):
        assert helps.get(f.name), f"FitConfig.{f.name} has no one-line comment for --help"
        default = f.default_factory() if f.default is MISSING else f.default
        shown = f"{f.name} (required)" if default == "???" else f"{f.name}={default}"
        assert shown in rows[shown.split()[0]] and helps[f.name] in rows[shown.split()[0]]


def test_auto_convention_follows_the_runs(tmp_path):
    from harness.fit.collect import collect
    from harness.fit.points import resolve_convention

    own, _ = collect(str(ROOT / "results" / "tiny"))  # the harness's runs log N_nonembed
    assert resolve_convention(own, "auto") == "nonembed"
    plain, _ = collect(str(write_csv(tmp_path / "plain.csv", np.logspace(6, 8, 3), np.full(3, 1e9))))
    assert resolve_convention(plain, "auto") == "total"
    for explicit in ("total", "nonembed"):
        assert resolve_convention(own, explicit) == explicit


@pytest.mark.parametrize("convention, resolved", [("total", "total"), ("auto", "nonembed")])
def test_fit_of_own_runs_raises_no_runtime_warning(tmp_path, convention, resolved):
    import warnings

    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy overflow/invalid become errors
        rc = fit_main([f"runs={ROOT / 'results' / 'tiny'}", f"out={out}", "n_bootstrap=20",
                       f"n_convention={convention}"])
    assert rc == 0
    prov = json.loads((out / "fit.json").read_text())["provenance"]
    assert prov["conventions"]["N"] == resolved and prov["settings"]["n_convention"] == convention
    assert f"N convention: {resolved}" in (out / "report.md").read_text()


def _copy_tiny(dst):
    """The committed tiny study (real runs, wandb logs and fit.json), copied so it can be changed."""
    shutil.copytree(ROOT / "results" / "tiny", dst, ignore=shutil.ignore_patterns("*.png", "*.md"))
    n_cells = len(fit_table(collect(str(dst))[0], n_convention="nonembed")[0])
    single = [(d, rec) for d, rec in records.iter_records(dst)  # a cell trained with one seed only
              if rec["summary"]["seed"] == 0 and "gpt2-50k" not in rec["cell_id"]]
    return n_cells, single


def test_every_excluded_run_is_named_with_its_reason_on_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    n_cells, single = _copy_tiny(runs)
    crashed, record = single[0]
    (crashed / "summary.json").write_text(json.dumps({**record, "status": "running"}))  # killed mid-run
    stray = runs / "other" / "run-abc.wandb"  # a log nobody finished, with no record beside it
    stray.parent.mkdir()
    log = next(single[1][0].glob("wandb/*/run-*.wandb"))
    stray.write_bytes(log.read_bytes()[:5000])
    assert fit_main([f"runs={runs}", f"out={tmp_path / 'out'}", "n_bootstrap=0"]) == 0
    err = capsys.readouterr().err.splitlines()
    excluded = [ln for ln in err if ln.startswith("harness-fit: excluded ")]
    assert len(excluded) == 2
    assert any(record["run_id"] in ln and "status running" in ln for ln in excluded)
    assert any("abc" in ln and "no exit record" in ln for ln in excluded)
    assert json.loads((tmp_path / "out" / "fit.json").read_text())["n_points"] == n_cells - 1


def test_group_ref_needs_group_by():
    from harness.cli_fit import parse_args

    with pytest.raises(HarnessError, match="group_ref=gpt2 needs group_by="):
        parse_args(["runs=x", "out=y", "group_ref=gpt2"])
    assert parse_args(["runs=x", "out=y", "group_ref=gpt2", "group_by=arch"]).group_ref == "gpt2"


def test_the_printed_command_parses_back_to_the_same_options():
    import shlex

    from harness.cli_fit import command_line, parse_args

    cfg = parse_args(["runs=a b.csv", "out=o", "E=1.9", "tie=true", "forms=[chinchilla,kaplan]", "col_N=Model Size",
                      "budgets=[1e20,1e21]", "group_by=arch"])
    again = parse_args(shlex.split(command_line(cfg))[1:])
    assert again == cfg and again.E == 1.9 and again.forms == ["chinchilla", "kaplan"]
    assert parse_args(shlex.split(command_line(parse_args(["runs=x", "out=y"])))[1:]).E is None


@pytest.mark.slow  # end to end, 15-35 s on 2 cores; CI runs the slow tier
def test_compare_reports_per_cell_differences_against_a_reference_study(tmp_path, capsys):
    ref = tmp_path / "ref"
    n_cells, single = _copy_tiny(ref)
    cell, record = single[0]
    record["summary"]["val/loss"] += 0.001  # the reference run of one cell came out 0.001 higher
    (cell / "summary.json").write_text(json.dumps(record))
    shutil.rmtree(cell / "wandb")
    out = tmp_path / "out"
    assert fit_main([f"runs={ROOT / 'results' / 'tiny'}", f"out={out}", f"compare={ref}", "n_bootstrap=0"]) == 0
    c = json.loads((out / "fit.json").read_text())["comparison"]
    assert c["n_matched"] == n_cells and c["n_identical"] == n_cells - 1
    assert c["max_abs_diff"] == pytest.approx(0.001)
    assert c["cells"][0]["cell"] == record["cell_id"] and c["cells"][0]["diff"] == pytest.approx(-0.001)
    assert c["laws"]["new"]["form"] == c["laws"]["reference"]["form"]
    assert "Reproduction check against" in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert f"{n_cells} cells in both" in printed
    assert c["verdict"]["reproduced"] and printed.strip().splitlines()[-1].startswith("harness-fit: reproduced")
    record["summary"]["val/loss"] += 0.05  # now one cell is far outside the stated tolerance: exit 1, named
    (cell / "summary.json").write_text(json.dumps(record))
    assert fit_main([f"runs={ROOT / 'results' / 'tiny'}", f"out={out}", f"compare={ref}", "n_bootstrap=0"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("harness-fit: NOT reproduced") and record["cell_id"] in last
    assert fit_main([f"runs={ROOT / 'results' / 'tiny'}", f"out={out}", f"compare={tmp_path / 'nope'}"]) == 2
