"""groups.png (harness-fit group_by=): each group's runs and its law's compute-optimal loss L*(C),
with each group's compute multiplier against the reference group drawn as an arrow along C: from
the group's L* at C_ref to the compute at which the reference's law reaches the same loss."""
from __future__ import annotations

import numpy as np

from harness.report.figkit import MARKERS, fmt, plt, save


def groups_plot(table, gr: dict, path, names: dict):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    col, c_ref = gr["column"], gr["C_ref"]
    colour = {g: f"C{i}" for i, g in enumerate(gr["laws"])}
    for i, (g, law) in enumerate(gr["laws"].items()):
        part = table[table[col].astype(str) == g]
        ax.scatter(part["C"], part["loss"], s=16, color=colour[g], marker=MARKERS[i % len(MARKERS)], alpha=0.7,
                   label=f"{g}: runs ({len(part)})")
        C, L = np.asarray(law["frontier"]["C"]), np.asarray(law["frontier"]["loss_opt"])
        c_max = part["C"].max()
        ax.plot(C[C <= c_max], L[C <= c_max], color=colour[g], lw=1.8, label=f"{g}: L*(C) of its law")
        beyond = C >= C[C <= c_max].max(initial=C[0])  # from the last budget inside the data on
        ax.plot(C[beyond], L[beyond], color=colour[g], lw=1.2, ls="--")
    for g, m in gr.get("multipliers", {}).items():
        at, y = m["at_C_ref"], gr["laws"][g]["loss_opt_at_C_ref"]
        ax.annotate("", xy=(at["C"] * at["multiplier"], y), xytext=(at["C"], y),
                    arrowprops={"arrowstyle": "->", "color": colour[g], "lw": 1.4})
        ax.text(at["C"] * np.sqrt(at["multiplier"]), y, f"{at['multiplier']:.2g}×", color=colour[g], ha="center",
                va="bottom", fontsize=9)
    ax.axvline(c_ref, color="0.6", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel(names["C"])
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title(f"A law per {col} ({gr['form']}); dashed: beyond each group's data.\nArrows: compute multiplier "
                 f"against {gr.get('ref', 'the first group')} at C = {fmt(c_ref)}", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)
