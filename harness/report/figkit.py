"""Drawing rules every figure shares (matplotlib Agg): axis names that state the fit's conventions,
one style per fitted form, sideways dodging of points that share an x, and saving.

A figure function returns its Figure (closed, but its artists intact), so tests read back what was
drawn rather than only that a PNG exists.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on a training box or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from harness.fit.isoflop import group_budgets  # noqa: E402

MARKERS = "o^sDvP*X"
# One line style per form in drawing order: the headline solid underneath, every later form patterned
# and drawn on top of it, so two forms that agree still show both colours.
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 2)))
GROUP_TOL_DEX = 0.01  # runs whose D (or N) differ by < ~2 % (rounding to whole steps) are one group
DODGE_PT = 6.0  # points between series that share an x: wider than a marker (s=14 pt^2 is ~4 pt across)
_PARAMS = {"nonembed": "non-embedding", "total": "total", "active": "active non-embedding"}


def fmt(v: float) -> str:
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
        lo, hi = fmt(values[m].min()), fmt(values[m].max())
        out.append((m, f"{name} = {lo}" if lo == hi else f"{name} = {lo}–{hi}"))
    return out


def axis_names(results: dict | None) -> dict:
    """Axis labels naming the conventions the fit used (fit.json's provenance.conventions): which N
    (total or non-embedding parameters), and C = 6 N D FLOPs with that N. A results dict without
    provenance (a direct analyse() call) says the convention was not recorded rather than guess."""
    conv = ((results or {}).get("provenance") or {}).get("conventions") or {}
    which = _PARAMS.get(conv.get("N"))
    params = f"{which} params" if which else "params, convention not recorded"
    return {"params": params, "N": f"N ({params})", "N_opt": f"N* ({params})", "D": "D (training tokens)",
            "D_opt": "D* (training tokens)",
            "C": f"C = 6·N·D (FLOPs, N = {params})" if which else "C (FLOPs, convention not recorded)",
            "C_short": "C = 6·N·D" if which else "C",
            "D/N": f"D/N (training tokens per {which} parameter)" if which else
                   "D/N (training tokens per parameter, convention not recorded)"}


def form_style(i: int) -> dict:
    """Colour, line style and marker of the i-th form in drawing order (0 = headline); zorder rises
    with i so a later, patterned line lies on top of an earlier one it overlaps."""
    return {"color": f"C{i}", "ls": LINESTYLES[i % len(LINESTYLES)], "marker": MARKERS[i % len(MARKERS)],
            "zorder": 3 + i}


def shifted(ax, dx_pt: float):
    """ax's data transform moved dx_pt points sideways: the artist keeps its exact data x (what a
    test or a reader of the data sees), only its drawing moves."""
    return ax.transData + ScaledTranslation(dx_pt / 72.0, 0.0, ax.figure.dpi_scale_trans)


def dodge(ax, x, tol_dex=GROUP_TOL_DEX, step_pt=DODGE_PT) -> list:
    """A transform per marker at x (> 0): markers within tol_dex of each other spread symmetrically
    step_pt apart in their order; a lone x stays put."""
    x = np.asarray(x, float)
    dx = np.zeros(len(x))
    labels = group_budgets(x, tol_dex) if len(x) else dx.astype(int)
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        dx[idx] = (np.arange(len(idx)) - (len(idx) - 1) / 2) * step_pt
    return [shifted(ax, d) for d in dx]


def spread(ax, n: int, step_pt=DODGE_PT) -> list:
    """A transform per series for n series drawn at the same x values, centred on zero."""
    return [shifted(ax, (i - (n - 1) / 2) * step_pt) for i in range(n)]


def save(fig, path):
    """Write the PNG and release pyplot's hold on the figure; returns it for read-back."""
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return fig
