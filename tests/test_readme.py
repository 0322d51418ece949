"""Every command a README shows is composed (harness-*) or its script --help-checked, so none drifts."""
import re
import shlex
import subprocess
import sys

import pytest

from harness import plan, study
from harness.cli_fit import parse_args, usage
from harness.config import compose
from harness.data import prepare
from tests.conftest import ROOT

READMES = [ROOT / "README.md", *sorted((ROOT / "results").glob("*/README.md"))]
HELPED: set = set()
MODEL = "arch: gpt2\nn_layer: 2\nn_embd: 24\nn_head: 2\n"


def commands(text: str) -> list[str]:
    """harness-* and `python scripts/...` commands in code blocks (one per line, `&&` split) and inline."""
    found = []
    for block in re.findall(r"^```\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            for part in line.split("#")[0].split("&&"):
                if part.strip().startswith(("harness-", "python scripts/")):
                    found.append(part.strip())
    inline = re.sub(r"^```\n.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`([^`]+)`", inline):
        span = " ".join(span.split())
        if re.match(r"(harness-(train|plan|fit|study|prepare|optimum)|python scripts/)\b", span):
            found += [p.strip() for p in span.split("&&")]
    return found


ALL = sorted({c: p.relative_to(ROOT).as_posix() for p in READMES for c in commands(p.read_text())}.items(),
             key=lambda x: (x[1], x[0]))  # each command once, with a README that shows it


def test_the_readmes_show_commands_and_the_main_one_is_there():
    shown = {c for c, _ in ALL}
    assert "harness-study study=tiny results_dir=results/rerun compare=results/tiny" in shown
    assert len(ALL) > 20
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200  # a newcomer's page


@pytest.mark.parametrize("command,where", ALL)
def test_every_readme_command_composes(command, where, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "x-85k.yaml").write_text(MODEL)
    argv = [str(tmp_path) if a == "DIR" and prev == "--config-dir" else a.replace("=NAME", "=smoke")
            for prev, a in zip([""] + shlex.split(command), shlex.split(command))]
    prog, args = argv[0], argv[1:]
    if prog == "python":
        script = ROOT / args[0]
        assert script.is_file(), script
        if "argparse" in script.read_text() and script not in HELPED:
            out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr[-1000:]
            HELPED.add(script)  # once per script
        return
    if "--help" in args or not args and prog in ("harness-fit", "harness-study", "harness-prepare", "harness-optimum"):
        assert usage() if prog == "harness-fit" else True  # a mention of the program, or its help
        return
    if prog in ("harness-train", "harness-plan"):
        config_dir = args[args.index("--config-dir") + 1] if "--config-dir" in args else None
        rest = [a for a in args if a not in ("-m", "--config-dir", config_dir)]
        for job in plan.job_overrides(rest, config_dir):  # every job of the sweep, as Hydra expands it
            compose(job, config_dir)
    elif prog == "harness-fit":
        parse_args(args)
    elif prog == "harness-study":
        parsed = study.parse(args)
        study.load(parsed["study"])
        compose(parsed["overrides"])
    elif prog == "harness-prepare":
        out, overrides, config_dir = prepare.parse(args)
        compose(overrides, config_dir)
    elif prog == "harness-optimum":
        from harness.cli_optimum import parse
        from harness.config import split_config_dir

        parse(split_config_dir(args)[1])
    else:
        pytest.fail(f"{where}: unknown command {command}")
