"""`harness-fit`: fit.json contract, report, figures, and one-line errors with exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli_fit import fit_main
from harness.fit import predict

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
    assert set(co["budgets"][0]["ci95"]) == {"N_opt", "D_opt", "tokens_per_param"}
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
    assert "cannot determine 5 parameters" in capsys.readouterr().err


def test_module_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli_fit", "runs=/nonexistent",
                           f"out={tmp_path}"], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("harness-fit: error:")
    assert "Traceback" not in proc.stderr
