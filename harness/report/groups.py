"""report.md's section on groups side by side (harness-fit group_by=): each group's law, its
compute multiplier against the reference group, and the differences with their bootstrap test."""
from __future__ import annotations

from harness.fit.groups import SPAN_DEX
from harness.report.fmt import ci as _ci
from harness.report.fmt import g as _g


def _multipliers_md(gr: dict) -> list[str]:
    """Each group's compute multiplier against the reference group, at C_ref and projected +1 dex."""
    if not gr.get("multipliers"):
        return []

    def cell(m):
        ci = f" [{_g(m['ci95'][0], '.3g')}, {_g(m['ci95'][1], '.3g')}]" if "ci95" in m else ""
        cens = f", {m['censored']:.0%} of draws beyond 10^±2" if m.get("censored") else ""
        top, bottom = 10 ** SPAN_DEX * 0.999, 10 ** -SPAN_DEX * 1.001  # a point at a search bound: beyond it
        bound = "≥ " if m["multiplier"] >= top else "≤ " if m["multiplier"] <= bottom else ""
        return f"{bound}{_g(m['multiplier'], '.3g')}×{ci}{cens}"

    ref, c = gr.get("ref", "the first group"), gr["C_ref"]
    lines = ["", f"Compute multiplier against {ref}: the factor of compute at which {ref}'s law reaches the "
             f"group's compute-optimal loss (> 1: the group needs less compute for that loss; 95 % CI from "
             "independent bootstrap draws of the two laws):", "",
             f"| group | at C = {_g(c, '.3g')} (largest fitted) | at C = {_g(10 * c, '.3g')} (projected +1 dex) |",
             "|---|---|---|"]
    for g, m in gr["multipliers"].items():
        lines.append(f"| {g} | {cell(m['at_C_ref'])} | {cell(m['at_10_C_ref'])} |")
    return lines


def groups_md(gr: dict | None) -> list[str]:
    if not gr:
        return []
    names = list(next(iter(gr["laws"].values()))["params"])
    lines = [f"## Groups side by side: {gr['column']} ({gr['form']})", "",
             "| group | runs | " + " | ".join(names) + f" | L* at C={_g(gr['C_ref'], '.3g')} |",
             "|---|---|" + "---|" * (len(names) + 1)]
    for g, law in gr["laws"].items():
        vals = " | ".join(f"{_g(v)} {_ci(law['ci95'], k)}" for k, v in law["params"].items())
        lines.append(f"| {g} | {law['n_points']} | {vals} | {_g(law['loss_opt_at_C_ref'])} |")
    iso_g = {g: law["isoflop"] for g, law in gr["laws"].items() if law.get("isoflop")}
    if iso_g:
        each = [f"{g}: a = {_g(v['a'])} {_ci({'a': v['ci95']} if v.get('ci95') else {}, 'a')} over "
                f"{v['n_budgets']} budgets" for g, v in iso_g.items()]
        lines += ["", "Approach 2 within each group (wild-bootstrap 95 % CI): " + "; ".join(each) + "."]
    lines += _multipliers_md(gr)
    lines += ["", f"Differences ({gr['test']}):", "", "| difference | quantity | median | 95 % CI | p |",
              "|---|---|---|---|---|"]
    for name, diff in gr["differences"].items():
        for k, d in diff.items():
            if "ci95" in d:
                lines.append(f"| {name} | {k} | {_g(d['median'])} | [{_g(d['ci95'][0])}, {_g(d['ci95'][1])}] | "
                             f"{_g(d['p_value'], '.3f')} |")
    return lines + [""]
