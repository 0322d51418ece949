"""report.md sections on how far the law can be trusted: the interval's parts, the trust horizon,
and where the forms part ways (markdown only, no fitting)."""
from __future__ import annotations

from harness.report.fmt import g as _g


def _dex(x):
    return "beyond +3 dex" if x is None else f"+{x:.2f} dex"


def horizon_md(results: dict) -> list[str]:
    """The interval's form part, the trust horizon and the budgets where the forms disagree."""
    hz, co = results.get("horizon"), results.get("compute_optimal")
    lines = ["## How far the law holds", ""]
    fe = (co or {}).get("form_error")
    if fe:
        axes = ", ".join(f"{n} along {a}" for a, n in (fe.get("by_axis") or {}).items())
        lines += [f"Form error of the headline, measured on its own back-tests ({fe['n_predictions']} predictions "
                  f"from {fe['n_splits']} splits{': ' + axes if axes else ''}): sd {fe['per_dex']:.2%} of the loss "
                  "per dex outside the fitted design (the largest of a query's excesses beyond the fitted N range, "
                  "the largest D and the largest C). Every interval below adds it to the parameter (bootstrap) and "
                  "noise (residual) parts; N\\* and D\\* add instead the spread of the other laws' N\\*(C) "
                  "about the headline's.", ""]
    else:
        lines += ["The back-tests made no prediction (too few compute groups), so **the form error is not measured** "
                  "and the intervals below hold parameter and noise only: they assume the form is right.", ""]
    if hz:
        loss, nopt = hz.get("loss", {}), hz.get("N_opt", {})
        lines += ["Trust horizon: the distance beyond the largest fitted C "
                  f"({_g(hz['c_max'], '.3g')} FLOPs) at which the 95 % interval passes each width.", "",
                  "| L\\* ±1 % | L\\* ±2 % | L\\* ±5 % | N\\* ×1.5 | N\\* ×2 |", "|---|---|---|---|---|",
                  "| " + " | ".join(_dex(loss.get(k)) for k in ("1%", "2%", "5%")) + " | "
                  + " | ".join(_dex(nopt.get(k)) for k in ("x1.5", "x2")) + " |", ""]
        at = [(f"L\\* ±{w}", v) for w, v in hz.get("in_N_and_D", {}).get("loss", {}).items() if v]
        at += [(f"N\\* {f.replace('x', '×')}", v) for f, v in hz.get("in_N_and_D", {}).get("N_opt", {}).items() if v]
        if at:
            lines += ["In N and tokens per parameter, the compute-optimal model at each horizon: "
                      + "; ".join(f"{lab}: N\\* = {_g(v['N_opt'], '.3g')} at {v['tokens_per_param']:.1f} tokens/param"
                                  for lab, v in at) + ".", ""]
    if co and co.get("budgets") and co["budgets"][0].get("parts"):
        lines += ["Parts of each 95 % interval (half-widths in log, ≈ relative):", "",
                  "| C | beyond fitted C | N\\*: parameter | N\\*: form | L\\*: parameter | L\\*: noise | L\\*: form |",
                  "|---|---|---|---|---|---|---|"]
        for b in co["budgets"]:
            p = b["parts"]
            n, ll = p.get("N_opt", {}), p.get("loss_opt", {})
            cols = [n.get("parameter"), n.get("form"), ll.get("parameter"), ll.get("noise"), ll.get("form")]
            lines.append(f"| {_g(b['C'], '.3g')} | +{b['projection_dex']:.1f} dex | "
                         + " | ".join(_g(v, ".4f") for v in cols) + " |")
        lines.append("")
    for row in results.get("disagreement") or []:
        if row["disagree"]:
            forms = "; ".join(f"{lab} {e['predicted']:.4f} [{e['pi95'][0]:.4f}, {e['pi95'][1]:.4f}]"
                              for lab, e in row["forms"].items())
            lines.append(f"- **The forms disagree at C = {_g(row['C'], '.3g')} (+{row['projection_dex']:.1f} dex)** "
                         f"beyond their intervals ({', '.join(row['disagree'])} vs the headline): {forms}. "
                         "Predictions there carry an interval widened to cover them.")
    return lines + [""]
