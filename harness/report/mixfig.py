"""mixing.png (harness-study with a mixing block): each domain's held-out loss against the first domain's
share, one panel per domain, at every size the mixing sweep trained; the law fitted at each size (the
prediction's own at its model, the others fitted afterwards the same way), the held-out and the predicted
best mixture as measured, with their prediction intervals."""
from __future__ import annotations

import numpy as np

from harness.report.figkit import MARKERS, plt, save


def mixing_plot(runs, made: dict, laws_by_size: dict, path):
    """runs: the mixing sweep's finished runs with their `check` column (mixing_study.by_size); laws_by_size:
    {model: fit.mixing.MixingLaw}; made: mixing_prediction.json."""
    domains, first = made["domains"], made["domains"][0]
    fig, axes = plt.subplots(1, len(domains), figsize=(5.2 * len(domains), 4.3))
    grid = np.linspace(0, 1, 201)
    is_check = runs["check"]  # mixing_study.by_size: the runs the check trained
    for ax, d in zip(np.atleast_1d(axes), domains):
        for i, (model, law) in enumerate(sorted(laws_by_size.items())):
            part = runs[(runs["model"] == model) & ~is_check]
            ax.scatter(part[f"mix/{first}/share"], part[f"val/{d}/loss"], s=18, color=f"C{i}",
                       marker=MARKERS[i % len(MARKERS)], label=f"{model}: runs")
            trained = law.shares[law.shares[:, domains.index(d)] > 0, 0]  # the mixtures d's law was fitted on
            lo, hi = trained.min(), trained.max()
            inside = (grid >= lo) & (grid <= hi)
            curve = np.array([law.predict([a, 1 - a])[domains.index(d)] for a in grid])
            ax.plot(grid[inside], curve[inside], color=f"C{i}", lw=1.5,
                    label=f"{model}: law" + (" (the prediction's)" if model == made["model"] else ""))
        for part, colour, name in (("held_out", "k", "held-out mixture"), ("optimum", "C3", "predicted best")):
            p = made[part]["domains"][d]
            a = made[part]["shares"][first]
            err = [[p["predicted"] - p["pi95"][0]], [p["pi95"][1] - p["predicted"]]]
            ax.errorbar([a], [p["predicted"]], yerr=err, fmt="none", ecolor=colour, capsize=4, lw=1.2)
            got = runs[is_check & np.isclose(runs[f"mix/{first}/share"], a, atol=5e-4)]
            ax.scatter([a] * len(got), got[f"val/{d}/loss"], s=60, marker="*", color=colour,
                       label=f"{name}: measured ({made['model']}), 95 % PI")
        ax.set_xlabel(f"share of {first} in the training mixture")
        ax.set_ylabel(f"held-out loss on {d} (nats/token)")
        ax.set_title(f"{d}", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(f"Mixing law {made['form']}", fontsize=9)
    fig.tight_layout()
    return save(fig, path)
