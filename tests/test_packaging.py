"""Configs that ship and extend: the shipped conf/ inside the package, a user's own folder for every CLI."""
import os
import subprocess
import sys

import pytest
import tomllib

from harness.store import records
from tests.conftest import ROOT, cli

MODEL = "arch: gpt2\nn_layer: 2\nn_embd: 24\nn_head: 2\n"  # no name: it is the file's


def test_the_wheel_lists_every_package_and_ships_the_configs():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "harness").rglob("__init__.py")}
    assert set(tool["packages"]) == found | {"harness.conf"}
    assert tool["package-dir"]["harness.conf"] == "conf"
    shipped = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    globs = tool["package-data"]["harness.conf"]
    assert all(any(s.count("/") == g.count("/") for g in globs) for s in shipped)  # every depth is matched


@pytest.fixture
def user(tmp_path):
    """A user's config folder beside, not inside, the harness: a model and a study of their own."""
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "study").mkdir()
    (tmp_path / "mine" / "model" / "x-15k.yaml").write_text(MODEL)
    (tmp_path / "mine" / "study" / "mystudy.yaml").write_text(
        "sweep: my\nfit:\n  - [sweep.name=my, model=x-15k, budget.tokens=20000]\n"
        "holdout:\n  - [sweep.name=my, sweep.role=holdout, model=x-15k, budget.tokens=40000]\n")
    return tmp_path / "mine"


@pytest.mark.slow  # end to end, 15-35 s on 2 cores; CI runs the slow tier
def test_every_cli_takes_the_users_config_folder(tmp_path, user):
    r = f"results_dir={tmp_path / 'r'}"
    plan = cli("harness-plan", "--config-dir", str(user), "model=x-15k", "budget.tokens=20000", "sweep.name=my", r,
               cwd=tmp_path)
    assert plan.returncode == 0 and "x-15k_D2e04" in plan.stdout and "todo" in plan.stdout, plan.stderr[-2000:]
    train = cli("harness-train", "--config-dir", str(user), "model=x-15k", "budget.tokens=20000", "sweep.name=my",
                r, cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    (cell,) = (tmp_path / "r" / "my").iterdir()
    rec = records.read(cell)
    assert rec["status"] == "finished" and rec["config"]["model"]["name"] == "x-15k"
    assert rec["config"]["model"]["n_embd"] == 24
    again = cli("harness-plan", f"--config-dir={user}", "model=x-15k", "budget.tokens=20000", "sweep.name=my", r,
                cwd=tmp_path)
    assert "finished" in again.stdout
    # the study is found in the user's folder; its fit stage (the cell above) is read back, then
    # one point is too few for a law: the one-line refusal proves the whole path ran
    study = cli("harness-study", "--config-dir", str(user), "study=mystudy", r, "n_bootstrap=10", cwd=tmp_path)
    assert study.returncode == 2 and "no law form can be fitted" in study.stderr, study.stderr[-2000:]
    assert "skip x-15k_D2e04" in study.stdout
    prep = cli("harness-prepare", "--config-dir", str(user), "data.vocab_size=100", f"out={tmp_path / 'p'}",
               cwd=tmp_path)
    assert prep.returncode == 2 and "data.vocab_size=100 must be in" in prep.stderr


def test_a_model_file_naming_another_model_is_refused_and_a_misspelt_key_names_key_and_file(tmp_path, user):
    (user / "model" / "copied.yaml").write_text("name: gpt2-6m\n" + MODEL)  # copied, name not edited
    (user / "model" / "typo.yaml").write_text(MODEL.replace("n_layer", "n_layers"))
    r = f"results_dir={tmp_path / 'r'}"
    out = cli("harness-train", "--config-dir", str(user), "model=copied", "budget.tokens=20000", r, cwd=tmp_path)
    assert out.returncode == 2 and "model/copied.yaml says name: gpt2-6m" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "r" / "single").exists()
    for prog in ("harness-train", "harness-plan"):
        out = cli(prog, "--config-dir", str(user), "model=typo", "budget.tokens=20000", r, cwd=tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
        assert f"{user}/model/typo.yaml" in lines[0] and "n_layers" in lines[0] and "model.n_layers" in lines[0]


@pytest.mark.slow
def test_a_plain_install_runs_from_another_folder_with_a_users_configs(tmp_path, user):
    """`pip install .` (not editable): the package carries its configs; nothing reads the checkout."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("harness-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline"}
    where = subprocess.run([sys.executable, "-c", "import harness.config as c; print(c.__file__, c.CONF_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    module, conf = where.stdout.split()
    assert module.startswith(str(target)) and conf == str(target / "harness" / "conf"), where.stdout
    code = "import sys; sys.argv[0] = 'harness-train'; from harness.cli import train_main; sys.exit(train_main())"
    out = subprocess.run([sys.executable, "-c", code, "--config-dir", str(user), "model=x-15k", "budget.tokens=20000",
                          f"results_dir={tmp_path / 'r'}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "final val/loss" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("name", ["tiny", "laptop", "laptop_check", "arch"])
def test_every_committed_study_plans_nothing_to_run(name):
    """The layout and config changes keep every cell's identity: each committed study's cells are
    found done where they were recorded (harness-plan would show 0 to run)."""
    from harness import plan, study

    s = study.load(name)
    rows = [r for entry in s.fit + s.holdout for r in plan.cells_of([*entry, f"results_dir={ROOT / 'results'}"])]
    assert rows and all(r.cfg is not None for r in rows)
    assert {r.cell: r.values["status"] for r in rows if r.values["status"] not in records.DONE} == {}
