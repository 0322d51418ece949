"""Bad records, bad study files, odd paths, Ctrl-C and a full disk: one line, no wrong number, nothing lost.

Each test is one row of the battery of issue 23 (numbers in the comments say what main did before).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from harness import study
from harness.config import compose, quote, unquote
from harness.fit.collect import collect
from harness.fit.points import fit_table
from harness.store import records
from harness.train import cell, spec
from harness.train.sweep import SweepReport
from tests.conftest import ROOT, cli, make_config

TINY = ROOT / "results" / "tiny"


@pytest.mark.parametrize("text,why", [
    ("[]", "holds a JSON list"),  # row 5: AttributeError traceback in harness-fit
    ('{"kind": "run", "status": "finished", "summary": "oops"}', "has summary of type str"),  # row 6: ValueError
    ('{"kind": "run", "status": "done", "summary": {}}', "has status 'done'"),
    ('{"status": "fini', "is not valid JSON"),
])
def test_a_record_not_in_the_written_layout_is_unreadable_named_and_excluded(tmp_path, text, why):
    runs_dir = tmp_path / "tiny"
    shutil.copytree(TINY, runs_dir, ignore=shutil.ignore_patterns("*.png", "*.md"))
    (victim,) = runs_dir.glob("gpt2-100k_*/D499712")
    (victim / records.RUN).write_text(text)
    rec = records.read(victim)
    assert rec["status"] == records.UNREADABLE and why in rec["error"] and str(victim) in rec["error"]
    runs, _ = collect(str(runs_dir))
    table, excluded = fit_table(runs, "nonembed")
    named = [e for e in excluded if e["run_id"] == "D499712"]
    assert len(named) == 1 and why in named[0]["reason"]
    intact, _ = fit_table(collect(str(TINY))[0], "nonembed")
    assert len(table) == len(intact) - 1  # that one run, nothing else
    assert records.read(tmp_path / "nowhere") is None  # absent is not unreadable


def test_sweep_report_names_an_unreadable_record_and_exits_non_zero(tmp_path, capsys):
    """Row 4: a `[]` record beside the sweep's cells crashed the report (a Hydra warning), exit 0."""
    sweep = tmp_path / "x"
    for cid, status in [("a", "finished"), ("b", "diverged")]:
        rec = records.new("run", cell_id=cid, sweep="x", config={}, summary={})
        rec.update(status=status, error="loss is NaN at step 3" if status == "diverged" else None)
        records.write(sweep / cid, rec)
    (sweep / "bogus").mkdir()
    (sweep / "bogus" / records.RUN).write_text("[]")
    assert SweepReport().report(sweep, "x") == 2
    out = capsys.readouterr().out
    assert "sweep x: 1/3 cells finished" in out and "diverged  b: loss is NaN" in out
    assert "unreadable bogus:" in out and "holds a JSON list" in out
    with pytest.raises(SystemExit) as e:
        SweepReport().on_multirun_end(_dict(tmp_path))
    assert e.value.code == 1


def _dict(tmp_path):
    from omegaconf import OmegaConf

    return OmegaConf.create({"results_dir": str(tmp_path), "sweep": {"name": "x"}})


WSD = ["model=gpt2-5k", "optim=wsd", "branches=[0.5]", "budget.tokens=40000", "sweep.name=w2", "threads=1"]


def test_a_finished_trunk_with_an_unreadable_branch_record_is_not_finished(tmp_path):
    """Row 3: the rerun said "already finished" and the branch stayed unreadable (fit read 1 of 2)."""
    cfg = make_config(*WSD, f"results_dir={tmp_path}")
    trunk = cell.run(cfg)
    s = spec.resolve(cfg)
    branch = s.branch(s.branches[0][1]).directory
    before = records.read(branch)
    (branch / records.RUN).write_text('{"status": "fini')
    assert cell.run(cfg)["status"] == "finished"  # rebuilt from the branch's complete wandb log
    after = records.read(branch)
    assert after["status"] == "finished" and after["run_id"] == before["run_id"]
    assert after["summary"]["val/loss"] == before["summary"]["val/loss"] and after["rebuilt_from"]
    assert after["config"] == before["config"] and after["env"] == before["env"]
    assert len(collect(str(tmp_path / "w2"))[0].query("status == 'finished'")) == 2

    (branch / records.RUN).write_text("[]")  # and now without a log to rebuild from: trained again
    shutil.rmtree(branch / "wandb")
    again = cell.run(cfg)
    retrained = records.read(branch)
    assert again["status"] == "finished" and retrained["status"] == "finished"
    assert retrained["run_id"] != before["run_id"] and trunk["branches"] == again["branches"]
    assert abs(retrained["summary"]["val/loss"] - before["summary"]["val/loss"]) < 1e-3  # same cell, same seed


STUDY = """sweep: s9
fit:
  - [sweep.name=s9, model=gpt2-5k, budget.tokens=20000]
holdout:
  - [sweep.name=s9, sweep.role=holdout, model=gpt2-5k, budget.tokens=40000]
"""


def test_a_misspelt_study_key_is_named_with_its_likely_meaning(tmp_path):
    """Row 11: `predicton:` and `fit_arg:` were silently ignored."""
    for typo, meant in [("predicton: other.json", "prediction"), ("fit_arg: [group_by=arch]", "fit_args")]:
        path = tmp_path / f"s_{meant}.yaml"
        path.write_text(STUDY + typo + "\n")
        out = cli("harness-study", f"study={path}", f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
        assert f"unknown key {typo.split(':')[0]!r}" in lines[0] and f"did you mean {meant!r}" in lines[0]
        assert not (tmp_path / "r").exists()


def test_a_corrupt_prediction_or_a_late_holdout_is_refused_before_anything_trains(tmp_path):
    """Rows 12 and 17: a JSONDecodeError traceback; a late held-out cell refused only after the fit stage."""
    path = tmp_path / "s9.yaml"
    path.write_text(STUDY)
    sweep = tmp_path / "r" / "s9"
    sweep.mkdir(parents=True)
    (sweep / "prediction.json").write_text('{"cells": [')
    out = cli("harness-study", f"study={path}", f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "prediction.json is not a readable prediction" in lines[0]
    assert "Traceback" not in out.stderr and sorted(p.name for p in sweep.iterdir()) == ["prediction.json"]

    (sweep / "prediction.json").unlink()
    held = make_config("sweep.name=s9", "sweep.role=holdout", "model=gpt2-5k", "budget.tokens=40000",
                       f"results_dir={tmp_path / 'r'}")
    cell = spec.resolve(held)
    rec = records.new("run", cell_id=cell.cell_id, sweep="s9", config={}, summary=cell.flat())
    rec["status"] = "finished"
    records.write(cell.directory, rec)  # the held-out cell has a record and there is no prediction
    out = cli("harness-study", f"study={path}", f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 2 and "already ran but" in out.stderr and "final val/loss" not in out.stdout
    assert sorted(p.name for p in sweep.iterdir()) == [cell.cell_id]  # the fit stage did not train


@pytest.mark.parametrize("path", ["/x/ünï cødé/r", "/a b/it's", "c:\\dir\\", "/p/${oops}/q"])
def test_quoting_a_path_for_hydra_gives_it_back_exactly(path):
    assert compose([f"results_dir={quote(path)}"]).results_dir == path
    assert unquote(quote(path)) == path and unquote(path) == path
    assert study.parse(["study=x", f"results_dir={quote(path)}"])["results_dir"] == path


def test_harness_study_takes_any_path_harness_train_takes(tmp_path):
    """Row 15: `results_dir='…ünï cødé…'` kept its quotes as part of the path after training."""
    where = tmp_path / "ünï cødé" / "r"
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.replace("s9", "s11"))
    out = cli("harness-study", f"study={path}", f"results_dir={quote(str(where))}", "n_bootstrap=20", cwd=tmp_path)
    # one fitted cell: the fit stage trains there and is read back, then no law can be fitted to it
    assert out.returncode == 2 and "no law form can be fitted" in out.stderr, out.stderr[-2000:]
    assert records.read(next((where / "s11").iterdir()))["status"] == "finished"


def test_plan_with_every_cell_invalid_reads_no_records_and_refuses_in_one_line(tmp_path):
    """Row 16: the planner searched the current folder for records and crashed on a malformed one."""
    (tmp_path / "old" / "cell").mkdir(parents=True)
    (tmp_path / "old" / "cell" / records.RUN).write_text("[]")
    out = cli("harness-plan", "sweep=smoke", "sweep.role=holdot", f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "sweep.role='holdot' is not one of" in out.stdout and "would be refused" in out.stderr


def _start(args, cwd, results):
    """harness-train in its own process group, Ctrl-C raising KeyboardInterrupt as in a terminal;
    returns once its cell is recorded as running."""
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from harness.cli import train_main; sys.argv[0] = 'harness-train'; sys.exit(train_main())")
    env = {**os.environ, "WANDB_MODE": "offline", "TQDM_DISABLE": "1"}
    p = subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    for _ in range(600):
        if any('"running"' in f.read_text() for f in results.glob("single/*/summary.json")):
            return p
        time.sleep(0.1)
    p.kill()
    raise AssertionError("the cell never started")


@pytest.mark.parametrize("how", ["group", "process"])
def test_ctrl_c_is_one_line_exit_130_and_the_cell_reruns(tmp_path, how):
    """Row 14: a ~55-line KeyboardInterrupt traceback (the record and rerun were already right)."""
    results = tmp_path / "r"
    args = ["model=gpt2-5k", "budget.tokens=300000", "threads=1", f"results_dir={results}"]
    p = _start(args, tmp_path, results)
    time.sleep(1)
    os.killpg(p.pid, signal.SIGINT) if how == "group" else p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "harness-train: interrupted; the cell is recorded as failed and reruns from its last checkpoint, or its start"]
    (cell,) = (results / "single").iterdir()
    assert records.read(cell)["status"] == "failed"


def test_a_log_handler_that_cannot_write_stays_silent_under_an_entry_point(tmp_path):
    """Row 13's noise: a full disk made logging print '--- Logging error ---' tracebacks."""
    code = """
import errno, logging
from harness.errors import entry_point

class Full:
    def write(self, s):
        raise OSError(errno.ENOSPC, "No space left on device")
    def flush(self):
        pass

@entry_point("harness-x")
def main():
    logging.getLogger("third.party").addHandler(logging.StreamHandler(Full()))
    logging.getLogger("third.party").warning("hello")
    return 0

main()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def _tmpfs(path, size: str) -> bool:
    path.mkdir(parents=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                                capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_gives_one_line_and_the_rerun_completes(tmp_path):
    """Row 13 end to end on a 3 MB tmpfs (needs root to mount; skipped elsewhere)."""
    full = tmp_path / "full"
    if not _tmpfs(full, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        results = full / "r"
        args = ["model=gpt2-5k", "budget.tokens=100000", "threads=1", f"results_dir={results}"]
        p = _start(args, tmp_path, results)
        time.sleep(1)
        with open(full / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 16384)
            except OSError:
                pass
        _, err = p.communicate(timeout=240)
        assert p.returncode != 0 and "Traceback" not in err and "Logging error" not in err, err[-3000:]
        assert "harness-train: error: [Errno 28] No space left on device" in err
        (cell,) = (results / "single").iterdir()
        assert records.read(cell)["status"] != "finished"
        (full / "filler").unlink()
        again = cli("harness-train", *args, cwd=tmp_path)
        assert again.returncode == 0 and records.read(cell)["status"] == "finished", again.stderr[-2000:]
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)


def test_prediction_json_layout_check_is_the_one_the_study_writes():
    made = json.loads((TINY / "prediction.json").read_text())
    assert study.existing_prediction(TINY / "prediction.json") == made
