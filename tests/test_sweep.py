"""Sweeps: resume without repeats (even after SIGKILL), failure isolation, launchers, the planner."""
import os
import signal
import subprocess
import sys
import time

import pytest

from harness import plan
from harness.fit.collect import collect
from harness.fit.points import fit_table
from harness.store import records
from harness.store.lock import Busy, CellLock
from tests.conftest import ROOT, cli


def statuses(results):
    return records.sweep_status(results / "smoke")


def run_ids(results):
    return {cid: records.read(results / "smoke" / cid)["run_id"] for cid in statuses(results)}


def wandb_runs(results):
    return sorted(p.name for p in results.glob("smoke/*/wandb/offline-run-*"))


@pytest.mark.slow  # end to end, 15-35 s on 2 cores; CI runs the slow tier
def test_smoke_sweep_then_rerun_skips_everything(tmp_path):
    results = tmp_path / "results"
    first = cli("harness-train", "-m", "sweep=smoke", f"results_dir={results}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert set(statuses(results).values()) == {"finished"} and len(statuses(results)) == 4
    runs = wandb_runs(results)
    t0 = time.time()
    second = cli("harness-train", "-m", "sweep=smoke", f"results_dir={results}", cwd=tmp_path)
    assert second.returncode == 0 and second.stdout.count("skip ") == 4
    assert wandb_runs(results) == runs
    assert time.time() - t0 < 60  # no training: only process start-up
    # every run records the command that trained it (the fit report prints it: test_tiny_e2e)
    runs_table, _ = collect(str(results / "smoke"))
    assert set(runs_table["command"]) == {f"harness-train -m sweep=smoke results_dir={results}"}


@pytest.mark.slow  # trains or refits end to end (~30-110 s on 2 cores); CI runs the slow tier
def test_sigkill_mid_sweep_loses_nothing_and_repeats_nothing(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, "-m", "sweep=smoke", f"results_dir={results}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while "finished" not in statuses(results).values() and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {c: r for c, r in run_ids(results).items() if statuses(results)[c] == "finished"}
    assert 1 <= len(before) < 4, "kill the sweep after one cell, before the last"
    rerun = cli("harness-train", "-m", "sweep=smoke", f"results_dir={results}", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = run_ids(results)
    assert len(after) == 4 and set(statuses(results).values()) == {"finished"}
    assert all(after[c] == before[c] for c in before)  # finished cells were not trained again
    for cid in after:  # one wandb run per cell: the killed attempt's partial log is gone
        assert len(list((results / "smoke" / cid).glob("wandb/offline-run-*"))) == 1


TRAIN = "import sys; sys.argv[0]='harness-train'; from harness.cli import train_main; train_main()"


@pytest.mark.slow  # end to end, 15-35 s on 2 cores; CI runs the slow tier
def test_two_sweeps_on_one_results_dir_train_each_cell_once(tmp_path):
    """Both used to train every cell, one deleted the other's live wandb directory, and a cell
    ended with two logs that the collector counted as two seeds."""
    results = tmp_path / "results"
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, "-m", "sweep=smoke", f"results_dir={results}"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    assert set(statuses(results).values()) == {"finished"} and len(statuses(results)) == 4
    trained = sum(o.count("final val/loss") for o, _ in outs)
    assert trained == 4  # each cell once, by one of the two
    for cid in statuses(results):
        assert len(list((results / "smoke" / cid).glob("wandb/offline-run-*"))) == 1
        assert not (results / "smoke" / cid / ".lock").exists()
    table, _ = fit_table(collect(str(results / "smoke"))[0])
    assert len(table) == 4 and set(table["n_seeds"]) == {1}


def test_a_lock_held_by_a_killed_process_is_taken_over(tmp_path):
    hold = ("import sys, time; from pathlib import Path; from harness.store.lock import CellLock; "
            "CellLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "cell")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(Busy, match=f"pid {proc.pid}"):
        CellLock(tmp_path / "cell").acquire()
    proc.kill()
    proc.wait()
    assert (tmp_path / "cell" / ".lock").exists()  # left behind by SIGKILL, but no longer held
    with CellLock(tmp_path / "cell"):
        with pytest.raises(Busy):  # exclusive within one process too (flock, not POSIX locks)
            CellLock(tmp_path / "cell").acquire()
    assert not (tmp_path / "cell" / ".lock").exists()


def test_a_failing_cell_does_not_stop_the_sweep(tmp_path):
    results = tmp_path / "results"
    out = cli("harness-train", "-m", "sweep=smoke", f"results_dir={results}", "model=gpt2-20k",
              "budget.tokens=30000,10", "optim.lr=0.01,1e30", cwd=tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    st = statuses(results)
    assert sorted(st.values()) == ["diverged", "failed", "failed", "finished"]
    assert "1/4 cells finished" in out.stdout
    for cid, status in st.items():
        if status != "finished":
            assert cid in out.stdout  # the report names every failed cell


@pytest.mark.slow  # trains or refits end to end (~30-110 s on 2 cores); CI runs the slow tier
def test_joblib_launcher_with_two_jobs(tmp_path):
    results = tmp_path / "results"
    out = cli("harness-train", "-m", "sweep=smoke", "hydra/launcher=parallel", "threads=1",
              f"results_dir={results}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(statuses(results)) == 4 and set(statuses(results).values()) == {"finished"}


@pytest.mark.slow
def test_submitit_local_twin_of_the_slurm_launcher(tmp_path):
    results = tmp_path / "results"
    out = cli("harness-train", "-m", "sweep=smoke", "hydra/launcher=slurm_local", f"results_dir={results}",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert set(statuses(results).values()) == {"finished"} and len(statuses(results)) == 4


def test_planner_warns_on_a_degenerate_design(tmp_path, capsys):
    warnings = plan.main(["model=gpt2-20k,gpt2-50k,gpt2-100k", "budget.tokens_per_param=10",
                          f"results_dir={tmp_path}"])["warnings"]
    printed = capsys.readouterr().out
    assert any("cannot be identified separately" in w for w in warnings)
    assert printed.count("gpt2-") == 3 and "3 cells (3 to run)" in printed
    good = plan.main(["sweep=grid", f"results_dir={tmp_path}"])["warnings"]
    assert not any("identified" in w for w in good)


def test_planner_warns_on_isoflop_edges_and_refuses_repetition(tmp_path, capsys):
    found = plan.main(["sweep=isoflop", "budget.flops=3e10,1e13", f"results_dir={tmp_path}"])
    assert sum("at the edge" in w for w in found["warnings"]) == 2
    assert found["errors"] and all("repeats its data" in e and "data.max_epochs=4" in e for e in found["errors"])
    assert all("_D" in e.split()[1] and "e+12" not in e for e in found["errors"])  # names each cell
    raised = plan.main(["sweep=isoflop", "budget.flops=3e10,1e13", "data.max_epochs=40", f"results_dir={tmp_path}"])
    assert not raised["errors"]


def test_plan_command_line(tmp_path):
    out = cli("harness-plan", "sweep=smoke", f"results_dir={tmp_path}", cwd=ROOT)
    assert out.returncode == 0 and "4 cells (4 to run)" in out.stdout
    bad = cli("harness-plan", "sweep=nope", cwd=ROOT)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1


def test_planner_expands_a_sweep_exactly_as_hydra_does(tmp_path, capsys):
    for axis in ("model=gpt2-20k,gpt2-50k", "hydra.sweeper.params.model='gpt2-20k,gpt2-50k'"):
        plan.main(["sweep=tiny", axis, f"results_dir={tmp_path}"])
        printed = capsys.readouterr().out
        assert "2 cells (2 to run)" in printed and "gpt2-100k" not in printed  # one WSD trunk per size
    # Hydra refuses a sweep over its own config; the planner used to accept it and plan its cells
    unquoted = ["sweep=tiny", "hydra.sweeper.params.model=gpt2-20k,gpt2-50k", f"results_dir={tmp_path}"]
    planned, trained = cli("harness-plan", *unquoted, cwd=tmp_path), cli("harness-train", "-m", *unquoted, cwd=tmp_path)
    assert planned.returncode == trained.returncode == 2
    assert planned.stderr.split(": error: ")[1] == trained.stderr.split(": error: ")[1]
    assert "Sweeping over Hydra's configuration is not supported" in planned.stderr
