"""Law forms: each form and constraint recovers a known law from noisy points, with the truth inside
its 95 % intervals; held-out model choice picks the form that generated the data; groups differ
when (and only when) their laws do."""
import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.fit import forms, groups
from harness.fit.analysis import analyse
from harness.fit.law import _columns, bootstrap_form, fit_form, prediction_interval

CHIN = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)
KAP = dict(N_c=8.8e13, D_c=5.4e13, alpha_N=0.076, alpha_D=0.095)  # Kaplan et al. 2020's eqs. 1.1-1.2 values


def law(form, p, X):
    """Loss of physical parameters p under `form` (inverse of form.physical for these forms)."""
    if form.name == "kaplan":
        z = [np.log(p["N_c"]), np.log(p["D_c"]), p["alpha_N"], p["alpha_D"]]
    else:
        z = [np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]]
        z += [np.log(p["R_D"])] if form.name == "datacon" else []
    return np.exp(form._log_predict(np.array([z]), X)[0])


def grid(n=7, U=None, noise=0.004, seed=0, form=forms.CHINCHILLA, p=CHIN, n_lo=7, d_lo=8):
    N, D = (a.ravel() for a in np.meshgrid(np.logspace(n_lo, n_lo + 3, n), np.logspace(d_lo, d_lo + 4, n)))
    X = _columns(N, D, U if U is None else np.full_like(D, U))
    L = law(form, p, X) * np.exp(noise * np.random.default_rng(seed).standard_normal(N.size))
    return X, L


@pytest.mark.parametrize("name", ["chinchilla", "kaplan", "datacon"])
@pytest.mark.parametrize("constraint", [{}, {"tie": True}, {"E": 1.8}])
def test_analytic_jacobians_match_finite_differences(name, constraint):
    if name == "kaplan" and constraint:
        pytest.skip("kaplan has no floor and no alpha/beta")
    form = forms.get(name, **constraint)
    X = _columns(np.logspace(4, 6, 8), np.logspace(5, 7.5, 8), np.full(8, 3e5))
    z = forms.starts(form, X, np.full(8, 4.0))[:3] + 0.01
    lp, J = form.log_predict_jac(z, X)
    h = 1e-6
    fd = np.stack([(form.log_predict(z + h * e, X) - form.log_predict(z - h * e, X)) / (2 * h)
                   for e in np.eye(z.shape[1])], -1)
    np.testing.assert_allclose(J, fd, atol=1e-7)
    np.testing.assert_allclose(lp, form.log_predict(z, X), rtol=1e-12)


def check_recovery(form, truth, X, L, rel=0.15, interval=True):
    fit = bootstrap_form(fit_form(form, X, L), X, L, n_resamples=200, seed=1)
    assert fit.converged and not fit.not_identified, fit.not_identified
    for k, v in truth.items():
        assert fit.params[k] == pytest.approx(v, rel=rel), k
        if not interval:
            continue
        lo, hi = fit.ci95[k]
        se = fit.stderr[k]  # widened by one SE: one draw of noise misses a 95 % interval 1 time in 20
        assert lo - se <= v <= hi + se or np.isclose(lo, hi), (k, lo, v, hi)  # a fixed parameter: lo == hi
    return fit


def test_chinchilla_intervals_cover_the_truth_across_noise_draws():
    """The bootstrap of a near-L1 fit can be narrow on one draw (seed 0: beta 3.5 SE off), so
    coverage is checked over 8 draws rather than on one."""
    covered = []
    for seed in range(8):
        X, L = grid(seed=seed)
        fit = bootstrap_form(fit_form(forms.CHINCHILLA, X, L), X, L, n_resamples=200, seed=1)
        assert all(fit.params[k] == pytest.approx(CHIN[k], rel=0.05) for k in ("E", "alpha", "beta"))
        covered += [fit.ci95[k][0] <= CHIN[k] <= fit.ci95[k][1] for k in ("E", "alpha", "beta")]
    assert np.mean(covered) >= 0.75, covered  # nominal 95 %; 24 draws leave room for chance


def test_chinchilla_constraints_recover_the_truth():
    X, L = grid(seed=1)
    # point estimates only: interval coverage of this near-L1 fit is checked over many draws above
    fixed = check_recovery(forms.get("chinchilla", E=1.8), {"alpha": 0.35, "beta": 0.37, "E": 1.8}, X, L, 0.05, False)
    assert fixed.params["E"] == 1.8 and fixed.form.n_free == 4
    tied_truth = {**CHIN, "beta": 0.35}
    X, L = grid(p=tied_truth)
    tied = check_recovery(forms.get("chinchilla", tie=True), {"alpha": 0.35, "beta": 0.35, "E": 1.8}, X, L, 0.05, False)
    assert tied.params["alpha"] == tied.params["beta"]


def test_kaplan_recovers_its_exponents():
    X, L = grid(form=forms.KAPLAN, p=KAP, n_lo=6, d_lo=8, noise=0.002)
    check_recovery(forms.KAPLAN, {"alpha_N": 0.076, "alpha_D": 0.095}, X, L, rel=0.1)


def test_datacon_recovers_the_value_of_repeated_tokens():
    # runs over 1 to 64 epochs of 1e9 unique tokens: the repetition half-life R_D* = 15 is measurable
    truth = {**CHIN, "R_D": 15.0}
    N, D = (a.ravel() for a in np.meshgrid(np.logspace(7, 9, 6), np.logspace(8.5, 10.8, 8)))
    X = _columns(N, D, np.full_like(D, 1e9))
    L = law(forms.DATACON, truth, X) * np.exp(0.002 * np.random.default_rng(0).standard_normal(N.size))
    fit = check_recovery(forms.DATACON, {"R_D": 15.0, "alpha": 0.35, "E": 1.8}, X, L, rel=0.3)
    assert fit.params["R_D"] < 100  # repetition costs something here, unlike a chinchilla fit would say


def test_prediction_intervals_cover_held_out_points_at_about_their_level():
    X, L = grid(noise=0.01, seed=3)
    fit = bootstrap_form(fit_form(forms.CHINCHILLA, X, L), X, L, n_resamples=300, seed=0)
    Xn, Ln = grid(n=6, noise=0.01, seed=9)
    pred, lo, hi = prediction_interval(fit, Xn)
    inside = np.mean((Ln >= lo) & (Ln <= hi))
    assert 0.85 <= inside <= 1.0 and np.all(lo < pred) and np.all(pred < hi)


def test_a_parameter_the_data_cannot_pin_down_is_reported_as_not_identified(tmp_path):
    # one decade in N and D, 1 % noise: the floor and the N term trade off without bound
    N, D = (a.ravel() for a in np.meshgrid(np.logspace(5, 6, 4), np.logspace(6, 7, 4)))
    L = law(forms.CHINCHILLA, dict(E=3.2, A=120.0, B=56.0, alpha=0.6, beta=0.27), _columns(N, D))
    L = L * np.exp(0.01 * np.random.default_rng(0).standard_normal(N.size))
    table = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": L})
    results, _ = analyse(table, n_bootstrap=200, form_names=("chinchilla",))
    sec = results["forms"]["chinchilla"]
    assert sec["not_identified"] and all(sec["ci95"][k] is None for k in sec["not_identified"])
    from harness.report import document

    document.write_markdown({**results, "provenance": {"runs": "x", "excluded": [], "git_revision": "x",
                                                      "settings": {}, "conventions": {"N": "total", "C": "6ND"}}},
                          [], "harness-fit ...", tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "not identified" in text and "e+1" not in text.split("## Compute-optimal")[0].split("## Headline")[1]


@pytest.mark.parametrize("truth_form", ["kaplan", "chinchilla"])
def test_rollout_picks_the_form_that_generated_the_data(truth_form):
    form, p = (forms.KAPLAN, KAP) if truth_form == "kaplan" else (forms.CHINCHILLA, CHIN)
    X, L = grid(form=form, p=p, n_lo=6, d_lo=8, noise=0.002, n=6)
    table = pd.DataFrame({"N": X["N"], "D": X["D"], "C": 6 * X["N"] * X["D"], "loss": L})
    results, _ = analyse(table, n_bootstrap=0, form_names=("chinchilla", "kaplan"))
    assert results["model_choice"]["headline"] == truth_form, results["model_choice"]["ranking"]


def _group_table(alphas, seed=0):
    parts = []
    for g, alpha in alphas.items():
        X, L = grid(p={**CHIN, "alpha": alpha}, noise=0.005, seed=seed + len(parts), n=6)
        parts.append(pd.DataFrame({"N": X["N"], "D": X["D"], "C": 6 * X["N"] * X["D"], "loss": L, "arch": g}))
    return pd.concat(parts, ignore_index=True)


def test_groups_differ_when_their_laws_do_and_not_otherwise():
    differ = groups.compare(_group_table({"gpt2": 0.30, "llama": 0.45}), "arch", forms.CHINCHILLA, 200)
    d = differ["differences"]["gpt2 - llama"]["alpha"]
    assert d["ci95"][1] < 0 and d["p_value"] < 0.05 and d["median"] == pytest.approx(-0.15, abs=0.05)
    same = groups.compare(_group_table({"gpt2": 0.35, "llama": 0.35}, seed=5), "arch", forms.CHINCHILLA, 200)
    d = same["differences"]["gpt2 - llama"]["alpha"]
    assert d["ci95"][0] < 0 < d["ci95"][1] and d["p_value"] > 0.05
    assert set(same["laws"]) == {"gpt2", "llama"} and "loss_opt_at_C_ref" in same["differences"]["gpt2 - llama"]


def _scaled_groups(k, noise, form=forms.CHINCHILLA, p=CHIN):
    """Group "b" is group "a" with every parameter and every token worth k of a's: L_b(N, D) = L_a(kN, kD),
    so L*_b(C) = L*_a(k^2 C) (C = 6ND) and b's compute multiplier against a is k^2 at every C."""
    parts = []
    for g, scale in (("a", 1.0), ("b", k)):
        X, L = grid(p=p, form=form, noise=noise, seed=len(parts), n=6)
        L = law(form, p, _columns(X["N"] * scale, X["D"] * scale)) * L / law(form, p, X)  # a's noise, b's law
        parts.append(pd.DataFrame({"N": X["N"], "D": X["D"], "C": 6 * X["N"] * X["D"], "loss": L, "arch": g}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("form", [forms.CHINCHILLA, forms.KAPLAN])
def test_compute_multiplier_recovers_a_known_factor(form):
    k = 1.6
    p = CHIN if form is forms.CHINCHILLA else KAP
    exact = groups.compare(_scaled_groups(k, 0.0, form, p), "arch", form, 0)["multipliers"]["b"]
    for at in ("at_C_ref", "at_10_C_ref"):
        assert exact[at]["multiplier"] == pytest.approx(k ** 2, rel=0.01)
    noisy = groups.compare(_scaled_groups(k, 0.004, form, p), "arch", form, 200)
    for at in ("at_C_ref", "at_10_C_ref"):
        m = noisy["multipliers"]["b"][at]
        assert m["ci95"][0] < k ** 2 < m["ci95"][1] and m["ci95"][0] > 1, m
    flipped = groups.compare(_scaled_groups(k, 0.0, form, p), "arch", form, 0, ref="b")
    assert flipped["ref"] == "b" and list(flipped["laws"]) == ["b", "a"]
    assert flipped["multipliers"]["a"]["at_C_ref"]["multiplier"] == pytest.approx(k ** -2, rel=0.01)


@pytest.mark.slow  # end to end, 15-35 s on 2 cores; CI runs the slow tier
def test_the_multiplier_interval_covers_a_known_multiplier_at_its_level():
    """Two groups with independent noise whose laws differ by a known compute multiplier k^2: over 100
    draws the 95 % interval covers it 90-98 % of the time (each group draws its own resamples)."""
    k, hits = 1.3, []
    for draw in range(100):
        parts = []
        for g, scale in (("a", 1.0), ("b", k)):
            X, _ = grid(n=6, noise=0.0)
            noise = np.random.default_rng([draw, len(parts)]).standard_normal(X["N"].size)
            L = law(forms.CHINCHILLA, CHIN, _columns(X["N"] * scale, X["D"] * scale)) * np.exp(0.004 * noise)
            parts.append(pd.DataFrame({"N": X["N"], "D": X["D"], "C": 6 * X["N"] * X["D"], "loss": L, "arch": g}))
        gr = groups.compare(pd.concat(parts, ignore_index=True), "arch", forms.CHINCHILLA, 100, seed=draw)
        lo, hi = gr["multipliers"]["b"]["at_C_ref"]["ci95"]
        hits.append(lo < k ** 2 < hi)
        assert gr["laws"]["a"]["bootstrap_seed"] != gr["laws"]["b"]["bootstrap_seed"]
    assert 0.90 <= np.mean(hits) <= 0.98, np.mean(hits)


def test_compute_multiplier_of_one_law_holds_one_and_an_unknown_reference_is_named():
    same = groups.compare(_scaled_groups(1.0, 0.004), "arch", forms.CHINCHILLA, 200)["multipliers"]["b"]
    assert same["at_C_ref"]["ci95"][0] < 1 < same["at_C_ref"]["ci95"][1]
    with pytest.raises(HarnessError, match="group_ref=gpt3: no such arch among the runs \\(a, b\\)"):
        groups.compare(_scaled_groups(1.0, 0.0), "arch", forms.CHINCHILLA, 0, ref="gpt3")


def test_numeric_allocation_agrees_with_chinchillas_closed_form():
    from harness.fit.allocate import _argmin_n, compute_optimal

    z = np.array([[np.log(CHIN["A"]), np.log(CHIN["B"]), np.log(CHIN["E"]), CHIN["alpha"], CHIN["beta"]]])
    for C in (1e18, 1e21, 1e24):
        exact = compute_optimal(**CHIN, C=C)["N_opt"]
        assert _argmin_n(forms.CHINCHILLA, z, C)[0] == pytest.approx(exact, rel=1e-3)


def test_repetition_analysis_measures_what_the_generating_law_says_a_repeat_is_worth():
    """The repetition study's design (3 sizes x 3 unique-token caps x 4 D) under a known law: R_D*
    comes back inside its interval, and each run's measured value matches the law's value."""
    from harness.fit import repetition
    from harness.fit.law import bootstrap_form

    truth = {**CHIN, "R_D": 6.0}
    rows = [(n, d, u) for n in (1e7, 3e7, 1e8) for u in (1e8, 4e8, 1.5e9) for d in (4e8, 8e8, 1.6e9, 3.2e9)]
    N, D, U = (np.array(c, float) for c in zip(*rows))
    X = _columns(N, D, U)
    L = law(forms.DATACON, truth, X) * np.exp(0.002 * np.random.default_rng(1).standard_normal(N.size))
    fit = bootstrap_form(fit_form(forms.DATACON, X, L), X, L, 200)
    table = pd.DataFrame({"cell_key": [f"c{i}" for i in range(len(N))], "N": N, "D": D, "U": U,
                          "epochs": D / U, "loss": L})
    rep = repetition.analyse(table, fit)
    lo, hi = rep["ci95"]
    assert lo <= 6.0 <= hi and hi / lo < 4
    assert len(rep["runs"]) == sum(D / U >= repetition.MEASURE_FROM) and rep["max_epochs"] == 32
    for r in rep["runs"]:
        if r["epochs"] >= 4:  # where repetition is visible above the noise
            assert r["value_measured"] == pytest.approx(repetition.value_of_repeats(r["epochs"], 6.0), abs=0.15)
    assert repetition.analyse(table[table["U"] == 1.5e9], fit) is None  # one cap and <= 2.1 epochs: no study


def test_a_multiplier_beyond_the_search_is_reported_as_a_bound():
    from harness.report.groups import groups_md

    gr = groups.compare(_scaled_groups(20.0, 0.0), "arch", forms.CHINCHILLA, 0)  # true multiplier 400
    assert gr["multipliers"]["b"]["at_C_ref"]["multiplier"] == pytest.approx(10 ** groups.SPAN_DEX)
    assert any(line.startswith("| b | ≥ 100×") for line in groups_md(gr))
