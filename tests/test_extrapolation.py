"""Prediction intervals beyond the fitted compute: the form part, its calibration, the trust
horizon, and asking the law about new models (harness-fit predict=)."""

import json

import numpy as np
import pandas as pd
import pytest

from harness.fit import coverage, forms
from harness.fit.analysis import analyse, fit_forms
from harness.fit.extrapolation import estimate_kappa, first_passing
from harness.fit.law import Fit, interval_parts, predict
from tests.test_fit_cli import LAW, write_csv

# the tiny study's IsoFLOP design, in miniature: 4 budgets x 6 sizes about the optimum
BASE = dict(E=3.94, A=30.5, B=68496.0, alpha=0.414, beta=0.876)


def design(budgets=(7.5e10, 1.5e11, 3e11, 6e11), sizes=6):
    rows = []
    for C in budgets:
        n_opt = 0.05 * C ** 0.5
        rows += [(n, C / (6 * n)) for n in n_opt * np.logspace(-0.5, 0.5, sizes)]
    return (np.array(c) for c in zip(*rows))


def test_kappa_recovers_a_known_growth_of_error_with_distance():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.1, 1.5, 400)
    r = rng.normal(0, np.sqrt(0.004 ** 2 + (0.02 * d) ** 2))
    assert estimate_kappa(r, np.full(400, 0.004), d) == pytest.approx(0.02, rel=0.15)
    # errors at the noise level say the form is right: no form part
    assert estimate_kappa(rng.normal(0, 0.004, 400), np.full(400, 0.004), d) < 0.002


@pytest.mark.slow  # end to end, 15-35 s on 2 cores; CI runs the slow tier
def test_a_misspecified_law_is_covered_at_90_percent_over_50_draws():
    """A truth no candidate form can express (the N exponent breaks inside or beyond the data):
    the interval at +1 dex must hold it in >= 90 % of cells without being useless."""
    N, D = design()
    res = coverage.coverage("broken_power_law", BASE, N, D, noise=0.005, n_draws=50, n_bootstrap=40)
    assert res["coverage"] >= 0.90, res
    assert res["width_to_error"] < 8, res  # an interval that covers by being useless does not count


def test_on_a_law_in_the_candidate_set_the_interval_stays_near_todays_at_half_a_dex():
    N, D = design()
    rng = np.random.default_rng(1)

    L = predict(BASE, N, D) * np.exp(rng.normal(0, 0.005, len(N)))
    table = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": L})
    fits, _, _ = fit_forms(table, ("chinchilla",), n_bootstrap=200)
    fit = fits["chinchilla"]
    assert fit.form_error is not None
    C = 6 * np.max(N * D) * 10 ** 0.5
    n = np.sort(N)[-3:]
    Xn = forms.data(fit.form, pd.DataFrame({"N": n, "D": C / (6 * n)}))
    new = interval_parts(fit, Xn)
    today = Fit(**{**fit.__dict__, "form_error": None})  # parameter and noise only, as before
    old = interval_parts(today, Xn)
    ratio = np.log(new["hi"] / new["lo"]) / np.log(old["hi"] / old["lo"])
    assert np.all(ratio <= 1.5), ratio
    assert np.allclose(new["point"], old["point"])  # the point does not move



def test_interval_parts_are_reported_and_the_form_part_grows_with_distance():
    N, D = design()
    L = predict(BASE, N, D) * np.exp(np.random.default_rng(2).normal(0, 0.005, len(N)))
    table = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": L})
    fits, _, _ = fit_forms(table, ("kaplan",), n_bootstrap=100)  # kaplan has no floor: it bends away
    fit = fits["kaplan"]
    c_max = np.max(6 * N * D)
    n = np.full(4, np.median(N))
    Xn = forms.data(fit.form, pd.DataFrame({"N": n, "D": c_max * 10.0 ** np.arange(4) / (6 * n)}))
    parts = interval_parts(fit, Xn)["parts"]
    assert set(parts) == {"parameter", "noise", "form"}
    assert parts["form"][0] == 0 and np.all(np.diff(parts["form"]) >= 0)
    assert fit.form_error.per_dex > 0


def test_trust_horizon_and_first_passing():
    assert first_passing(np.array([0, 1, 2.0]), np.array([0.0, 0.01, 0.03]), 0.02) == pytest.approx(1.5)
    assert first_passing(np.array([0, 1.0]), np.array([0.0, 0.01]), 0.05) is None
    N, D = design()
    L = predict(BASE, N, D) * np.exp(np.random.default_rng(3).normal(0, 0.005, len(N)))
    results, _ = analyse(pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": L}), n_bootstrap=100)
    hz = results["horizon"]
    loss = [hz["loss"][k] for k in ("1%", "2%", "5%")]
    known = [x for x in loss if x is not None]
    assert known == sorted(known)  # a wider threshold is passed no earlier
    row = results["compute_optimal"]["budgets"][-1]
    assert set(row["parts"]["N_opt"]) == {"parameter", "form"} and row["projection_dex"] == pytest.approx(2)
    lo, hi = row["ci95"]["N_opt"]
    plo, phi = row["ci95_parameter"]["N_opt"]
    assert lo <= plo * 1.02 and hi >= phi * 0.98  # the full interval holds the bootstrap one


def test_harness_fit_predict_answers_each_row_and_names_each_bad_one(tmp_path, capsys):
    from harness.cli_fit import fit_main

    rows = []
    for C in (1e18, 1e19, 1e20, 1e21):
        n_opt = 0.1 * (C / 6) ** 0.5
        rows += [(n, C / (6 * n)) for n in n_opt * np.logspace(-0.8, 0.8, 7)]
    N, D = (np.array(c) for c in zip(*rows))
    runs = write_csv(tmp_path / "runs.csv", N, D)
    ask = tmp_path / "ask.csv"
    ask.write_text("name,N,D\nnext,3e9,6e10\nfar,3e10,6e11\nbroken,-1,1e9\n,2e9,\n")
    rc = fit_main([f"runs={runs}", f"out={tmp_path / 'o'}", f"predict={ask}", "n_bootstrap=100"])
    out, err = capsys.readouterr()
    assert rc == 2  # the good rows are answered, the bad ones make the exit non-zero
    made = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert [c["cell_key"] for c in made["cells"]] == ["next", "far"]
    for c in made["cells"]:
        truth = predict(LAW, c["N"], c["D"])
        assert c["pi95"][0] < c["predicted"] < c["pi95"][1]
        assert abs(c["predicted"] / truth - 1) < 0.02
        assert set(c["pi95_parts"]) == {"parameter", "noise", "form"}
    assert made["cells"][1]["projection_dex"] > made["cells"][0]["projection_dex"]
    assert sum(line.startswith("harness-fit: next:") or line.startswith("harness-fit: far:")
               for line in out.splitlines()) == 2
    bad = [line for line in err.splitlines() if "must be a positive number" in line]
    assert len(bad) == 2 and "broken" in bad[0] and "row 4" in bad[1]
    assert "Traceback" not in err


def test_harness_fit_predict_without_a_column_is_one_line(tmp_path, capsys):
    from harness.cli_fit import fit_main

    ask = tmp_path / "ask.csv"
    ask.write_text("name,N\na,1e9\n")
    rc = fit_main([f"runs={tmp_path}", f"out={tmp_path / 'o'}", f"predict={ask}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "missing column(s) D" in err[0]


def test_distance_is_measured_in_n_and_d_not_only_in_c():
    from harness.fit.extrapolation import Design

    N, D = design()
    box = Design.of(N, D)
    c_max = np.max(6 * N * D)
    inside = box.distance(N, D)
    assert np.all(inside == 0)  # every fitted point lies inside its own design
    big = box.parts([2 * N.max()], [c_max / (12 * N.max())])  # a 2x bigger model at the fitted compute
    assert big["C"][0] == pytest.approx(0, abs=1e-12) and big["N"][0] == pytest.approx(np.log10(2))
    assert big["D/N"][0] > 0  # fewer tokens per parameter than any fitted run: recorded
    assert box.distance([2 * N.max()], [c_max / (12 * N.max())])[0] == pytest.approx(np.log10(2))
    i = np.argmax(N * D)  # the fitted shape at +1 dex: N and D each x10^0.5, as the compute-only measure
    assert box.distance([N[i] * 10 ** 0.5], [D[i] * 10 ** 0.5])[0] == pytest.approx(1.0)


def test_a_bigger_model_at_the_fitted_compute_gets_a_form_term_and_an_inside_point_none():
    N, D = design()
    rng = np.random.default_rng(3)
    L = coverage.truth("broken_power_law", BASE, N, D, rng)(N, D) * np.exp(rng.normal(0, 0.005, len(N)))
    fits, _, _ = fit_forms(pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": L}), ("chinchilla",),
                           n_bootstrap=40)
    fit = fits["chinchilla"]
    assert fit.form_error is not None and set(fit.form_error.by_axis) == {"C", "N", "D/N"}  # every axis back-tested
    n_out, d_out = coverage.held_out(N, D, axis="N")
    parts = interval_parts(fit, forms.data(fit.form, pd.DataFrame({"N": n_out, "D": d_out})))["parts"]
    assert np.all(parts["form"] > 0) or fit.form_error.per_dex == 0
    inner = interval_parts(fit, forms.data(fit.form, pd.DataFrame({"N": N[:3], "D": D[:3]})))["parts"]
    assert np.all(inner["form"] == 0)  # inside the fitted design: today's interval, no form term


@pytest.mark.slow
@pytest.mark.parametrize("axis", ["N", "D/N"])
def test_a_misspecified_law_is_covered_outside_the_design_along_n_and_d_over_n(axis):
    """The truth's N exponent breaks inside or beyond the data; queries leave the design at the
    fitted compute: 2x the largest N, or 3x beyond the fitted D/N range. >= 90 % covered, not uselessly."""
    N, D = design()
    res = coverage.coverage("broken_power_law", BASE, N, D, noise=0.005, n_draws=50, n_bootstrap=40, axis=axis)
    assert res["coverage"] >= 0.90, res
    assert res["width_to_error"] < 8, res


def test_an_interval_covers_the_forms_that_disagree_with_it():
    from harness.fit.frontier import cover_forms

    row = {"pi95": [4.0, 4.1]}
    others = {"forms": {"kaplan": {"predicted": 4.3, "pi95": [4.25, 4.35]}, "chinchilla": {"predicted": 4.05,
                                                                                        "pi95": [4.0, 4.1]}},
              "disagree": ["kaplan"]}
    out = cover_forms(row, others)
    assert out["pi95"] == [4.0, 4.35] and out["pi95_form"] == [4.0, 4.1]
    assert "pi95_form" not in cover_forms(row, {**others, "disagree": []})
