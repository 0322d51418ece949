"""Figures for the fit report (matplotlib Agg; one function per PNG, each returning its Figure).

Every fitted form (fit.Fit) is drawn, the headline form (analysis.model_choice) first; colours,
line styles and markers follow that order in every figure (figkit.form_style). Every axis of N, D
or C names the convention the fit used (figkit.axis_names). Published laws are not drawn: their N
conventions and data differ from ours (fit.json compares them in numbers, published.*).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter, PercentFormatter

from harness.fit.allocate import allocation
from harness.fit.isoflop import group_budgets
from harness.report.figkit import MARKERS, axis_names, dodge, fmt, form_style, plt, save, spread, value_groups
from harness.report.groupfig import groups_plot

MAX_CURVES = 10  # groups drawn (points and curve, one legend entry each) per panel


def group_curve(fit, x, other, U=None, along="N", span=None, n=80) -> tuple[np.ndarray, np.ndarray]:
    """(xs, loss): the fit's prediction along `along` ("N" or "D") for one group of runs.

    x, other: the runs' values of `along` and of the other variable; U: their unique tokens (only
    forms that read U need it). Between the runs, the other variable and U are interpolated
    log-linearly in x, constant beyond the ends; the runs' own (N, D, U) are points of the curve,
    so it passes exactly through the fit's prediction at every run. span: (lo, hi) of the grid."""
    x, other = np.asarray(x, float), np.asarray(other, float)
    order = np.argsort(x, kind="stable")
    lx = np.log(x[order])
    lo, hi = span if span is not None else (x.min(), x.max())
    lg = np.linspace(np.log(lo), np.log(hi), n)
    xs = np.concatenate([np.exp(lg), x])
    ys = np.concatenate([np.exp(np.interp(lg, lx, np.log(other[order]))), other])
    us = None
    if U is not None:
        U = np.asarray(U, float)
        us = np.concatenate([np.exp(np.interp(lg, lx, np.log(U[order]))), U])
    s = np.argsort(xs, kind="stable")
    N, D = (xs[s], ys[s]) if along == "N" else (ys[s], xs[s])
    return xs[s], fit.predict(N, D, None if us is None else us[s])


def loss_vs_plot(table, fits, order, along, path, names=None):
    """Loss vs N per data budget (along="N") or vs D per model size: one panel per form, each
    group's points and its curve through the runs' own (N, D), in one colour."""
    names = names or axis_names(None)
    per = "D" if along == "N" else "N"
    x, other, L = (table[k].to_numpy(float) for k in (along, per, "loss"))
    groups = value_groups(other, per)
    # a design with many distinct D (IsoFLOP, extracted data) draws MAX_CURVES groups spread over
    # the range; the others are left out (and said so): a point without its curve reads as a misfit
    shown = sorted(set(np.linspace(0, len(groups) - 1, min(len(groups), MAX_CURVES)).round().astype(int)))
    colors = dict(zip(shown, plt.cm.viridis(np.linspace(0, 0.9, len(shown)))))
    span = (x.min() / 10**0.1, x.max() * 10**0.1)
    fig, axes = plt.subplots(1, len(order), figsize=(1.5 + 4.2 * len(order), 4.6), sharey=True,
                             squeeze=False, layout="constrained")
    for i, (ax, label) in enumerate(zip(axes[0], order)):
        fit = fits[label]
        U = table["U"].to_numpy(float) if "U" in fit.form.columns else None
        for g in shown:
            m, text = groups[g]
            ax.scatter(x[m], L[m], s=14, color=colors[g], label=text)
            if fit.identifiable:
                xs, ys = group_curve(fit, x[m], other[m], None if U is None else U[m], along, span)
                ax.plot(xs, ys, color=colors[g], lw=1)
        title = label + (" (headline)" if i == 0 else "")
        if not fit.identifiable:
            title += ": not identifiable, points only"
        ax.set(xscale="log", xlabel=names[along], title=title)
        ax.xaxis.set_minor_formatter(NullFormatter())  # under 2 decades they collide
    axes[0, 0].set_ylabel("loss")
    axes[0, -1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    left = sum(int(groups[g][0].sum()) for g in range(len(groups)) if g not in shown)
    more = (f"; {len(shown)} of {len(groups)} {per} groups drawn, spread over the range: the other "
            f"{left} runs are not drawn here" if left else "")
    fig.suptitle(f"Loss vs {along} per {per} (lines: each form's fit through the runs' own N, D{more})", fontsize=9)
    return save(fig, path)


def _rejected_title(rejected) -> str:
    if not rejected:
        return "IsoFLOP curves (★ parabola minima)"
    which = [f"rejected (x, dotted): C = {fmt(r['C'])}, {r['reason']}" for r in sorted(rejected, key=lambda r: r["C"])]
    return "\n".join(["IsoFLOP curves (★ parabola minima)"] + which)


def isoflop_plot(table, iso, path, tol_dex=0.02, names=None):
    """Loss vs N at each compute budget with approach 2's parabola and its minimum; a cell trained
    with several seeds shows ± one standard deviation of their final losses."""
    names = names or axis_names(None)
    N, L, C = (table[k].to_numpy(float) for k in ("N", "loss", "C"))
    seeds = table["n_seeds"].to_numpy(float) if "n_seeds" in table else np.ones(len(N))
    sd = table["loss_std"].to_numpy(float) if "loss_std" in table else np.full(len(N), np.nan)
    labels, drawn = group_budgets(C, tol_dex), np.zeros(len(N), bool)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    budgets = iso["budgets"] + [{**r, "rejected": True} for r in iso["rejected"]]
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(budgets), 1)))
    for b, c in zip(sorted(budgets, key=lambda b: b["C"]), colors):
        g = labels[np.argmin(np.abs(np.log(C) - np.log(b["C"])))]
        m = labels == g
        drawn |= m
        x = np.log(N[m])
        ax.scatter(N[m], L[m], s=12, color=c, marker="x" if b.get("rejected") else "o")
        x0 = x.mean()  # centred, as in isoflop._parabolas: raw log N ~ 69 at N ~ 1e30
        p = np.polyfit(x - x0, L[m], 2)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(np.exp(xs), np.polyval(p, xs - x0), color=c, lw=1, ls=":" if b.get("rejected") else "-",
                label=fmt(b["C"]) + (" (rejected)" if b.get("rejected") else ""))
        if not b.get("rejected"):
            ax.scatter([b["N_opt"]], [b["loss_opt"]], color=c, marker="*", s=90,
                       edgecolor="k", zorder=3)
    rep = drawn & (seeds >= 2) & np.isfinite(sd)
    if rep.any():
        ax.errorbar(N[rep], L[rep], yerr=sd[rep], fmt="none", ecolor="k", elinewidth=0.8, capsize=3, zorder=4,
                    label=f"± 1 sd over seeds ({int(rep.sum())} cells with ≥ 2)")
    ax.set(xscale="log", xlabel=names["N"], ylabel="loss")
    ax.set_title(_rejected_title(iso["rejected"]), fontsize=9)
    ax.legend(fontsize=6, ncol=2, title=f"budget {names['C_short']} (FLOPs)", title_fontsize=6)
    return save(fig, path)


def _observed(ax, results, key):
    """Approach-2 IsoFLOP minima and approach 1's best run per budget."""
    iso = results.get("isoflop")
    if iso and iso["budgets"]:
        ax.scatter([b["C"] for b in iso["budgets"]], [b[key] for b in iso["budgets"]],
                   color="k", marker="*", s=60, label="approach 2 minima", zorder=10)
    env = results["envelope"]["points"]
    ax.scatter([p["C"] for p in env], [p["N" if key == "N_opt" else "D"] for p in env], color="0.45",
               marker="D", s=16, edgecolor="k", lw=0.5, label="approach 1: best run per budget", zorder=9)


def frontier_plot(table, fits, order, results, path):
    """N*(C), D*(C): the headline form with its 95 % interval (parameter + form: it widens with C),
    solid up to the trust horizon (where the N* interval passes a factor of 2), faded beyond; every
    other identifiable form in its own colour and pattern on top; approaches 1 and 2 as points."""
    from harness.fit import frontier

    names = axis_names(results)
    C = table["C"].to_numpy(float)
    c_max = float(np.max(6.0 * table["N"].to_numpy(float) * table["D"].to_numpy(float)))
    # two decades of projection; the allocations are near-straight on log-log, so 16 budgets suffice
    grid = np.logspace(np.log10(C.min()), np.log10(100 * C.max()), 16)
    head = fits[order[0]]
    iv = frontier.allocation_interval(head, frontier.alternatives(fits, order[0], results.get("isoflop"), grid), grid)
    reach = ((results.get("horizon") or {}).get("N_opt") or {}).get("x2")
    c_trust = c_max * 10 ** reach if reach is not None else np.inf
    lines = {lab: allocation(fits[lab], fits[lab].z[None], grid) for lab in order[1:] if fits[lab].identifiable}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    h = form_style(0)
    for ax, key in ((axes[0], "N_opt"), (axes[1], "D_opt")):
        ax.axvspan(C.max(), grid[-1], color="0.93", zorder=0)
        ax.text(np.sqrt(C.max() * grid[-1]), 0.97, "projection", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=7, color="0.4")
        solid = grid <= c_trust
        y = iv["point"][key]
        ax.plot(grid[solid], y[solid], color=h["color"], ls="-", lw=2.2, zorder=h["zorder"],
                label=f"{order[0]} (headline)")
        if (~solid).any():
            k = max(int(solid.sum()) - 1, 0)
            ax.plot(grid[k:], y[k:], color=h["color"], ls="-", lw=2.2, alpha=0.4, zorder=h["zorder"],
                    label=f"headline beyond its trust horizon, faded\n(N* interval > x2, +{reach:.1f} dex)")
        for lab, co in lines.items():
            st = form_style(order.index(lab))
            ax.plot(grid, co[key][0], color=st["color"], ls=st["ls"], lw=1.4, zorder=st["zorder"], label=lab)
        if key in iv["lo"]:
            ax.fill_between(grid, iv["lo"][key], iv["hi"][key], color=h["color"], alpha=0.2, lw=0, zorder=1,
                            label="95 % interval (parameter + form)")
        _observed(ax, results, key)
        ax.set(xscale="log", yscale="log", xlabel=names["C"], ylabel=names[key],
               title=f"Compute-optimal {names[key].split(' ')[0]}(C)")
    # one legend beside both panels (they draw the same series): inside, it hid the smallest budgets
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=6)
    return save(fig, path)


def _held_out(ax, bt, x, tol_dex, few):
    """Each held-out cell's 95 % PI and observed residual at its own x; cells that share an x (two
    sizes of one budget on the C axis) are drawn a few points apart, their data x unchanged."""
    lo, hi = np.log(bt["pi95"] / bt["pred"][:, None]).T
    obs = np.log(bt["loss"] / bt["pred"])
    for k, t in enumerate(dodge(ax, x, tol_dex)):
        ax.vlines([x[k]], [lo[k]], [hi[k]], color="k", lw=1, transform=t, zorder=5,
                  label="held out: 95 % PI of the back-test" if k == 0 else None)
        label = (f"held out N={fmt(bt['N'][k])}, D={fmt(bt['D'][k])}: observed" if few
                 else "held out: observed" if k == 0 else None)
        ax.scatter([x[k]], [obs[k]], color="k", marker="x+1234"[k % 6] if few else "x", transform=t, zorder=6,
                   label=label)
    ax.update_datalim(np.column_stack([x, obs]))  # a shifted transform hides the points from autoscaling


def residuals_plot(table, fits, order, backtest, path, names=None, tol_dex=0.02):
    """Log residuals of every form vs C and vs D/N, with the headline back-test's held-out runs."""
    names = names or axis_names(None)
    N, D, C = (table[k].to_numpy(float) for k in ("N", "D", "C"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, layout="constrained")
    pts = backtest.get("points") or []
    bt = {k: np.array([p[k] for p in pts]) for k in ("N", "D", "C", "loss", "pred", "pi95")}
    panels = ((axes[0], C, names["C"], "C", tol_dex), (axes[1], D / N, names["D/N"], "D/N", 0.01))
    for ax, x, name, held, tol in panels:
        for i, lab in enumerate(order):
            st = form_style(i)
            ax.scatter(x, fits[lab].residuals, s=10, alpha=0.7, color=st["color"], marker=st["marker"],
                       label=lab + (" (headline)" if i == 0 else ""))
        ax.axhline(0, color="k", lw=0.8)
        if pts:
            _held_out(ax, bt, bt["C"] if held == "C" else bt["D"] / bt["N"], tol, few=len(pts) <= 6)
        ax.set(xscale="log", xlabel=name)
        ax.autoscale_view()
    axes[0].set_ylabel("log L - log L_hat")
    axes[0].legend(fontsize=6)
    fig.suptitle("Residuals of every form (full fit) and the headline back-test (held-out cells that "
                 "share a budget are set a few points apart)", fontsize=9)
    return save(fig, path)


def rollout_plot(results, order, path):
    """|relative error| of every rollout prediction vs how far beyond the fitted compute it
    reaches, per form, each form set a few points sideways (its data x exact). None (nothing
    written) when no form has predictions."""
    preds = {lab: results["forms"][lab].get("rollout", {}).get("predictions") or [] for lab in order}
    if not any(preds.values()):
        return None
    names = axis_names(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    for i, ((lab, ps), t) in enumerate(zip(preds.items(), spread(ax, len(preds)))):
        if ps:
            st = form_style(i)
            err = np.abs([p["rel_error"] for p in ps])
            x = [p["projection_dex"] for p in ps]
            ax.scatter(x, err, s=14, alpha=0.7, color=st["color"], marker=st["marker"], transform=t,
                       label=f"{lab} (mean {err.mean():.2%})")
            ax.update_datalim(np.column_stack([x, err]))  # the shifted transform hides them from autoscaling
    ax.autoscale_view()
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(xlabel=f"projection: log10(C / largest fitted C)\n{names['C']}", ylabel="|relative error| of predicted loss",
           title="Rollout: fit the cheapest k compute groups, predict dearer runs")
    ax.legend(fontsize=7, title="forms set a few points apart to stay visible", title_fontsize=7)
    return save(fig, path)


def repetition_plot(rep: dict, fit, path, names=None):
    """Value of a repeated token vs epochs: measured per run, the datacon fit (bootstrap band), and
    Muennighoff et al.'s R_D* = 15.4."""
    from harness.fit.repetition import value_of_repeats

    e = np.geomspace(1.05, max(rep["max_epochs"] * 1.5, 20), 100)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if fit.samples is not None and len(fit.samples):
        band = value_of_repeats(e[None], fit.samples[:, fit.form.params.index("R_D"), None])
        ax.fill_between(e, *np.nanpercentile(band, [2.5, 97.5], axis=0), color="C0", alpha=0.2, lw=0,
                        label="95 % bootstrap band")
    ax.plot(e, value_of_repeats(e, rep["R_D"]), color="C0", label=f"this fit, R_D* = {rep['R_D']:.3g}")
    ax.plot(e, value_of_repeats(e, rep["muennighoff_R_D"]), "k--", lw=1,
            label=f"Muennighoff et al. 2023, R_D* = {rep['muennighoff_R_D']}")
    names = names or axis_names(None)
    sizes = sorted({r["N"] for r in rep["runs"]})
    for i, n in enumerate(sizes):
        pts = [r for r in rep["runs"] if r["N"] == n and np.isfinite(r["value_measured"])]
        ax.plot([r["epochs"] for r in pts], [r["value_measured"] for r in pts], MARKERS[i % len(MARKERS)],
                color=f"C{i + 1}", label=f"measured, N={fmt(n)} ({names['params']})")
    ax.set_xscale("log")
    ax.set_ylim(-0.1, 1.3)
    ax.axhline(1, color="grey", lw=0.5)
    ax.set_xlabel("epochs over the unique training tokens (D / U)")
    ax.set_ylabel("value of a repeated token (fresh = 1)")
    ax.legend(fontsize=7)
    return save(fig, path)


def make_all(table, fits, results, out: Path, tol_dex=0.02) -> dict:
    """Write every figure the data supports; returns {file name: its Figure} (closed, for read-back).

    fits: {label: fit.Fit}; results["model_choice"]["headline"] names the form drawn first."""
    out = Path(out)
    head = results["model_choice"]["headline"]
    order = [head] + [lab for lab in fits if lab != head]
    axn = axis_names(results)
    figs = {}
    if results.get("isoflop") and results["isoflop"]["budgets"]:
        figs["isoflop.png"] = isoflop_plot(table, results["isoflop"], out / "isoflop.png", tol_dex, axn)
    for along in ("N", "D"):
        figs[f"loss_vs_{along}.png"] = loss_vs_plot(table, fits, order, along, out / f"loss_vs_{along}.png", axn)
    if fits[head].identifiable:  # an allocation from an unidentifiable fit would be drawn nonsense
        figs["frontier.png"] = frontier_plot(table, fits, order, results, out / "frontier.png")
    figs["residuals.png"] = residuals_plot(table, fits, order, results["backtest"], out / "residuals.png", axn, tol_dex)
    if (fig := rollout_plot(results, order, out / "rollout.png")) is not None:
        figs["rollout.png"] = fig
    if results.get("groups"):
        figs["groups.png"] = groups_plot(table, results["groups"], out / "groups.png", axn)
    if results.get("repetition"):
        datacon = next(f for f in fits.values() if f.form.name == "datacon")
        figs["repetition.png"] = repetition_plot(results["repetition"], datacon, out / "repetition.png", axn)
    return figs
