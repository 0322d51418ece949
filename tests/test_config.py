"""Every conf/ file composes against the schema; typos and wrong types fail at compose time."""
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from harness.config import Config
from tests.conftest import CONF, make_config


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["model", "data", "optim", "sweep"])
def test_every_group_option_composes(group):
    for name in options(group):
        cfg = make_config(f"{group}={name}")
        assert isinstance(cfg, Config)


@pytest.mark.parametrize("launcher", options("hydra/launcher"))
def test_every_launcher_composes(launcher):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}", "sweep=smoke"],
                      return_hydra_config=True)
    target = cfg.hydra.launcher._target_
    assert {"parallel": "Joblib", "slurm": "SlurmLauncher", "slurm_local": "LocalLauncher"}[launcher] in target


def test_slurm_launcher_has_cluster_settings():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1
    assert launcher.timeout_min > 0 and launcher.max_num_timeout > 0
    assert launcher.additional_parameters.requeue is True


@pytest.mark.parametrize("override,error", [
    ("model.n_layr=3", (ConfigCompositionException, ConfigKeyError)),
    ("budget.tokens=abc", (ConfigCompositionException, ValidationError)),
    ("model=gpt2-nope", (ConfigCompositionException,)),
])
def test_bad_overrides_fail_at_compose_time(override, error):
    with pytest.raises(error):
        make_config(override)
