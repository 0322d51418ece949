"""Figures, read back from what was drawn (each plot function returns its Figure): every PNG is
written without a RuntimeWarning; each loss-vs-N curve passes through the fit's own prediction at its
runs, every drawn group has its curve and legends name the groups' own values; series are told apart
and the legend matches them; every N, D or C axis names its convention; approach 1 draws one run per
budget; held-out intervals stand at their own C; dodged points keep their exact x."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_hex

from harness.fit.allocate import compute_optimal
from harness.fit.analysis import analyse
from harness.fit.isoflop import group_budgets, isoflop
from harness.fit.law import predict
from harness.fit.laws import PUBLISHED
from harness.report import figkit, plots

LAW = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)
BUDGETS = (2e8, 6e8, 2e9, 6e9)  # tokens
TOKENS_PER_STEP = (1.0e6, 1.3e6, 1.7e6, 2.2e6, 2.9e6)  # one per model size: D rounds up to whole steps
NONEMBED = {"conventions": {"N": "nonembed", "C": "6*N_nonembed*D (Kaplan)"}}  # as cli_fit records them
MIN_DODGE_PX = 4.0  # figkit.DODGE_PT = 6 pt is 7.5 px at 90 dpi; a marker (s=14) is ~5 px across


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


def iso_table(budgets=(1e17, 1e18, 1e19, 1e20), half_width_dex=0.6):
    """An IsoFLOP sweep: a fixed ladder of sizes (every 0.2 dex), those within half_width_dex of each
    budget's true optimum, D rounded up to whole 2^18-token steps, so the runs of one budget differ
    in C in the 4th digit; three cells carry two seeds (n_seeds, loss_std as fit_table writes them)."""
    ladder = 10 ** np.arange(6.5, 10.0, 0.2)
    rows = []
    for C0 in budgets:
        n_opt = compute_optimal(**LAW, C=C0)["N_opt"]
        rows += [(N, np.ceil(C0 / (6 * N) / 2**18) * 2**18)
                 for N in ladder[np.abs(np.log10(ladder / n_opt)) <= half_width_dex]]
    N, D = (np.array(c) for c in zip(*rows))
    L = predict(LAW, N, D) * np.exp(0.003 * np.random.default_rng(0).standard_normal(len(N)))
    seeds = np.ones(len(N), int)
    seeds[[1, 8, 15]] = 2
    return pd.DataFrame({"cell": [f"N{n:.3g}_D{d:.3g}" for n, d in zip(N, D)], "N": N, "D": D, "C": 6 * N * D,
                         "loss": L, "n_seeds": seeds,
                         "loss_std": np.where(seeds > 1, 0.004 * L, np.nan)})


@pytest.fixture(scope="module")
def iso_analysed():
    table = iso_table()
    results, fits = analyse(table, n_bootstrap=20, holdout=2, form_names=("chinchilla", "kaplan"))
    results["provenance"] = NONEMBED
    return table, results, fits


@pytest.fixture(scope="module")
def figures(iso_analysed, tmp_path_factory):
    table, results, fits = iso_analysed
    return plots.make_all(table, fits, results, tmp_path_factory.mktemp("figs"))


def labelled(ax):
    """The lines and collections of ax that carry a legend label."""
    return [a for a in ax.lines + ax.collections if a.get_label() and not a.get_label().startswith("_")]


def display_x(artist, xy):
    """Where artist draws the data points xy, in pixels along x (markers sit at their offsets)."""
    trans = artist.get_offset_transform() if isinstance(artist, PathCollection) else artist.get_transform()
    return trans.transform(xy)[:, 0]


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_make_all_writes_every_figure(analysed, tmp_path):
    table, results, fits = analysed
    figs = plots.make_all(table, fits, results, tmp_path)
    assert {"loss_vs_N.png", "loss_vs_D.png", "frontier.png", "residuals.png", "rollout.png"} <= set(figs)
    for name in figs:
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


def test_legend_labels_are_the_groups_own_values(analysed, tmp_path):
    table, results, fits = analysed
    D = table["D"].to_numpy()
    for m, text in plots.value_groups(D, "D"):
        lo, hi = figkit.fmt(D[m].min()), figkit.fmt(D[m].max())
        assert text == (f"D = {lo}" if lo == hi else f"D = {lo}–{hi}")
    order = list(fits)
    fig = plots.loss_vs_plot(table, fits, order, "N", tmp_path / "loss_vs_N.png")
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert legend == [text for _, text in plots.value_groups(D, "D")]
    assert fig.axes[0].get_title() == f"{order[0]} (headline)"


@pytest.mark.parametrize("which", ["analysed", "iso_analysed"])
def test_every_drawn_group_has_its_curve_in_its_colour(which, request, tmp_path):
    table, results, fits = request.getfixturevalue(which)
    omitted = False
    for along, per in (("N", "D"), ("D", "N")):
        fig = plots.loss_vs_plot(table, fits, list(fits), along, tmp_path / "f.png")
        n_groups = len(plots.value_groups(table[per].to_numpy(), per))
        omitted |= n_groups > plots.MAX_CURVES
        for ax, label in zip(fig.axes, fits):
            points = [c for c in ax.collections if isinstance(c, PathCollection)]
            colours = [to_hex(c.get_facecolor()[0]) for c in points]
            assert len(set(colours)) == len(points) == min(n_groups, plots.MAX_CURVES)
            if fits[label].identifiable:
                assert sorted(to_hex(ln.get_color()) for ln in ax.lines) == sorted(colours)
        legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
        assert legend == [c.get_label() for c in fig.axes[-1].collections]
        drawn = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
        assert ("not drawn here" in fig.get_suptitle()) == (drawn < len(table))  # left out, and said so
    assert omitted == (which == "iso_analysed")  # the IsoFLOP sweep has more D groups than MAX_CURVES


@pytest.mark.parametrize("which", ["analysed", "iso_analysed"])
def test_frontier_series_are_told_apart_and_the_legend_matches(which, request, tmp_path):
    table, results, fits = request.getfixturevalue(which)
    order = [results["model_choice"]["headline"]] + [lab for lab in fits if lab != results["model_choice"]["headline"]]
    fig = plots.frontier_plot(table, fits, order, results, tmp_path / "frontier.png")
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    published = [law.name for law in PUBLISHED.values()]
    for ax in fig.axes:
        assert sorted(a.get_label() for a in labelled(ax)) == sorted(texts)
        lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
        styles = [(to_hex(ln.get_color()), ln.get_linestyle(), ln.get_alpha()) for ln in lines.values()]
        assert len(set(styles)) == len(styles)
        head = lines[f"{order[0]} (headline)"]
        others = [lines[lab] for lab in order[1:] if fits[lab].identifiable]
        assert others  # both forms are identifiable on these designs: an overlap is possible
        for ln in others:  # own colour AND pattern, drawn above the headline so an overlap shows both
            assert to_hex(ln.get_color()) != to_hex(head.get_color()) and ln.get_linestyle() != "-"
            assert ln.get_zorder() > head.get_zorder()
        assert not any(name in t or "et al" in t for t in texts for name in published)
    for handle, text in zip(fig.legends[0].legend_handles, texts):
        if text in lines:  # the legend's sample is styled as the line it names
            assert (to_hex(handle.get_color()), handle.get_linestyle()) == \
                (to_hex(lines[text].get_color()), lines[text].get_linestyle())


def test_approach_1_draws_one_run_per_budget(iso_analysed, tmp_path):
    table, results, fits = iso_analysed
    fig = plots.frontier_plot(table, fits, list(fits), results, tmp_path / "frontier.png")
    C, L = table["C"].to_numpy(), table["loss"].to_numpy()
    labels = group_budgets(C)
    best = sorted(C[labels == g][np.argmin(L[labels == g])] for g in np.unique(labels))
    env = next(c for c in fig.axes[0].collections if c.get_label().startswith("approach 1"))
    x = env.get_offsets()[:, 0]
    assert sorted(x) == best  # noise 0.3 % is below the budgets' loss steps: all 4 are on the envelope
    assert len(np.unique(group_budgets(x))) == len(x) == len(np.unique(labels))


def test_every_axis_names_its_convention(figures, iso_analysed):
    seen = set()
    for name, fig in figures.items():
        for ax in fig.axes:
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                if label.startswith(("N ", "N* ", "D/N")):
                    assert "non-embedding" in label, (name, label)
                    seen.add((name, "N"))
                if "C" in label.split(" ")[0] or "(C" in label:
                    assert "C = 6·N·D (FLOPs, N = non-embedding params)" in label, (name, label)
                    seen.add((name, "C"))
                if label.startswith(("D ", "D* ")):
                    assert "tokens" in label, (name, label)
    assert {(n, "C") for n in ("frontier.png", "residuals.png", "rollout.png")} <= seen
    assert {(n, "N") for n in ("frontier.png", "isoflop.png", "loss_vs_N.png", "residuals.png")} <= seen
    assert "6·N·D" in figures["isoflop.png"].axes[0].get_legend().get_title().get_text()
    total = figkit.axis_names({"provenance": {"conventions": {"N": "total"}}})
    assert "total params" in total["N"] and "N = total params" in total["C"]
    assert "not recorded" in figkit.axis_names({})["C"]  # no provenance: said so, never guessed


def test_isoflop_title_names_rejected_budgets_only_when_there_are_some(iso_analysed, tmp_path):
    table = iso_analysed[0]
    # a fifth budget sampled only far below its optimum: approach 2 rejects it (minimum off the range)
    far = iso_table(budgets=(1e21,), half_width_dex=3.0)
    far = far[far["N"] < 0.1 * compute_optimal(**LAW, C=1e21)["N_opt"]].iloc[-4:].assign(n_seeds=1, loss_std=np.nan)
    for t in (table, pd.concat([table, far], ignore_index=True)):
        iso = isoflop(t["N"], t["loss"], t["C"])
        title = plots.isoflop_plot(t, iso, tmp_path / "isoflop.png").axes[0].get_title()
        assert ("rejected" in title) == bool(iso["rejected"])
        assert all(f"C = {figkit.fmt(r['C'])}" in title for r in iso["rejected"])
    assert len(iso["rejected"]) == 1


def test_isoflop_shows_the_seed_spread_of_every_repeated_cell(figures, iso_analysed):
    table = iso_analysed[0]
    ax = figures["isoflop.png"].axes[0]
    (bars,) = ax.containers  # one errorbar call: (data line, caps, (vertical bars,))
    segments = bars.lines[2][0].get_segments()
    rep = table[table["n_seeds"] >= 2]
    assert len(rep) == 3 and len(segments) == len(rep)
    for ((x, lo), (_, hi)), (_, row) in zip(segments, rep.iterrows()):
        assert x == row["N"]
        assert (lo, hi) == pytest.approx((row["loss"] - row["loss_std"], row["loss"] + row["loss_std"]), rel=1e-12)


def test_held_out_intervals_stand_at_their_own_c(figures, iso_analysed):
    _, results, _ = iso_analysed
    pts = results["backtest"]["points"]
    C = np.array([p["C"] for p in pts])
    assert len(pts) == 2 and len(np.unique(group_budgets(C))) == 1  # two sizes of the dearest budget
    for ax, x in zip(figures["residuals.png"].axes, (C, np.array([p["D"] / p["N"] for p in pts]))):
        bars = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert [b.get_segments()[0][0, 0] for b in bars] == list(x)  # exact: the data is not moved
        for b, p in zip(bars, pts):
            assert b.get_segments()[0][:, 1] == pytest.approx(np.log(np.array(p["pi95"]) / p["pred"]), rel=1e-12)
        obs = [c for c in ax.collections if c.get_label().startswith("held out N=")]
        assert [c.get_offsets()[0, 0] for c in obs] == list(x)
    ax = figures["residuals.png"].axes[0]
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    px = [display_x(b, b.get_segments()[0])[0] for b in bars]
    assert abs(px[0] - px[1]) >= MIN_DODGE_PX  # one budget: drawn apart, so both can be seen


def test_rollout_points_are_dodged_by_form_with_exact_x(figures, iso_analysed):
    _, results, fits = iso_analysed
    ax = figures["rollout.png"].axes[0]
    cols = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [c.get_label() for c in cols]
    shifts = []
    for c in cols:
        form = c.get_label().split(" (mean")[0]
        x = [p["projection_dex"] for p in results["forms"][form]["rollout"]["predictions"]]
        assert list(c.get_offsets()[:, 0]) == x
        shift = display_x(c, c.get_offsets()) - ax.transData.transform(c.get_offsets())[:, 0]
        assert np.ptp(shift) < 1e-6  # one sideways step per form, the same at every x
        shifts.append(shift[0])
    assert len(cols) == len(fits) >= 2
    assert np.all(np.diff(shifts) >= MIN_DODGE_PX)  # so two forms' points at one x stand apart


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


def test_repetition_draws_each_runs_measured_value(tmp_path):
    from harness.fit.repetition import analyse as repetition

    R_STAR = 8.0  # Muennighoff et al.'s effective data D' = U + U R* (1 - exp(-R/R*)), R = D/U - 1 epochs
    rows = [(N, D, D / e) for N in (1e7, 3e7, 1e8) for D in (3e8, 1e9, 3e9) for e in (1, 2, 4, 8, 16)]
    N, D, U = (np.array(c) for c in zip(*rows))
    R = D / U - 1
    L = predict(LAW, N, U + U * R_STAR * -np.expm1(-R / R_STAR))
    table = pd.DataFrame({"cell_key": [f"c{i}" for i in range(len(N))], "N": N, "D": D, "U": U, "C": 6 * N * D,
                          "loss": L, "epochs": D / U})
    results, fits = analyse(table, n_bootstrap=0, holdout=3, form_names=("datacon",))
    results["provenance"] = NONEMBED
    rep = results["repetition"] = repetition(table, fits["datacon"])  # as cli_fit adds it
    fig = plots.make_all(table, fits, results, tmp_path)["repetition.png"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [a.get_label() for a in labelled(ax)]
    measured = [ln for ln in ax.lines if ln.get_label().startswith("measured")]
    assert len(measured) == 3 and all("non-embedding" in ln.get_label() for ln in measured)
    drawn = sorted((x, y) for ln in measured for x, y in zip(ln.get_xdata(), ln.get_ydata()))
    runs = sorted((r["epochs"], r["value_measured"]) for r in rep["runs"] if np.isfinite(r["value_measured"]))
    assert drawn == runs
    # a published value on this axis is fine: the worth of a repeated token has no N or C convention
    assert "C" not in ax.get_xlabel().split(" ") and "N" not in ax.get_xlabel().split(" ")


def test_groups_figure_draws_each_law_and_its_multiplier_as_an_arrow(tmp_path):
    """Group b is group a with parameters and tokens worth k times a's, so its multiplier is k^2: the
    arrow spans that factor along C at b's own L*(C_ref), and each group has its points and law."""
    from matplotlib.text import Annotation

    from harness.fit import forms, groups
    from harness.report.groupfig import groups_plot

    k, rows = 1.6, []
    for g, s in (("a", 1.0), ("b", 1.6)):
        for N in np.logspace(7, 9, 5):
            for D in np.logspace(8, 10.5, 5):
                rows.append({"arch": g, "N": N, "D": D, "C": 6 * N * D, "loss": predict(LAW, s * N, s * D)})
    table = pd.DataFrame(rows)
    gr = groups.compare(table, "arch", forms.CHINCHILLA, 0)
    fig = groups_plot(table, gr, tmp_path / "groups.png", figkit.axis_names(None))
    ax = fig.axes[0]
    arrows = [t for t in ax.texts if isinstance(t, Annotation)]
    assert len(arrows) == 1 and arrows[0].xy[0] / arrows[0].xyann[0] == pytest.approx(k ** 2, rel=0.01)
    assert arrows[0].xy[1] == pytest.approx(gr["laws"]["b"]["loss_opt_at_C_ref"])
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert {"a: L*(C) of its law", "b: L*(C) of its law"} <= set(labels)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in points] == [25, 25]
    assert (tmp_path / "groups.png").stat().st_size > 0
