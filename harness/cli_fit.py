"""`harness-fit runs=PATH out=DIR [key=value ...]`: collect runs, fit, write fit.json + report.

A thin entry point: options are a typed dataclass checked by OmegaConf; bad input becomes one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import inspect
import re
import shlex
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from harness import validate
from harness.errors import HarnessError, entry_point

USAGE = "harness-fit runs=PATH out=DIR [key=value ...]"


@dataclass
class FitConfig:
    runs: str = "???"  # sweep directory, wandb:ENTITY/PROJECT, or CSV file
    out: str = "???"  # output directory for fit.json, report.md and figures
    n_bootstrap: int = 1000  # bootstrap resamples (Besiroglu et al. 2024 used 4000)
    seed: int = 0  # bootstrap seed
    holdout: float = 0.1  # back-test: largest-C runs held out; < 1 a fraction, >= 1 a count
    n_convention: str = "auto"  # N as total, nonembed or active (MoE) params, C = 6 N D (store/counts.py);
    # auto: active for MoE runs, else nonembed if all runs log it
    budgets: list[float] = field(default_factory=list)  # FLOPs for N*, D*, D/N; [] = auto
    drop_highest: int = 0  # drop the k highest-loss points (Epoch's Chinchilla filter: 5)
    schedule: str = "all"  # fit only runs with this LR schedule: all, cosine or wsd
    budget_tol_dex: float = 0.02  # runs within this log10-C gap share an IsoFLOP budget
    col_N: str = "N"  # N_total (every parameter): a CSV column, or for wandb runs config.KEY / summary.KEY
    col_N_nonembed: str = "N_nonembed"  # non-embedding parameters, the same way (n_convention=nonembed)
    col_N_active: str = "N_active"  # active non-embedding parameters (MoE), the same way (n_convention=active)
    col_D: str = "D"  # D (tokens), the same way; without one, D = C / (6 N)
    col_C: str = "C"  # C (FLOPs spent, 6 N_total D if dense), the same way; read when there is no D
    col_C_kaplan: str = "C_kaplan"  # 6 N_active D (FLOPs without embeddings), the same way; else derived
    col_loss: str = "loss"  # final loss (nats per token), the same way (e.g. summary.eval/loss)
    wandb_group: str = ""  # wandb source: only runs in this group ("" = all)
    wandb_sweep: str = ""  # wandb source: only runs of this sweep ("" = all)
    forms: list[str] = field(default_factory=lambda: ["chinchilla", "kaplan", "datacon"])  # law forms to fit and rank
    form: str = "auto"  # form behind the headline numbers; auto: the lowest held-out rollout error
    E: Optional[float] = None  # fix the floor E of chinchilla/datacon (e.g. E=1.9); null: fitted
    tie: bool = False  # tie the exponents, beta = alpha (chinchilla/datacon)
    group_by: str = ""  # fit each group of this run column separately and test the difference (e.g. arch)
    group_ref: str = ""  # with group_by: the group the others are compared with, e.g. gpt2 ("" = the first)
    compare: str = ""  # a reference study (its run records and fit.json, e.g. results/tiny): did this reproduce it?
    prediction: str = ""  # a pre-registered prediction to score; "": runs/prediction.json where it exists
    predict: str = ""  # CSV of models to ask the law about (columns N, D, optional name): out/predictions.json


def option_help() -> dict[str, str]:
    """{field: its one-line comment in FitConfig's source}: --help reads the schema itself, so
    the text cannot drift from the fields (a test checks that every field has one)."""
    try:
        src = inspect.getsource(FitConfig)
    except (OSError, TypeError):  # no source shipped (a zipped install): names and defaults only
        return {}
    return dict(re.findall(r"^ {4}(\w+):[^#\n]*#\s*(.*?)\s*$", src, flags=re.M))


def usage() -> str:
    """`harness-fit --help`: the usage line, then every option with its default and meaning."""
    helps = option_help()
    rows = []
    for f in fields(FitConfig):
        default = f.default_factory() if f.default is MISSING else f.default
        shown = f"{f.name} (required)" if default == "???" else f"{f.name}={default}"
        rows.append(f"  {shown:<24} {helps.get(f.name, '')}".rstrip())
    return "\n".join([f"usage: {USAGE}", "",
                      "Collect runs, fit scaling laws, write fit.json, report.md and figures.",
                      "", "options (key=value):", *rows])


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
        out = FitConfig(**OmegaConf.to_container(cfg))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).splitlines()[0]
        raise HarnessError(f"{key}: {msg}" if key else msg) from None
    validate.check(out, validate.FIT)
    if out.group_ref and not out.group_by:
        raise HarnessError(f"group_ref={out.group_ref} needs group_by= (the run column whose groups it names)")
    return out


def command_line(cfg: FitConfig) -> str:
    """The exact command that reproduces this report: runs, out and every option that differs from
    its default (the defaults are the code's, pinned by the git revision in fit.json)."""
    default = asdict(FitConfig())
    args = [f"{k}={_value(v)}" for k, v in asdict(cfg).items() if k in ("runs", "out") or v != default[k]]
    return "harness-fit " + " ".join(shlex.quote(a) for a in args)


def _value(v) -> str:
    """A value as the key=value parser reads it back: null, [a,b], plain scalars."""
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return str(v) if v != "" else "''"  # OmegaConf reads a bare `key=` as null


def check_out(out: str) -> None:
    """Fail before the fit, not after it, when out= cannot become a directory."""
    p = Path(out)
    while not p.exists() and p != p.parent:  # out may not exist yet: its first existing ancestor
        p = p.parent
    if p.exists() and not p.is_dir():
        raise HarnessError(f"out={out}: {p} is a file, not a directory")


def run(cfg: FitConfig) -> dict:
    """Collect, fit, write fit.json, report.md and figures into cfg.out; return the results."""
    from harness.fit import ask, repetition
    from harness.fit.analysis import analyse
    from harness.fit.collect import collect
    from harness.fit.points import fit_table, resolve_convention
    from harness.report import document, plots
    from harness.store.counts import CONVENTIONS

    check_out(cfg.out)
    if cfg.prediction and not Path(cfg.prediction).is_file():
        raise HarnessError(f"prediction={cfg.prediction}: no such file")
    asked, bad_rows = ask.read_rows(cfg.predict, cfg.group_by) if cfg.predict else ([], [])
    columns = {k: getattr(cfg, f"col_{k}") for k in ("N", "N_nonembed", "N_active", "D", "C", "C_kaplan", "loss")}
    runs, warnings = collect(cfg.runs, columns=columns, group=cfg.wandb_group or None,
                             sweep=cfg.wandb_sweep or None)
    convention = resolve_convention(runs, cfg.n_convention)
    table, excluded = fit_table(runs, convention, cfg.drop_highest, cfg.schedule, cfg.group_by or None)
    t0 = time.perf_counter()
    results, fits = analyse(table, seed=cfg.seed, **_analyse_options(cfg))
    datacon = next((f for f in fits.values() if f.form.name == "datacon"), None)
    if (rep := repetition.analyse(table, datacon)) is not None:
        results["repetition"] = rep
    scored = _score_prediction(cfg, table)
    if scored:
        results["prediction_score"] = scored
    if cfg.compare:
        results["comparison"] = _compare(cfg, results, table, runs, convention)
    if cfg.group_by:
        from harness.fit import groups

        head = fits[results["model_choice"]["headline"]].form
        results["groups"] = groups.compare(table, cfg.group_by, head, cfg.n_bootstrap, cfg.seed,
                                           tol_dex=cfg.budget_tol_dex, ref=cfg.group_ref)
    results["warnings"] = warnings + results["warnings"]
    results["provenance"] = {
        "runs": cfg.runs, "input_runs": table["run_id"].tolist(), "excluded": excluded,
        "git_revision": document.git_revision(Path(__file__).resolve().parent),
        "conventions": {"N": convention, "C": CONVENTIONS[convention][2],
                        "loss": f"final val/loss (mapped: col_loss={cfg.col_loss})",
                        "seeds": "repeated seeds of one cell averaged"},
        "settings": {k: v for k, v in asdict(cfg).items()}, "command": command_line(cfg),
        "train_commands": sorted({c for c, st in zip(runs["command"], runs["status"])
                                  if isinstance(c, str) and st == "finished"}),
        "fit_seconds": time.perf_counter() - t0}
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. no permission; check_out caught the common case up front
        raise HarnessError(f"out={cfg.out}: cannot create directory ({exc.strerror})") from None
    table.to_csv(out / "runs.csv", index=False)
    figures = list(plots.make_all(table, fits, results, out, cfg.budget_tol_dex))  # the file names
    document.write_json(results, out / "fit.json")
    if asked and cfg.group_by:  # each row by its own group's law
        asked, unknown = ask.unknown_groups(asked, cfg.predict, cfg.group_by, table[cfg.group_by].dropna().unique())
        bad_rows += unknown
    if asked:
        made = _predict(cfg, table, fits, results, asked, convention)
        made["asked"] = cfg.predict
        document.write_json(made, out / ask.NAME)
        for c in made["cells"]:
            print(f"harness-fit: {ask.answer_line(c)}")
    for line in bad_rows:
        print(f"harness-fit: error: {line}", file=sys.stderr)
    results["bad_predict_rows"] = len(bad_rows)
    document.write_markdown(results, figures, command_line(cfg), out / "report.md")
    for w in results["warnings"]:
        print(f"harness-fit: warning: {w}", file=sys.stderr)
    if "comparison" in results:
        c = results["comparison"]
        print(f"harness-fit: against {cfg.compare}: {c['n_matched']} cells in both, max |loss difference| "
              f"{c['max_abs_diff'] if c['max_abs_diff'] is not None else float('nan'):.2g} nats, "
              f"{c['n_identical']} identical")
    if scored and scored["cells"]:
        print(f"harness-fit: pre-registered prediction ({scored['created']}): mean |error| "
              f"{scored['mean_abs_rel_error']:.2%}, {scored['n_inside_pi95']}/{len(scored['cells'])} inside "
              "their 95 % prediction interval")
    for e in excluded:  # a record is true or absent, and an absent one is named (records.py)
        reason = " ".join(str(e["reason"]).split())
        print(f"harness-fit: excluded {e['run_id']}: {reason}", file=sys.stderr)
    return results


def _predict(cfg: FitConfig, table, fits: dict, results: dict, asked: list, convention: str) -> dict:
    """predictions.json: the headline law's answer to each row, or with group_by each row's group's law
    (that group's runs fitted alone, as harness-study predicts held-out cells per group)."""
    from harness.fit import prediction

    if not cfg.group_by:
        return prediction.make(fits[results["model_choice"]["headline"]], table, asked, convention, fits)
    return prediction.by_group(table, asked, cfg.group_by, convention, seed=cfg.seed, **_analyse_options(cfg))


def _analyse_options(cfg: FitConfig) -> dict:
    """analyse's options as this command sets them (the main fit and each group's own fit alike)."""
    return {"n_bootstrap": cfg.n_bootstrap, "holdout": cfg.holdout, "budgets": cfg.budgets,
            "tol_dex": cfg.budget_tol_dex, "form_names": cfg.forms, "form": None if cfg.form == "auto" else cfg.form,
            "E": cfg.E, "tie": cfg.tie}


def _score_prediction(cfg: FitConfig, table) -> dict | None:
    """Score the prediction.json that harness-study wrote beside the runs (if there is one)."""
    import json

    from harness.fit import prediction

    path = Path(cfg.prediction or Path(cfg.runs) / prediction.NAME)
    if not path.is_file():
        return None
    try:
        made = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc})") from None
    return prediction.score(made, table)


def _compare(cfg: FitConfig, results: dict, table, runs, convention: str) -> dict:
    """Read the reference study (records + fit.json) and compare this fit's cells and law with it."""
    import json

    from harness.fit.collect import collect
    from harness.fit.points import fit_table
    from harness.report.compare import compare

    ref = Path(cfg.compare)
    try:
        ref_fit = json.loads((ref / "fit.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"compare={cfg.compare}: no readable fit.json there ({exc})") from None
    ref_runs, _ = collect(str(ref))
    ref_table, _ = fit_table(ref_runs, convention, cfg.drop_highest, cfg.schedule)
    envs = (runs.loc[runs["status"] == "finished", "env"].tolist(),
            ref_runs.loc[ref_runs["status"] == "finished", "env"].tolist())
    return {"reference": cfg.compare, **compare(table, results, ref_table, ref_fit, envs)}


@entry_point("harness-fit")
def fit_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(usage())
        return 0
    try:
        cfg = parse_args(argv)
        results = run(cfg)
    except HarnessError as exc:
        print(f"harness-fit: error: {exc}", file=sys.stderr)
        return 2
    print(f"harness-fit: wrote {Path(cfg.out) / 'report.md'}")
    if results.get("bad_predict_rows"):
        return 2  # the good rows are answered; the bad ones named
    verdict = results.get("comparison", {}).get("verdict")
    if verdict:  # the last line: did this reproduce the reference? (exit 1 if not)
        print(f"harness-fit: {verdict['line']} (against {cfg.compare})")
        return 0 if verdict["reproduced"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(fit_main())
