"""`harness-fit runs=PATH out=DIR [key=value ...]`: collect runs, fit, write fit.json + report.

A thin entry point: options are a typed dataclass checked by OmegaConf; bad input becomes one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import HarnessError


@dataclass
class FitConfig:
    runs: str = "???"  # sweep directory, wandb:ENTITY/PROJECT, or CSV file
    out: str = "???"  # output directory for fit.json, report.md and figures
    n_bootstrap: int = 1000  # bootstrap resamples (Besiroglu et al. 2024 used 4000)
    seed: int = 0  # bootstrap seed
    holdout: float = 0.1  # back-test: largest-C runs held out; < 1 a fraction, >= 1 a count
    n_convention: str = "total"  # N as total or nonembed params; C from the matching column
    budgets: list[float] = field(default_factory=list)  # FLOPs for N*, D*, D/N; [] = auto
    drop_highest: int = 0  # drop the k highest-loss points (Epoch's Chinchilla filter: 5)
    schedule: str = "all"  # fit only runs with this LR schedule: all, cosine or wsd
    budget_tol_dex: float = 0.02  # runs within this log10-C gap share an IsoFLOP budget
    col_N: str = "N"  # CSV column names
    col_D: str = "D"
    col_C: str = "C"
    col_loss: str = "loss"
    wandb_group: str = ""  # wandb: source filters
    wandb_sweep: str = ""


def parse_args(argv: list[str]) -> FitConfig:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [a for a in argv if "=" not in a]
    if bad:
        raise HarnessError(f"arguments must be key=value, got {bad[0]!r}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(FitConfig), OmegaConf.from_dotlist(argv))
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise HarnessError(f"missing required option(s): {', '.join(missing)}")
        return FitConfig(**OmegaConf.to_container(cfg))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).splitlines()[0]
        raise HarnessError(f"{key}: {msg}" if key else msg) from None


def command_line(cfg: FitConfig) -> str:
    """The exact command that reproduces this report (every option spelled out)."""
    args = [f"{k}={v}" for k, v in asdict(cfg).items()]
    return "harness-fit " + " ".join(shlex.quote(a) for a in args)


def run(cfg: FitConfig) -> dict:
    """Collect, fit, write fit.json, report.md and figures into cfg.out; return the results."""
    from harness import plots, report
    from harness.analysis import analyse
    from harness.collect import collect, fit_table

    columns = {"N": cfg.col_N, "D": cfg.col_D, "C": cfg.col_C, "loss": cfg.col_loss}
    runs, warnings = collect(cfg.runs, columns=columns, group=cfg.wandb_group or None,
                             sweep=cfg.wandb_sweep or None)
    table, excluded = fit_table(runs, cfg.n_convention, cfg.drop_highest, cfg.schedule)
    t0 = time.perf_counter()
    results, fit = analyse(table, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed,
                           holdout=cfg.holdout, budgets=cfg.budgets, tol_dex=cfg.budget_tol_dex)
    results["warnings"] = warnings + results["warnings"]
    results["provenance"] = {
        "runs": cfg.runs, "input_runs": table["run_id"].tolist(), "excluded": excluded,
        "git_revision": report.git_revision(Path(__file__).resolve().parent),
        "conventions": {"N": cfg.n_convention, "C": "6*N*D" if cfg.n_convention == "total"
                        else "6*N_nonembed*D (Kaplan)", "loss": "final val/loss (CSV: col_loss)",
                        "seeds": "repeated seeds of one cell averaged"},
        "settings": {k: v for k, v in asdict(cfg).items()}, "command": command_line(cfg),
        "train_commands": sorted({c for c, st in zip(runs["command"], runs["status"])
                                  if isinstance(c, str) and st == "finished"}),
        "fit_seconds": time.perf_counter() - t0}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "runs.csv", index=False)
    figures = plots.make_all(table, fit, results, out, cfg.budget_tol_dex)
    report.write_json(results, out / "fit.json")
    report.write_markdown(results, figures, command_line(cfg), out / "report.md")
    for w in results["warnings"]:
        print(f"harness-fit: warning: {w}", file=sys.stderr)
    return results


def fit_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse_args(argv)
        run(cfg)
    except HarnessError as exc:
        print(f"harness-fit: error: {exc}", file=sys.stderr)
        return 2
    print(f"harness-fit: wrote {Path(cfg.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(fit_main())
