"""Figures: every PNG is written without a RuntimeWarning, each loss-vs-N curve passes through the
fit's own prediction at its runs, and legends name the groups' own values."""

import numpy as np
import pandas as pd
import pytest

from harness.fit.analysis import analyse
from harness.fit.law import predict
from harness.report import plots

LAW = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)
BUDGETS = (2e8, 6e8, 2e9, 6e9)  # tokens
TOKENS_PER_STEP = (1.0e6, 1.3e6, 1.7e6, 2.2e6, 2.9e6)  # one per model size: D rounds up to whole steps


@pytest.fixture(scope="module")
def analysed():
    """4 data budgets x 5 model sizes; rounding to each size's step makes 20 distinct D, 4 groups."""
    rows = [(N, np.ceil(budget / step) * step)
            for budget in BUDGETS for N, step in zip(np.logspace(7, 9, 5), TOKENS_PER_STEP)]
    N, D = (np.array(c) for c in zip(*rows))
    L = predict(LAW, N, D) * np.exp(0.003 * np.random.default_rng(0).standard_normal(len(N)))
    table = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": L})
    results, fits = analyse(table, n_bootstrap=50, holdout=3, form_names=("chinchilla", "kaplan"))
    return table, results, fits


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_make_all_writes_every_figure(analysed, tmp_path):
    table, results, fits = analysed
    names = plots.make_all(table, fits, results, tmp_path)
    assert {"loss_vs_N.png", "loss_vs_D.png", "frontier.png", "residuals.png", "rollout.png"} <= set(names)
    for name in names:
        assert (tmp_path / name).stat().st_size > 1000


def test_loss_vs_n_curve_passes_through_each_runs_prediction(analysed):
    table, _, fits = analysed
    N, D = table["N"].to_numpy(), table["D"].to_numpy()
    assert len(np.unique(D)) >= 10
    groups = plots.value_groups(D, "D")
    assert len(groups) == len(BUDGETS)
    for fit in fits.values():
        for m, _ in groups:
            xs, loss = plots.group_curve(fit, N[m], D[m], along="N", span=(N.min() / 2, N.max() * 2))
            assert np.all(np.diff(xs) >= 0) and xs[0] < N.min() and xs[-1] > N.max()
            for n, d in zip(N[m], D[m]):
                assert np.isclose(loss[xs == n], fit.predict(n, d), rtol=1e-12).any()


def test_legend_labels_are_the_groups_own_values(analysed, tmp_path, monkeypatch):
    table, results, fits = analysed
    D = table["D"].to_numpy()
    for m, text in plots.value_groups(D, "D"):
        lo, hi = plots._fmt(D[m].min()), plots._fmt(D[m].max())
        assert text == (f"D = {lo}" if lo == hi else f"D = {lo}–{hi}")
    seen = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (seen.append(fig), save(fig, path)))
    order = list(fits)
    plots.loss_vs_plot(table, fits, order, "N", tmp_path / "loss_vs_N.png")
    legend = [t.get_text() for ax in seen[0].axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert legend == [text for _, text in plots.value_groups(D, "D")]
    assert seen[0].axes[0].get_title() == f"{order[0]} (headline)"


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_frontier_band_survives_resamples_without_an_optimum(analysed, tmp_path):
    table, results, fits = analysed
    head = fits[results["model_choice"]["headline"]]
    z = head.z_samples
    try:
        bad = np.array(head.z_samples[:2])
        if head.form.name == "chinchilla":  # coordinates: log A, log B, log E, alpha, beta
            bad[0, 3] = -0.5  # alpha + beta < beta: A/N^alpha grows with N, no optimum (NaN row)
            bad[1] = [80.0, -10.0, 0.5, 0.01, 0.01]  # G overflows: N* = inf, D* = 0
        head.z_samples = np.concatenate([z, bad])
        from harness.fit import frontier

        band = frontier.allocation_interval(head, {}, np.logspace(18, 22, 5))
        assert np.all(band["lo"]["N_opt"] <= band["hi"]["N_opt"]) and np.all(np.isfinite(band["lo"]["N_opt"]))
        plots.frontier_plot(table, fits, list(fits), results, tmp_path / "frontier.png")
    finally:
        head.z_samples = z
