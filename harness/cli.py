"""Thin Hydra entry points: compose the config, convert it to dataclasses, call importable functions.

conf/ lives at the top of the repository, so the apps find it beside the package: this supports a
source checkout and `pip install -e .` (the README's install), and says so clearly otherwise.
"""
from __future__ import annotations

import os
import shlex
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from harness.config import CONF_DIR, Config, name_model, register, search_dirs, split_config_dir
from harness.errors import HarnessError, entry_point, is_config_error, one_line


def to_config(cfg: DictConfig) -> Config:
    return OmegaConf.to_object(cfg)


def _check_conf() -> None:
    if not (CONF_DIR / "config.yaml").is_file():
        sys.exit(f"harness: error: the shipped configs are missing ({CONF_DIR}); reinstall the harness")


def _gpu_for_job(cfg: Config, count: int | None = None):
    """A job of a sweep on a multi-GPU box (device auto or a bare cuda) trains on a GPU no running
    job holds (gpus.py); returns the held slot, to release when the job ends, or None."""
    if cfg.device not in ("auto", "cuda") or cfg.distributed.nproc > 1:  # cuda:K, or K GPUs per cell
        return None
    if count is None:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return None
    from harness.train import gpus

    slot = gpus.take(count)
    cfg.device = f"cuda:{slot.index}"
    return slot


def _train_task(dcfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    cfg = to_config(dcfg)
    try:
        _train_one(cfg, multirun, HydraConfig.get().runtime.choices.get("model"))
    except HarnessError as e:
        print(f"harness-train: error: {e}", file=sys.stderr)
        if not multirun:
            sys.exit(2)
    except Exception as e:  # noqa: BLE001  a crashed cell must not stop the sweep
        if not multirun:
            raise
        print(f"harness-train: cell crashed: {type(e).__name__}: {e}", file=sys.stderr)


def _train_one(cfg: Config, multirun: bool, model_choice: str | None) -> None:
    from harness.train import spec, sweep

    try:
        name_model(cfg, model_choice)
        spec.resolve(cfg)  # invalid shapes and budgets fail here, before torch is imported
        from harness.train import cell

        slot = _gpu_for_job(cfg) if multirun else None
        try:
            cell.run(cfg)
        finally:
            if slot is not None:
                slot.release()
    except Exception as e:
        if multirun and not getattr(e, "recorded", False):  # failed before its cell directory existed
            from hydra.core.hydra_config import HydraConfig

            sweep.record_invalid(cfg, list(HydraConfig.get().overrides.task), str(e))
        raise


@entry_point("harness-train")
def train_main() -> None:
    # Recorded with every run (joblib and submitit workers inherit it), so a report can print the
    # command that trained its runs.
    os.environ.setdefault("HARNESS_COMMAND", shlex.join(["harness-train", *sys.argv[1:]]))
    _check_conf()
    register()
    main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(_train_task)
    _exit_on_config_error(main)


PLAN_HELP = """usage: harness-plan [--config-dir DIR] [sweep=NAME] [KEY=VALUE ...]

Prints the cells `harness-train -m` would train with the same arguments (expanded by Hydra's own
sweeper), with N, D, C (6N), D/N, epochs of the corpus, an estimated time and each cell's status,
then design warnings, then errors: cells harness-train would refuse (invalid, or repeating their data
more than data.max_epochs times), which make it exit 1. Takes exactly the overrides harness-train
takes (see harness-train --help)."""


@entry_point("harness-plan")
def plan_main() -> None:
    _check_conf()
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(PLAN_HELP + "\n\nsweep presets:\n" + _presets())
        return
    from harness import plan  # registers the schema itself

    try:
        config_dir, argv = split_config_dir(sys.argv[1:])
        found = plan.main(argv, config_dir)
    except HarnessError as e:
        _die("harness-plan", str(e))
    except Exception as e:  # noqa: BLE001  Hydra composition errors
        if not is_config_error(e):
            raise
        _die("harness-plan", one_line(e, search_dirs(sys.argv[1:])))
    if found["errors"]:
        print(f"harness-plan: {len(found['errors'])} cell(s) would be refused (see error: lines above)",
              file=sys.stderr)
        sys.exit(1)


def _presets() -> str:
    """Each conf/sweep preset with the first line of its header comment."""
    lines = []
    for path in sorted((CONF_DIR / "sweep").glob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines()
                      if ln.startswith("#") and "@package" not in ln), "")
        lines.append(f"  sweep={path.stem:10s} {first}")
    return "\n".join(lines)


def _die(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def _exit_on_config_error(main) -> None:
    """Hydra's composition errors (unknown option, unknown key, wrong type) as one line, exit 2."""
    import os

    os.environ["HYDRA_FULL_ERROR"] = "1"  # let them reach us instead of Hydra's multi-line report
    try:
        main()
    except Exception as e:  # noqa: BLE001  only composition errors get here; jobs catch their own
        _die("harness-train", one_line(e, search_dirs(sys.argv[1:])))
