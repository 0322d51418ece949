"""Every numeric option has a range, checked before any work; out of range is one line naming it."""
import math

import pytest

from harness import validate
from harness.cli_fit import FitConfig, parse_args
from harness.config import Config
from harness.errors import HarnessError
from harness.train import spec
from tests.conftest import cli, make_config

TRAIN_FIELDS = dict(validate.numeric_fields(Config))
FIT_FIELDS = dict(validate.numeric_fields(FitConfig))


def test_every_numeric_option_of_every_schema_has_a_range_and_no_range_is_stale():
    assert set(TRAIN_FIELDS) == set(validate.TRAIN)
    assert set(FIT_FIELDS) == set(validate.FIT)
    assert {"optim.grad_clip", "optim.min_lr_ratio", "seed", "log_every", "budget.flops"} <= set(TRAIN_FIELDS)


def outside(r: validate.Range, integer: bool) -> list:
    """Values just outside `r` on each bounded side, and the non-finite ones a float field can take."""
    step = 1 if integer else 0.5
    out = []
    if r.lo is not None:
        out.append(r.lo if r.lo_open else r.lo - step)
    if r.hi is not None:
        out.append(r.hi if r.hi_open else r.hi + step)
    return out + ([] if integer else [math.inf, math.nan])


def _integer(obj, key: str) -> bool:
    """Whether the field at `key` holds integers (its default or type says so)."""
    import typing

    *parents, name = key.split(".")
    cls = type(obj)
    for p in parents:
        cls = typing.get_type_hints(cls)[p]
    t = typing.get_type_hints(cls)[name]
    return int in (typing.get_args(t) or (t,)) and float not in (typing.get_args(t) or (t,))


def _set(obj, key: str, value) -> None:
    *parents, name = key.split(".")
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, name, value)


@pytest.mark.parametrize("key", sorted(validate.TRAIN))
def test_each_train_option_out_of_range_is_refused_before_work_naming_it_and_its_range(key):
    base = make_config("model=gpt2-5k", "budget.tokens=20000")
    spec.resolve(base)  # the base itself is valid
    if key == "branches":
        base.optim.schedule = "wsd"
    integer = _integer(base, key)
    for bad in outside(validate.TRAIN[key], integer):
        cfg = make_config("model=gpt2-5k", "budget.tokens=20000", *(["optim=wsd"] if key == "branches" else []))
        if key.startswith("budget."):  # one budget kind at a time
            cfg.budget.tokens = None
        _set(cfg, key, [bad] if TRAIN_FIELDS[key] else bad)
        with pytest.raises(HarnessError) as e:
            spec.resolve(cfg)
        message = str(e.value)
        assert message.startswith(f"{key}=") and validate.TRAIN[key].text() in message, message


@pytest.mark.parametrize("key", sorted(validate.FIT))
def test_each_fit_option_out_of_range_is_refused_naming_it(key):
    integer = _integer(FitConfig(), key)
    for bad in outside(validate.FIT[key], integer):
        value = f"[{bad}]" if FIT_FIELDS[key] else str(bad)
        with pytest.raises(HarnessError, match=rf"^{key}=.* must be "):
            parse_args(["runs=x", "out=y", f"{key}={value}"])


@pytest.mark.parametrize("args,name", [
    (["optim.grad_clip=-1"], "optim.grad_clip=-1"),  # was trained and recorded finished (loss 68.9)
    (["optim.min_lr_ratio=-1"], "optim.min_lr_ratio=-1"),  # likewise (loss 34.3)
    (["budget.tokens=null", "budget.flops=inf"], "budget.flops=inf"),
    (["log_every=0"], "log_every=0"),  # started the cell, then failed on a modulo by zero
    (["seed=-1"], "seed=-1"),  # started the cell, then failed in torch's seeding
])
def test_the_cli_refuses_in_one_line_and_records_nothing(tmp_path, args, name):
    out = cli("harness-train", "model=gpt2-5k", "budget.tokens=20000", f"results_dir={tmp_path / 'r'}", *args,
              cwd=tmp_path)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1 and name in lines[0], out.stderr[-2000:]
    assert not (tmp_path / "r" / "single").exists()  # no cell directory: no record, no wandb run


def test_harness_fit_refuses_a_negative_bootstrap_count_in_one_line(tmp_path):
    out = cli("harness-fit", f"runs={tmp_path}", f"out={tmp_path / 'o'}", "n_bootstrap=-5", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == ("harness-fit: error: n_bootstrap=-5 must be "
                                                          "non-negative (>= 0)"), out.stderr[-2000:]
