"""Figures for the fit report (matplotlib Agg; one function per PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a training box or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.fit import PARAMS, compute_optimal, predict  # noqa: E402
from harness.isoflop import group_budgets  # noqa: E402
from harness.laws import PUBLISHED  # noqa: E402


def _levels(x, max_levels=6):
    """Distinct values of x, or geometric bin centres when there are too many to draw."""
    u = np.unique(x)
    if len(u) <= max_levels:
        return u, np.searchsorted(u, x)
    edges = np.logspace(np.log10(u.min()), np.log10(u.max()), max_levels + 1)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max_levels - 1)
    return np.sqrt(edges[:-1] * edges[1:]), idx


def _loss_vs(table, params, x_name, per_name, path):
    x, per, L = (table[k].to_numpy(float) for k in (x_name, per_name, "loss"))
    levels, idx = _levels(per)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(levels)))
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    grid = np.logspace(np.log10(x.min()) - 0.1, np.log10(x.max()) + 0.1, 100)
    for j, (lev, c) in enumerate(zip(levels, colors)):
        m = idx == j
        if not m.any():
            continue
        ax.scatter(x[m], L[m], s=14, color=c, label=f"{per_name} ≈ {lev:.2g}")
        N, D = (grid, lev) if x_name == "N" else (lev, grid)
        ax.plot(grid, predict(params, N, D), color=c, lw=1)
    ax.set(xscale="log", xlabel=x_name, ylabel="loss",
           title=f"Loss vs {x_name} per {per_name} (lines: approach-3 fit)")
    ax.legend(fontsize=7)
    _save(fig, path)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def isoflop_plot(table, iso, path, tol_dex=0.02):
    N, L, C = (table[k].to_numpy(float) for k in ("N", "loss", "C"))
    labels = group_budgets(C, tol_dex)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
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


def frontier_plot(table, fit, results, path):
    """N*(C) and D*(C): approach 3 with 95 % bootstrap band, approach 1/2 points, published."""
    C = table["C"].to_numpy(float)
    grid = np.logspace(np.log10(C.min()), np.log10(max(C.max(), 1e2 * C.max())), 80)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    opt = compute_optimal(**fit.params, C=grid)
    band = None
    if fit.samples is not None and len(fit.samples):
        cols = {k: fit.samples[:, j][:, None] for j, k in enumerate(PARAMS)}
        band = compute_optimal(**cols, C=grid[None, :])
    for ax, key, name in ((axes[0], "N_opt", "N*"), (axes[1], "D_opt", "D*")):
        ax.plot(grid, opt[key], color="C0", label="approach 3 (this fit)")
        if band is not None:
            lo, hi = np.nanpercentile(band[key], [2.5, 97.5], axis=0)
            ax.fill_between(grid, lo, hi, color="C0", alpha=0.25, label="95 % bootstrap")
        iso = results.get("isoflop")
        if iso and iso["budgets"]:
            ax.scatter([b["C"] for b in iso["budgets"]], [b[key] for b in iso["budgets"]],
                       color="C3", marker="*", s=60, label="approach 2 minima", zorder=3)
        env = results["envelope"]["points"]
        ax.scatter([p["C"] for p in env], [p["N" if key == "N_opt" else "D"] for p in env],
                   color="C2", s=10, alpha=0.6, label="approach 1 envelope")
        for law_key, ls in (("hoffmann2022", "--"), ("epoch2024", ":")):
            law = PUBLISHED[law_key]
            co = compute_optimal(*(getattr(law, k) for k in PARAMS), C=grid)
            ax.plot(grid, co[key], color="gray", ls=ls, lw=1, label=law.name)
        ax.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel=name,
               title=f"Compute-optimal {name}(C)")
        ax.legend(fontsize=6)
    _save(fig, path)


def residuals_plot(table, fit, backtest, path):
    N, D, C, L = (table[k].to_numpy(float) for k in ("N", "D", "C", "loss"))
    r = np.log(L) - np.log(fit.predict(N, D))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, x, name in ((axes[0], C, "C (FLOPs)"), (axes[1], D / N, "D/N (tokens per param)")):
        ax.scatter(x, r, s=10, alpha=0.7, label="all runs (full fit)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xscale="log", xlabel=name, ylabel="log L - log L_hat")
    pts = backtest.get("points", [])
    if pts:
        axes[0].scatter([p["C"] for p in pts], [np.log(p["loss"] / p["pred"]) for p in pts],
                        color="C3", marker="x", label="held out (back-test fit)")
    axes[0].legend(fontsize=7)
    axes[0].set_title("Residuals of the approach-3 fit")
    _save(fig, path)


def make_all(table, fit, results, out: Path, tol_dex=0.02) -> list[str]:
    """Write every figure the data supports; returns their file names."""
    names = []
    if results.get("isoflop") and results["isoflop"]["budgets"]:
        isoflop_plot(table, results["isoflop"], out / "isoflop.png", tol_dex)
        names.append("isoflop.png")
    if not fit.identifiable:
        return names  # curves from an unidentifiable fit would be drawn nonsense
    _loss_vs(table, fit.params, "N", "D", out / "loss_vs_N.png")
    _loss_vs(table, fit.params, "D", "N", out / "loss_vs_D.png")
    names += ["loss_vs_N.png", "loss_vs_D.png"]
    frontier_plot(table, fit, results, out / "frontier.png")
    residuals_plot(table, fit, results["backtest"], out / "residuals.png")
    return names + ["frontier.png", "residuals.png"]
