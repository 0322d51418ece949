"""`harness-plan sweep=NAME`: the cells a sweep will train, their cost, and design warnings (torch-free).

It composes each cell exactly as `harness-train -m` would, so what it prints is what will run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from harness.config import Config, hydra_context, settle
from harness.errors import HarnessError
from harness.store import counts, records
from harness.train import accounting, spec

MIN_LOG_SPREAD = 0.25  # std of ln(D/N) below this: alpha and beta are not separately identifiable
TOKENS_PER_PARAM_OPT = 20.0  # Hoffmann et al. (2022) rule of thumb, to place IsoFLOP minima
# Wall time per cell ~ D * per_token_s + C_attn / flops_per_s, fitted to this harness's runs on
# 2 CPU cores (gpt2-20k..800k: 60k..16k tokens/s). No default for GPUs: an estimate there comes only
# from finished runs on a GPU (speed_models), never from CPU numbers or a guess.
DEFAULT_SPEED = {"cpu": (1.3e-5, 1.4e11)}


@dataclass
class Row:
    cell: str
    cfg: Config | None
    values: dict  # N, D, C, ... or {"error": message}


def job_overrides(argv: list[str], config_dir: str | None = None) -> list[list[str]]:
    """Each job's overrides, expanded by Hydra's own code exactly as `harness-train -m` expands them:
    the multirun config composed with Hydra's config loader, then BasicSweeper's own expansion of
    the preset's `hydra.sweeper.params` plus the command line's task overrides."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    with hydra_context(config_dir):
        hydra = GlobalHydra.instance().hydra
        master = hydra.compose_config("config", overrides=list(argv), run_mode=RunMode.MULTIRUN,
                                      with_log_configuration=False)
        params = master.hydra.sweeper.params or {}
        items = [f"{k}={v}" for k, v in params.items()] + list(master.hydra.overrides.task)
        parser = OverridesParser.create(config_loader=hydra.config_loader)
        return BasicSweeper.split_arguments(parser.parse_overrides(items), None)[0]


def cells_of(argv: list[str], config_dir: str | None = None) -> list[Row]:
    """Each job of `harness-train -m ARGV [--config-dir config_dir]`, resolved, or its error."""
    rows = []
    jobs = job_overrides(argv, config_dir)
    with hydra_context(config_dir):
        for overrides in jobs:
            label = " ".join(overrides)
            try:
                dcfg = compose("config", overrides=overrides, return_hydra_config=True)
                cfg: Config = settle(dcfg, dcfg.hydra.runtime.choices.get("model"))
                s = spec.resolve(cfg)
            except HarnessError as e:
                rows.append(Row(label, None, {"error": str(e)}))
                continue
            extra = sum(end - start for start, end in s.branches[:-1]) * s.batch_tokens if s.branches else 0
            rows.append(Row(s.cell_id, cfg, {**s.flat(), "status": _status(s), "extra_tokens": extra}))
    return rows


def _status(s: spec.Spec) -> str:
    rec = records.read(s.directory, records.TRUNK if s.branches else records.RUN)
    return rec["status"] if rec else "todo"


def speed_models(results_dir: Path, device: str) -> dict[bool, tuple[tuple[float, float] | None, str]]:
    """{is MoE: ((seconds per token, FLOP/s), where it came from)}, fitted in one pass over the finished
    runs under results_dir on the same kind of device ("cpu" or "cuda"), dense and Mixture-of-Experts
    apart (routing and idle experts make an MoE's time per active FLOP its own); else the CPU default
    for dense models; None where there is no such data."""
    rows: dict[bool, list] = {False: [], True: []}
    for _, rec in records.iter_records(results_dir):
        s = rec["summary"]
        kind = str((rec.get("env") or {}).get("device", "cpu")).split(":")[0]
        numbers = [s.get(k) for k in ("D", "C_attn", "train_s")]
        if rec["status"] == "finished" and kind == device and all(_positive(x) for x in numbers):
            rows[is_moe(s)].append(tuple(numbers))
    return {moe: _fit_speed(rows[moe], results_dir, device, moe) for moe in rows}


def _fit_speed(rows: list, results_dir: Path, device: str, moe: bool) -> tuple[tuple[float, float] | None, str]:
    import numpy as np

    if len(rows) >= 4:
        X = np.array([[d, c] for d, c, _ in rows], float)
        coef, *_ = np.linalg.lstsq(X, np.array([t for *_, t in rows]), rcond=None)
        if (coef > 0).all():
            return (coef[0], 1 / coef[1]), f"speed fitted to {len(rows)} finished {device} runs in {results_dir}"
    what = f"{'MoE' if moe else 'dense'} {device}"
    if device in DEFAULT_SPEED and not moe:
        return DEFAULT_SPEED[device], "default speed, fitted to this harness's runs on 2 CPU cores"
    return None, f"no finished {what} runs under {results_dir} to estimate speed from"


def is_moe(values: dict) -> bool:
    """A Mixture-of-Experts cell or run: fewer active than non-embedding parameters."""
    return counts.is_moe(values.get("N_active"), values.get("N_nonembed"))


def budget_n(r: Row) -> float:
    """The N a cell's budget counts (budget.convention kaplan: active non-embedding, else active with
    embeddings; for a dense model N_nonembed and N), as the trainer's FLOP and token budgets do."""
    v = r.values
    return v["N_active"] if r.cfg.budget.convention == "kaplan" else v["flops_per_token/6N"] / 6


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def seconds(values: dict, speed: tuple[float, float] | None) -> float:
    """Estimated wall time (nan without speed data); a WSD trunk also trains each branch's cooldown."""
    if speed is None:
        return math.nan
    scale = 1 + values.get("extra_tokens", 0) / values["D"]
    return scale * (values["D"] * speed[0] + values["C_attn"] / speed[1])


def errors(rows: list[Row]) -> list[str]:
    """What harness-train would refuse: invalid cells, and cells that repeat their data more than
    data.max_epochs times (rows carry `unique`, the unique training tokens, where known)."""
    from harness.data import batches

    out = [f"cell {r.cell} is invalid: {r.values['error']}" for r in rows if r.cfg is None]
    for r in rows:
        if r.cfg is not None and r.values.get("unique"):
            repeats = batches.repetition_error(r.cell, accounting.budget_name(r.cfg.budget), r.values["D"],
                                            r.values["unique"], r.cfg.data.max_epochs)
            out += [repeats] if repeats else []
    return out


def design_warnings(rows: list[Row]) -> list[str]:
    """Where the cells, as a design, cannot pin the law down. A holdout preset (sweep.role=holdout)
    only checks a prediction made from other cells, so it has no design of its own to check."""
    ok = [r for r in rows if r.cfg is not None and r.cfg.sweep.role != "holdout"]
    out = []
    if len(ok) >= 2:
        ratios = [math.log(r.values["D"] / budget_n(r)) for r in ok]
        mean = sum(ratios) / len(ratios)
        spread = math.sqrt(sum((x - mean) ** 2 for x in ratios) / len(ratios))
        if spread < MIN_LOG_SPREAD:
            out.append(f"D/N is nearly constant across cells (std of ln(D/N) = {spread:.3f}): "
                       "alpha and beta cannot be identified separately; vary D at fixed N")
    budgets: dict[float, list[int]] = {}
    for r in ok:
        if r.cfg.budget.flops is not None:  # a WSD trunk is a point at each of its branches' budgets too
            n = budget_n(r)
            for f in {*r.cfg.branches, 1.0}:
                budgets.setdefault(float(f"{r.cfg.budget.flops * f:.6g}"), []).append(n)
    for c, sizes in sorted(budgets.items()):
        if len(set(sizes)) < 3:
            out.append(f"IsoFLOP budget C={c:.3g} has {len(set(sizes))} sizes; a parabola needs >= 3")
            continue
        guess = math.sqrt(c / (6 * TOKENS_PER_PARAM_OPT))
        nearest = min(sorted(set(sizes)), key=lambda n: abs(math.log(n / guess)))
        if nearest in (min(sizes), max(sizes)):
            out.append(f"IsoFLOP budget C={c:.3g}: the minimum (~N={guess:.3g} at D/N={TOKENS_PER_PARAM_OPT:g}) "
                       f"is likely at the edge of sizes {min(sizes):.3g}..{max(sizes):.3g}")
    return out


def add_unique_tokens(rows: list[Row]) -> None:
    """Each row's unique training tokens (values["unique"]; None where unknown before preparing)."""
    from harness.data import batches
    from harness.data import spec as data_spec

    known: dict[str, int | None] = {}
    for r in rows:
        if r.cfg is None:
            continue
        key = repr(r.cfg.data)
        if key not in known:
            try:
                known[key] = batches.unique_tokens(data_spec.resolve(r.cfg.data))
            except HarnessError as e:
                if r.cfg.data.source == "prepared":  # a missing or unreadable folder: say so, once
                    raise
                print(f"unique training tokens unknown: {e}")
                known[key] = None
        r.values["unique"] = known[key]


def table(rows: list[Row], speeds: dict) -> list[str]:
    lines = [f"{'cell':44s} {'N':>10s} {'N_nonemb':>10s} {'D':>11s} {'C(6N)':>9s} {'D/N':>7s} "
             f"{'epochs':>6s} {'est':>7s}  status"]
    for r in rows:
        if r.cfg is None:
            lines.append(f"{r.cell:44s} invalid: {r.values['error']}")
            continue
        v = r.values
        ep = f"{v['D'] / v['unique']:6.2f}" if v.get("unique") else "     ?"
        sec = seconds(v, speeds[is_moe(v)][0])
        est = f"{sec:6.0f}s" if math.isfinite(sec) else "      ?"
        lines.append(f"{r.cell:44s} {v['N']:>10,d} {v['N_nonembed']:>10,d} {v['D']:>11,d} {v['C']:9.2e} "
                     f"{v['D'] / v['N']:7.1f} {ep} {est}  {v['status']}")
    return lines


def main(argv: list[str], config_dir: str | None = None) -> dict:
    """Print the plan; returns {"warnings": [...], "errors": [...]} (errors: cells harness-train refuses)."""
    rows = cells_of(argv, config_dir)
    ok = [r for r in rows if r.cfg is not None]
    add_unique_tokens(rows)
    device = "cuda" if ok and ok[0].cfg.device.startswith("cuda") else "cpu"
    # no valid cell, no results_dir to learn the speed from (and nothing to time)
    where = Path(ok[0].cfg.results_dir) if ok else None
    speeds = speed_models(where, device) if where else dict.fromkeys((False, True), (None, "no valid cells"))
    print("\n".join(table(rows, speeds)))
    todo = [r for r in ok if r.values["status"] not in records.DONE]
    total_c = sum(r.values["C"] * (1 + r.values.get("extra_tokens", 0) / r.values["D"]) for r in ok)  # WSD cooldowns
    secs = sum(seconds(r.values, speeds[is_moe(r.values)][0]) for r in todo)
    kinds = {is_moe(r.values) for r in ok}
    known = all(speeds[k][0] is not None for k in kinds)
    eta = f"estimated {secs / 60:.1f} min to run" if known and math.isfinite(secs) else "time unknown"
    source = "; ".join(speeds[k][1] for k in sorted(kinds)) or speeds[False][1]
    uniques = sorted({r.values["unique"] for r in ok if r.values.get("unique")})
    print(f"\n{len(rows)} cells ({len(todo)} to run), total C={total_c:.3g} FLOPs (6N, cooldown branches included), "
          f"{eta} ({source}); unique training tokens: {', '.join(f'{u:,}' for u in uniques) or 'unknown'}")
    out = {"warnings": design_warnings(rows), "errors": errors(rows)}
    for w in out["warnings"]:
        print(f"warning: {w}")
    for e in out["errors"]:
        print(f"error: {e}")
    return out
