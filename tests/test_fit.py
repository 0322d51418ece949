"""Approach 1-3 fitters recover known laws from noisy synthetic data (tolerances, not goldens)."""

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.fit import forms
from harness.fit.allocate import compute_optimal
from harness.fit.analysis import analyse
from harness.fit.backtest import backtest
from harness.fit.isoflop import envelope, group_budgets, isoflop, isoflop_bootstrap, kaplan_laws
from harness.fit.law import PARAMS, _columns, bootstrap, fit_parametric, identifiable, predict, summarise

TRUE_LAWS = [  # spans the published range: Hoffmann-like, Epoch-like, steep-N / shallow-D
    dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    dict(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37),
    dict(E=2.5, A=60.0, B=900.0, alpha=0.25, beta=0.40),
]


def grid_points(p, noise, seed, n=9):
    """N x D grid (1e7..1e10 params, 1e8..1e12 tokens) with multiplicative loss noise."""
    rng = np.random.default_rng(seed)
    N, D = (a.ravel() for a in np.meshgrid(np.logspace(7, 10, n), np.logspace(8, 12, n)))
    L = predict(p, N, D) * np.exp(noise * rng.standard_normal(N.size))
    return N, D, L


@pytest.mark.parametrize("p", TRUE_LAWS)
def test_recovers_known_law_from_noisy_points(p):
    N, D, L = grid_points(p, noise=0.003, seed=1)
    fit = fit_parametric(N, D, L)
    assert fit.converged and fit.identifiable
    assert fit.alpha == pytest.approx(p["alpha"], abs=0.03)
    assert fit.beta == pytest.approx(p["beta"], abs=0.03)
    assert fit.E == pytest.approx(p["E"], rel=0.03)
    # A and B trade off with the exponents; the compute-optimal exponent a is what matters.
    a_true = p["beta"] / (p["alpha"] + p["beta"])
    assert compute_optimal(**fit.params, C=1e22)["a"] == pytest.approx(a_true, abs=0.03)
    # Out-of-sample: a 10x larger model on 10x more data than any point.
    assert fit.predict(1e11, 1e13) == pytest.approx(predict(p, 1e11, 1e13), rel=0.01)


def test_noise_free_fit_is_exact():
    p = TRUE_LAWS[1]
    N, D, L = grid_points(p, noise=0.0, seed=0)
    fit = fit_parametric(N, D, L)
    for k in PARAMS:
        assert fit.params[k] == pytest.approx(p[k], rel=1e-4)


def test_bootstrap_intervals_cover_truth_and_are_seeded():
    p = TRUE_LAWS[0]
    N, D, L = grid_points(p, noise=0.01, seed=3)
    fit = bootstrap(fit_parametric(N, D, L), N, D, L, n_resamples=200, seed=7)
    again = bootstrap(fit_parametric(N, D, L), N, D, L, n_resamples=200, seed=7)
    assert fit.ci95 == again.ci95 and fit.n_boot_failed == 0
    for k in ("E", "alpha", "beta"):
        lo, hi = fit.ci95[k]
        assert lo < fit.params[k] < hi and fit.stderr[k] > 0
        # truth within the interval widened by one SE (a single draw can miss a 95 % CI)
        assert lo - fit.stderr[k] < p[k] < hi + fit.stderr[k]


@pytest.mark.parametrize("bad, match", [
    ((np.array([1e8, np.nan] + [1e9] * 6), "NaN")),
    ((np.array([1e8, -1.0] + [1e9] * 6), "non-positive")),
])
def test_bad_input_raises_one_clear_error(bad, match):
    N, D, L = grid_points(TRUE_LAWS[0], noise=0, seed=0, n=3)
    with pytest.raises(HarnessError, match=match):
        fit_parametric(bad, D[:8], L[:8])


def test_too_few_points_raises():
    with pytest.raises(HarnessError, match="cannot determine 5 parameters"):
        fit_parametric([1e8, 1e9, 1e10], [1e9, 1e10, 1e11], [3.0, 2.8, 2.5])


def test_fixed_tokens_per_param_is_flagged_unidentifiable():
    p = TRUE_LAWS[0]
    N = np.logspace(7, 10, 12)
    D = 20 * N * np.exp(0.01 * np.random.default_rng(0).standard_normal(12))
    L = predict(p, N, D)
    assert not identifiable(N, D)
    table = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": L})
    results, fits = analyse(table, n_bootstrap=20)
    assert not results["parametric"]["identifiable"]
    assert results["compute_optimal"] is None
    assert any("not separately identifiable" in w for w in results["warnings"])
    assert "kaplan" in results and results["backtest"]  # the sound parts still run
    assert results["model_choice"]["headline"] in fits


def isoflop_design(p, budgets=(1e18, 1e19, 1e20, 1e21), n=9, noise=0.002, seed=0, spread_dex=0.75):
    """Per budget, N spread over 2 * spread_dex decades around the true optimum; D = C / (6N)."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        n_opt = compute_optimal(**p, C=C)["N_opt"]
        for N in n_opt * np.logspace(-spread_dex, spread_dex, n):
            D = C / (6 * N)
            rows.append((N, D, C, predict(p, N, D) * np.exp(noise * rng.standard_normal())))
    return (np.array(c) for c in zip(*rows))


@pytest.mark.parametrize("p", TRUE_LAWS)
def test_isoflop_recovers_compute_optimal_exponents(p):
    N, D, C, L = isoflop_design(p)
    res = isoflop(N, L, C)
    assert len(res["budgets"]) == 4 and not res["rejected"]
    a_true = p["beta"] / (p["alpha"] + p["beta"])
    assert res["a"] == pytest.approx(a_true, abs=0.04)
    assert res["a"] + res["b"] == pytest.approx(1.0, abs=1e-9)  # C = 6ND fixes a + b = 1
    for b in res["budgets"]:
        true_opt = compute_optimal(**p, C=b["C"])["N_opt"]
        assert b["N_opt"] == pytest.approx(true_opt, rel=0.3)


def test_isoflop_rejects_minimum_at_edge():
    p = TRUE_LAWS[0]
    N, D, C, L = isoflop_design(p, budgets=(1e19, 1e20, 1e21))
    # Budget 1e21 only sampled far below its optimum: the parabola's minimum is off the range.
    keep = ~((C == 1e21) & (N > 0.2 * compute_optimal(**p, C=1e21)["N_opt"]))
    extra_N = compute_optimal(**p, C=1e21)["N_opt"] * np.logspace(-2.5, -1, 4)
    N2 = np.concatenate([N[keep], extra_N])
    C2 = np.concatenate([C[keep], np.full(4, 1e21)])
    L2 = np.concatenate([L[keep], predict(p, extra_N, 1e21 / (6 * extra_N))])
    res = isoflop(N2, L2, C2)
    assert [r["C"] for r in res["rejected"]] == pytest.approx([1e21])
    assert len(res["budgets"]) == 2


def test_group_budgets_tolerates_small_drift():
    C = np.array([1e19, 1.01e19, 0.99e19, 1e20, 1.02e20])
    assert list(group_budgets(C)) == [0, 0, 0, 1, 1]


def test_envelope_is_monotone_frontier():
    N, D, C, L = isoflop_design(TRUE_LAWS[0])
    env = envelope(N, D, L, C)
    losses = [q["loss"] for q in env["points"]]
    assert losses == sorted(losses, reverse=True) and len(losses) >= 4


LADDER_DEX = 0.05  # model sizes every 0.05 dex, as a sweep's fixed ladder of configs
JITTER = 5e-4  # C of one budget's runs differs in the 4th digit (D rounded to whole steps)


@pytest.mark.parametrize("p", TRUE_LAWS)
def test_envelope_keeps_one_run_per_budget_and_recovers_a(p):
    budgets = (1e18, 1e19, 1e20, 1e21)
    ladder = 10 ** np.arange(6, 11 + 1e-9, LADDER_DEX)
    rng = np.random.default_rng(0)
    rows = []
    for C0 in budgets:
        sizes = ladder[np.abs(np.log10(ladder / compute_optimal(**p, C=C0)["N_opt"])) <= 0.5]
        for N, C in zip(sizes, C0 * (1 + rng.uniform(-JITTER, JITTER, len(sizes)))):
            rows.append((N, C / (6 * N), C, predict(p, N, C / (6 * N))))
    N, D, C, L = (np.array(c) for c in zip(*rows))
    env = envelope(N, D, L, C)
    labels = group_budgets(C)
    assert len(np.unique(labels)) == len(budgets) and len(L) >= 5 * len(budgets)
    assert len(env["points"]) == len(budgets)  # one per budget, each its budget's lowest loss
    for q, g in zip(env["points"], np.unique(labels)):
        assert q["loss"] == L[labels == g].min() and q["n_runs"] == np.sum(labels == g)
    assert len(envelope(N, D, L, C, tol_dex=0)["points"]) > len(budgets)  # the jitter is what split budgets
    # Noise-free and unimodal in log N, the best size of a budget is one of the two ladder sizes
    # bracketing its optimum: |error in log10 N*| <= LADDER_DEX (+ the jitter's shift of the optimum,
    # a * JITTER / ln 10 < 3e-4 dex). A least-squares slope with every error within e moves by at most
    # e * sum|x - mean x| / sum (x - mean x)^2 over the budgets' x = log10 C: 0.8 e here.
    x = np.log10(budgets)
    e = LADDER_DEX + JITTER / np.log(10)
    tol = e * np.abs(x - x.mean()).sum() / ((x - x.mean()) ** 2).sum()
    assert env["a"] == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]), abs=tol)
    assert env["a"] + env["b"] == pytest.approx(1.0, abs=1e-9)  # every run has D = C / (6N) exactly


def test_backtest_predicts_held_out_runs():
    N, D, L = grid_points(TRUE_LAWS[1], noise=0.002, seed=4)
    X = _columns(N, D)
    bt = backtest(forms.CHINCHILLA, X, L, 6 * N * D, holdout=5, n_bootstrap=100)
    assert bt["n_holdout"] == 5 and len(bt["points"]) == 5
    assert bt["max_abs_rel_error"] < 0.02
    assert all(p["pi95"][0] < p["pred"] < p["pi95"][1] and p["projection_dex"] >= 0 for p in bt["points"])
    X8 = _columns(N[:8], D[:8])
    assert "skipped" in backtest(forms.CHINCHILLA, X8, L[:8], 6 * N[:8] * D[:8], holdout=4)


def test_bootstrap_interval_is_unbounded_when_refits_run_off_to_infinity():
    x = np.linspace(1.0, 2.0, 1000)
    stderr, ci = summarise({"A": x})
    assert ci["A"] == pytest.approx(list(np.percentile(x, [2.5, 97.5])))
    x[:50] = np.inf  # 5 % of refits with A = inf: the 97.5 % bound is infinite, not silently finite
    stderr, ci = summarise({"A": x})
    assert ci["A"][1] == np.inf and np.isfinite(ci["A"][0]) and np.isfinite(stderr["A"])


def test_isoflop_does_not_depend_on_the_scale_of_N():
    # The same IsoFLOP curves with N (and C) shifted from ~1e2..1e4 to ~1e29..1e31: only the
    # position on the log axis changes, so a, b, the minima relative to the scale and the
    # bootstrap must not (raw log N ~ 69 made the parabolas' normal equations lose the curvature).
    N, D, C, L = isoflop_design(TRUE_LAWS[0], n=7, spread_dex=0.5)
    counts = np.random.default_rng(0).multinomial(len(L), np.full(len(L), 1 / len(L)), size=50)
    small, huge = 1e-6, 1e21
    assert (N * small).max() < 1e4 and (N * huge).min() > 1e28
    ref, big = isoflop(N * small, L, C * small), isoflop(N * huge, L, C * huge)
    assert len(big["budgets"]) == len(ref["budgets"]) == 4 and not big["rejected"]
    assert big["a"] == pytest.approx(ref["a"], abs=1e-6) and big["b"] == pytest.approx(ref["b"], abs=1e-6)
    for r, g in zip(ref["budgets"], big["budgets"]):
        assert g["N_opt"] / huge == pytest.approx(r["N_opt"] / small, rel=1e-6)
        assert g["loss_opt"] == pytest.approx(r["loss_opt"], rel=1e-9)
    boot_ref = isoflop_bootstrap(N * small, L, C * small, counts)
    boot_big = isoflop_bootstrap(N * huge, L, C * huge, counts)
    np.testing.assert_allclose(boot_big["a"], boot_ref["a"], atol=1e-6)


def test_unbounded_bootstrap_samples_do_not_overflow():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        # finite refits as large as A ~ 1e250: the SE scales with them instead of overflowing
        x = np.linspace(1.0, 2.0, 100)
        se, _ = summarise({"A": x})
        se_big, _ = summarise({"A": x * 1e250})
        assert se_big["A"] == pytest.approx(se["A"] * 1e250, rel=1e-12)
        # a refit with a negative exponent has no compute optimum: NaN, not a warning
        co = compute_optimal(E=[1.8, 1.8], A=[400.0, 400.0], B=[400.0, 400.0],
                             alpha=[0.3, -0.1], beta=[0.3, 0.3], C=1e21)
        assert np.isfinite(co["N_opt"][0]) and np.isnan(co["N_opt"][1]) and np.isnan(co["G"][1])
        # a nearly flat single-variable law puts X_c past the float range: inf, not an overflow
        X = np.logspace(6, 9, 6)
        law = kaplan_laws(X, X * 20, 3.0 * X**-1e-3, 6 * X * X * 20)
        assert law["N"]["alpha"] == pytest.approx(1e-3, rel=1e-6) and law["N"]["X_c"] == np.inf
