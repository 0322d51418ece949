"""Figures for the fit report (matplotlib Agg; one function per PNG).

Every fitted form (fit.Fit) is drawn, the headline form (analysis.model_choice) first; colours
follow that order in every figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a training box or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter, PercentFormatter  # noqa: E402

from harness.fit.allocate import allocation  # noqa: E402
from harness.fit.isoflop import group_budgets  # noqa: E402

GROUP_TOL_DEX = 0.01  # runs whose D (or N) differ by < ~2 % (rounding to whole steps) are one group
MARKERS = "o^sDvP*X"


MAX_CURVES = 10  # groups drawn with a curve and a legend entry per panel


def _fmt(v: float) -> str:
    m, e = f"{v:.1e}".split("e")
    return f"{m}e{int(e)}"  # 3.0e6, not 3.0e+06


def value_groups(values, name: str, tol_dex=GROUP_TOL_DEX) -> list[tuple[np.ndarray, str]]:
    """(mask, legend label) per group of nearly equal values, smallest first. The label is the
    group's own value, or its range where rounding made the runs differ ("D = 2.9e6–3.0e6")."""
    values = np.asarray(values, float)
    labels = group_budgets(values, tol_dex)  # numbered in ascending order of value
    out = []
    for g in range(labels.max() + 1):
        m = labels == g
        lo, hi = _fmt(values[m].min()), _fmt(values[m].max())
        out.append((m, f"{name} = {lo}" if lo == hi else f"{name} = {lo}–{hi}"))
    return out


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


def _save(fig, path):
    fig.savefig(path, dpi=90)
    plt.close(fig)


def loss_vs_plot(table, fits, order, along, path):
    """Loss vs N per data budget (along="N") or vs D per model size: one panel per form, each
    group's curve through its runs' own (N, D)."""
    per = "D" if along == "N" else "N"
    x, other, L = (table[k].to_numpy(float) for k in (along, per, "loss"))
    groups = value_groups(other, per)
    # a design with many distinct D (IsoFLOP, extracted data) draws curves for MAX_CURVES groups
    # spread over the range, the other runs as grey points: readable, and cheap to render
    shown = set(np.linspace(0, len(groups) - 1, min(len(groups), MAX_CURVES)).round().astype(int))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(shown)))
    span = (x.min() / 10**0.1, x.max() * 10**0.1)
    fig, axes = plt.subplots(1, len(order), figsize=(1.5 + 4.2 * len(order), 4.6), sharey=True,
                             squeeze=False, layout="constrained")
    for i, (ax, label) in enumerate(zip(axes[0], order)):
        fit = fits[label]
        U = table["U"].to_numpy(float) if "U" in fit.form.columns else None
        palette = iter(colors)
        for g, (m, text) in enumerate(groups):
            if g not in shown:
                ax.scatter(x[m], L[m], s=6, color="0.75")
                continue
            c = next(palette)
            ax.scatter(x[m], L[m], s=14, color=c, label=text)
            if fit.identifiable:
                xs, ys = group_curve(fit, x[m], other[m], None if U is None else U[m], along, span)
                ax.plot(xs, ys, color=c, lw=1)
        title = label + (" (headline)" if i == 0 else "")
        if not fit.identifiable:
            title += ": not identifiable, points only"
        ax.set(xscale="log", xlabel=along, title=title)
        ax.xaxis.set_minor_formatter(NullFormatter())  # under 2 decades they collide
    axes[0, 0].set_ylabel("loss")
    axes[0, -1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    more = f"; curves for {len(shown)} of {len(groups)} {per} groups, the rest grey" if len(shown) < len(groups) else ""
    fig.suptitle(f"Loss vs {along} per {per} (lines: each form's fit through the runs' own N, D{more})", fontsize=9)
    _save(fig, path)


def isoflop_plot(table, iso, path, tol_dex=0.02):
    N, L, C = (table[k].to_numpy(float) for k in ("N", "loss", "C"))
    labels = group_budgets(C, tol_dex)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    budgets = iso["budgets"] + [{**r, "rejected": True} for r in iso["rejected"]]
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(budgets), 1)))
    for b, c in zip(sorted(budgets, key=lambda b: b["C"]), colors):
        g = labels[np.argmin(np.abs(np.log(C) - np.log(b["C"])))]
        m = labels == g
        x = np.log(N[m])
        ax.scatter(N[m], L[m], s=12, color=c, marker="x" if b.get("rejected") else "o")
        x0 = x.mean()  # centred, as in isoflop._parabolas: raw log N ~ 69 at N ~ 1e30
        p = np.polyfit(x - x0, L[m], 2)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(np.exp(xs), np.polyval(p, xs - x0), color=c, lw=1,
                ls=":" if b.get("rejected") else "-", label=f"C={b['C']:.2g}")
        if not b.get("rejected"):
            ax.scatter([b["N_opt"]], [b["loss_opt"]], color=c, marker="*", s=90,
                       edgecolor="k", zorder=3)
    ax.set(xscale="log", xlabel="N", ylabel="loss",
           title="IsoFLOP curves (★ minima; x, dotted: rejected budgets)")
    ax.legend(fontsize=6, ncol=2)
    _save(fig, path)


def _observed(ax, results, key):
    """Approach-2 IsoFLOP minima and the approach-1 envelope runs."""
    iso = results.get("isoflop")
    if iso and iso["budgets"]:
        ax.scatter([b["C"] for b in iso["budgets"]], [b[key] for b in iso["budgets"]],
                   color="k", marker="*", s=60, label="approach 2 minima", zorder=3)
    env = results["envelope"]["points"]
    ax.scatter([p["C"] for p in env], [p["N" if key == "N_opt" else "D"] for p in env],
               color="0.4", s=10, alpha=0.6, label="approach 1 envelope")


def frontier_plot(table, fits, order, results, path):
    """N*(C), D*(C): the headline form with its 95 % interval (parameter + form: it widens with C),
    drawn solid up to the trust horizon (where the N* interval passes a factor of 2) and dashed
    beyond; the other identifiable forms as thin lines, approaches 1 and 2, published laws."""
    from harness.fit import frontier

    C = table["C"].to_numpy(float)
    c_max = float(np.max(6.0 * table["N"].to_numpy(float) * table["D"].to_numpy(float)))
    # two decades of projection; the allocations are near-straight on log-log, so 16 budgets suffice
    grid = np.logspace(np.log10(C.min()), np.log10(100 * C.max()), 16)
    head = fits[order[0]]
    iv = frontier.allocation_interval(head, frontier.alternatives(fits, order[0], results.get("isoflop"), grid), grid)
    reach = ((results.get("horizon") or {}).get("N_opt") or {}).get("x2")
    c_trust = c_max * 10 ** reach if reach is not None else np.inf
    lines = {lab: allocation(fits[lab], fits[lab].z[None], grid) for lab in order[1:] if fits[lab].identifiable}
    conv = results.get("provenance", {}).get("conventions", {})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    for ax, key, name in ((axes[0], "N_opt", "N*"), (axes[1], "D_opt", "D*")):
        ax.axvspan(C.max(), grid[-1], color="0.93", zorder=0)
        ax.text(np.sqrt(C.max() * grid[-1]), 0.97, "projection", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=7, color="0.4")
        solid = grid <= c_trust
        y = iv["point"][key]
        ax.plot(grid[solid], y[solid], color="C0", lw=1.8, label=f"{order[0]} (headline)")
        if (~solid).any():
            k = max(int(solid.sum()) - 1, 0)
            ax.plot(grid[k:], y[k:], color="C0", lw=1.8, ls="--",
                    label=f"headline beyond its trust horizon (N* interval > x2, +{reach:.1f} dex)")
        for lab, co in lines.items():
            ax.plot(grid, co[key][0], color=f"C{order.index(lab)}", lw=0.9, label=lab)
        if key in iv["lo"]:
            ax.fill_between(grid, iv["lo"][key], iv["hi"][key], color="C0", alpha=0.2,
                            label="95 % interval (parameter + form)")
        _observed(ax, results, key)
        ax.set(xscale="log", yscale="log", xlabel=f"C (FLOPs, {conv.get('C', '6 N D')})",
               ylabel=f"{name} ({conv.get('N', '')} parameters)" if key == "N_opt" else f"{name} (tokens)",
               title=f"Compute-optimal {name}(C)")
        ax.legend(fontsize=6)
    _save(fig, path)


def residuals_plot(table, fits, order, backtest, path):
    """Log residuals of every form vs C and vs D/N, with the headline back-test's held-out runs."""
    N, D, C = (table[k].to_numpy(float) for k in ("N", "D", "C"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, layout="constrained")
    pts = backtest.get("points") or []
    bt = {k: np.array([p[k] for p in pts]) for k in ("N", "D", "C", "loss", "pred", "pi95")}
    for ax, x, name, held in ((axes[0], C, "C (FLOPs)", "C"), (axes[1], D / N, "D/N (tokens per param)", "D/N")):
        for i, lab in enumerate(order):
            ax.scatter(x, fits[lab].residuals, s=10, alpha=0.7, color=f"C{i}", marker=MARKERS[i % len(MARKERS)],
                       label=lab + (" (headline)" if i == 0 else ""))
        ax.axhline(0, color="k", lw=0.8)
        if pts:
            xb = bt["C"] if held == "C" else bt["D"] / bt["N"]
            lo, hi = np.log(bt["pi95"] / bt["pred"][:, None]).T
            ax.vlines(xb, lo, hi, color="k", lw=1, label="held out: 95 % PI of the back-test")
            ax.scatter(xb, np.log(bt["loss"] / bt["pred"]), color="k", marker="x", zorder=3,
                       label=f"held out: observed ({backtest['form']} fit on cheaper runs)")
        ax.set(xscale="log", xlabel=name)
    axes[0].set_ylabel("log L - log L_hat")
    axes[0].legend(fontsize=6)
    fig.suptitle("Residuals of every form (full fit) and the headline back-test", fontsize=9)
    _save(fig, path)


def rollout_plot(results, order, path) -> bool:
    """|relative error| of every rollout prediction vs how far beyond the fitted compute it
    reaches, per form. False (nothing written) when no form has predictions."""
    preds = {lab: results["forms"][lab].get("rollout", {}).get("predictions") or [] for lab in order}
    if not any(preds.values()):
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    for i, (lab, ps) in enumerate(preds.items()):
        if ps:
            err = np.abs([p["rel_error"] for p in ps])
            ax.scatter([p["projection_dex"] for p in ps], err, s=14, alpha=0.7, color=f"C{i}",
                       marker=MARKERS[i % len(MARKERS)], label=f"{lab} (mean {err.mean():.2%})")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(xlabel="projection: log10(C / largest fitted C)", ylabel="|relative error| of predicted loss",
           title="Rollout: fit the cheapest k compute groups, predict dearer runs")
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def repetition_plot(rep: dict, fit, path):
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
    sizes = sorted({r["N"] for r in rep["runs"]})
    for i, n in enumerate(sizes):
        pts = [r for r in rep["runs"] if r["N"] == n and np.isfinite(r["value_measured"])]
        ax.plot([r["epochs"] for r in pts], [r["value_measured"] for r in pts], MARKERS[i % len(MARKERS)],
                color=f"C{i + 1}", label=f"measured, N={_fmt(n)}")
    ax.set_xscale("log")
    ax.set_ylim(-0.1, 1.3)
    ax.axhline(1, color="grey", lw=0.5)
    ax.set_xlabel("epochs over the unique training tokens (D / U)")
    ax.set_ylabel("value of a repeated token (fresh = 1)")
    ax.legend(fontsize=7)
    _save(fig, path)


def make_all(table, fits, results, out: Path, tol_dex=0.02) -> list[str]:
    """Write every figure the data supports; returns their file names.

    fits: {label: fit.Fit}; results["model_choice"]["headline"] names the form drawn first."""
    out = Path(out)
    head = results["model_choice"]["headline"]
    order = [head] + [lab for lab in fits if lab != head]
    names = []
    if results.get("isoflop") and results["isoflop"]["budgets"]:
        isoflop_plot(table, results["isoflop"], out / "isoflop.png", tol_dex)
        names.append("isoflop.png")
    loss_vs_plot(table, fits, order, "N", out / "loss_vs_N.png")
    loss_vs_plot(table, fits, order, "D", out / "loss_vs_D.png")
    names += ["loss_vs_N.png", "loss_vs_D.png"]
    if fits[head].identifiable:  # an allocation from an unidentifiable fit would be drawn nonsense
        frontier_plot(table, fits, order, results, out / "frontier.png")
        names.append("frontier.png")
    residuals_plot(table, fits, order, results["backtest"], out / "residuals.png")
    names.append("residuals.png")
    if rollout_plot(results, order, out / "rollout.png"):
        names.append("rollout.png")
    if results.get("repetition"):
        datacon = next(f for f in fits.values() if f.form.name == "datacon")
        repetition_plot(results["repetition"], datacon, out / "repetition.png")
        names.append("repetition.png")
    return names
