"""Reading runs back: sweep directories (summary.json + wandb offline logs), wandb.Api, CSV."""

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.fit.collect import collect
from harness.fit.law import fit_parametric
from harness.fit.points import fit_table
from harness.store import records
from harness.store.wandb_log import wait_complete


def summary(N, D, loss, seed=0, cell="c0", status="finished", N_ne=None):
    N_ne = N_ne or int(N * 0.8)
    return {"val/loss": loss, "train/loss": loss + 0.01, "N": N, "N_nonembed": N_ne, "D": D,
            "C": 6 * N * D, "C_attn": 6.1 * N * D, "C_kaplan": 6 * N_ne * D, "epochs": 0.5,
            "wall_s": 1.0, "status": status, "schedule": "cosine", "seed": seed,
            "cell_id": cell, "sweep": "s", "arch": "gpt", "model": "tiny"}


def write_run(root, name, s, status=None, error=None):
    d = root / "grid" / name  # nested one level: the collector must search recursively
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "run_id": name, "cell_id": s["cell_id"], "sweep": "s", "status": status or s["status"],
        "error": error, "config": {"model": {"n_layer": 2}}, "summary": s}))
    return d


def test_directory_seeds_averaged_and_failures_listed(tmp_path):
    write_run(tmp_path, "r1", summary(1000, 10**6, 3.0, seed=0, cell="a"))
    write_run(tmp_path, "r2", summary(1000, 10**6, 3.2, seed=1, cell="a"))
    write_run(tmp_path, "r3", summary(2000, 10**6, 2.9, cell="b"))
    write_run(tmp_path, "r4", summary(4000, 10**6, float("nan"), cell="c", status="diverged"),
              error="loss is NaN at step 12")
    write_run(tmp_path, "r5", summary(8000, 10**6, 2.5, cell="d", status="running"))
    runs, warnings = collect(str(tmp_path))
    assert len(runs) == 5 and not warnings
    table, excluded = fit_table(runs)
    assert sorted(table["cell"]) == ["a", "b"]
    a = table.set_index("cell").loc["a"]
    assert a["loss"] == pytest.approx(3.1) and a["n_seeds"] == 2
    assert a["loss_std"] == pytest.approx(np.std([3.0, 3.2], ddof=1))
    assert a["C"] == pytest.approx(6 * 1000 * 10**6)
    reasons = {e["run_id"]: e["reason"] for e in excluded}
    assert set(reasons) == {"r4", "r5"} and "NaN at step 12" in reasons["r4"]


def test_nonembed_convention_uses_kaplan_compute(tmp_path):
    write_run(tmp_path, "r1", summary(1000, 10**6, 3.0, N_ne=700))
    table, _ = fit_table(collect(str(tmp_path))[0], n_convention="nonembed")
    assert table["N"][0] == 700 and table["C"][0] == pytest.approx(6 * 700 * 10**6)
    with pytest.raises(HarnessError, match="n_convention"):
        fit_table(collect(str(tmp_path))[0], n_convention="embed")


def test_directory_reads_wandb_offline_log_and_cross_checks(tmp_path):
    wandb = pytest.importorskip("wandb")
    os.environ["WANDB_SILENT"] = "true"
    s = summary(1000, 10**6, 3.0)
    run_dir = write_run(tmp_path, "r1", {**s, "val/loss": 9.9})  # summary.json disagrees
    run = wandb.init(mode="offline", dir=run_dir, project="t", config={"derived": s})
    run.log({"train/loss": 3.5})
    run.summary.update(s)
    log = run.settings.sync_file
    run.finish()
    assert wait_complete(log)  # finish() can return before the last block is flushed (track.py)
    record = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**record, "run_id": run.id}))
    runs, warnings = collect(str(tmp_path))
    assert runs["loss"][0] == 3.0 and runs["source"][0].endswith(".wandb")
    assert len(warnings) == 1 and "val/loss differs" in warnings[0]


def _copy_tiny(tmp_path):
    """The committed tiny study (real runs with their wandb logs), copied so it can be damaged."""
    src = Path(__file__).resolve().parents[1] / "results" / "tiny"
    dst = tmp_path / "tiny"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.png", "*.md"))
    return dst


def test_a_truncated_wandb_log_never_feeds_its_step_0_loss_into_the_fit(tmp_path):
    clean = fit_table(collect(str(_copy_tiny(tmp_path / "a")))[0], n_convention="nonembed")[0]
    damaged_dir = _copy_tiny(tmp_path / "b")
    runs = collect(str(damaged_dir))[0]
    dearest = runs.loc[runs["C_6N"].idxmax()]
    cell = next(d for d, rec in records.iter_records(damaged_dir) if rec["cell_id"] == dearest["cell_id"])
    (log,) = cell.glob("wandb/offline-run-*/run-*.wandb")
    os.truncate(log, log.stat().st_size // 2)  # what a full disk or a killed sync leaves
    runs, warnings = collect(str(damaged_dir))
    damaged = fit_table(runs, n_convention="nonembed")[0]
    assert len(warnings) == 1 and "incomplete" in warnings[0] and dearest["cell_id"] in warnings[0]
    assert damaged["loss"].tolist() == clean["loss"].tolist()  # summary.json's final loss, not step 0's
    fits = [fit_parametric(t["N"], t["D"], t["loss"]).params for t in (clean, damaged)]
    assert fits[0] == fits[1]


def test_a_log_without_a_record_counts_only_if_it_ends_in_its_exit_record(tmp_path):
    src = next(_copy_tiny(tmp_path / "src").glob("gpt2-5k_*/wandb/offline-run-*/run-*.wandb"))  # a whole run
    for name, cut in (("whole", False), ("cut", True)):
        dst = tmp_path / "logs" / name / src.name
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)
        if cut:
            os.truncate(dst, dst.stat().st_size - 100)
    runs, _ = collect(str(tmp_path / "logs"))
    table, excluded = fit_table(runs, n_convention="nonembed")
    assert len(table) == 1 and 4 < table["loss"][0] < 6
    (why,) = excluded
    assert why["status"] == "incomplete" and "no exit record" in why["reason"] and "cut" in why["reason"]


def test_a_crashed_attempts_log_beside_the_record_is_not_a_second_seed(tmp_path):
    root = _copy_tiny(tmp_path)
    clean, _ = fit_table(collect(str(root))[0], n_convention="nonembed")
    run_dir = next(root.glob("gpt2-5k_*"))
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    stale = run_dir / "wandb" / "offline-run-20260101_000000-zzzz" / "run-zzzz.wandb"
    stale.parent.mkdir()
    shutil.copy(log, stale)
    table, _ = fit_table(collect(str(root))[0], n_convention="nonembed")
    assert table["n_seeds"].tolist() == clean["n_seeds"].tolist() and len(table) == len(clean)


# Recorded shape of wandb.Api().runs("ENTITY/PROJECT") results (no server here, so the test
# replays it through a fake Api): each run has .id, .state, .group, .config and .summary.
RECORDED_API_RUNS = json.loads("""[
 {"id": "a1", "state": "finished", "group": "grid", "config": {"seed": 0},
  "summary": {"val/loss": 3.0, "N": 1000, "N_nonembed": 800, "D": 1000000, "C": 6e9,
              "status": "finished", "cell_id": "a", "seed": 0, "_runtime": 12.5}},
 {"id": "a2", "state": "finished", "group": "grid", "config": {"seed": 1},
  "summary": {"val/loss": 3.2, "N": 1000, "N_nonembed": 800, "D": 1000000, "C": 6e9,
              "status": "finished", "cell_id": "a", "seed": 1}},
 {"id": "b1", "state": "finished", "group": "grid", "config": {},
  "summary": {"val/loss": "NaN", "N": 2000, "D": 1000000, "status": "diverged",
              "cell_id": "b"}},
 {"id": "c1", "state": "crashed", "group": "grid", "config": {},
  "summary": {"N": 4000, "D": 1000000, "cell_id": "c"}}
]""")


class FakeApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return [SimpleNamespace(**r) for r in self._runs]


def test_wandb_project_through_recorded_api():
    api = FakeApi(RECORDED_API_RUNS)
    runs, _ = collect("wandb:me/scaling", api=api, group="grid")
    assert api.calls == [("me/scaling", {"group": "grid"})]
    table, excluded = fit_table(runs)
    assert len(table) == 1 and table["loss"][0] == pytest.approx(3.1)
    assert {e["run_id"]: e["status"] for e in excluded} == {"b1": "diverged", "c1": "crashed"}


# Where other people's runs keep N, D and loss (harness-fit col_N= ..., harness/fit/mapping.py).
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al. 2022


def chinchilla_loss(N, D, rng):
    p = CHINCHILLA
    law = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
    return float(law * np.exp(rng.normal(0, 0.005)))  # ~0.5 % noise, like seed-to-seed spread


def test_plain_wandb_offline_runs_fit_through_a_column_mapping(tmp_path):
    """The issue: runs from a plain wandb script (config N, D; logged val/loss), no harness record."""
    wandb = pytest.importorskip("wandb")
    rng, logged = np.random.default_rng(0), {}
    for N in (1e6, 4e6, 1.6e7, 6.4e7):
        for D in (2e7, 8e7, 3.2e8, 1.28e9):
            run = wandb.init(mode="offline", dir=tmp_path, project="plain", config={"N": N, "D": D})
            for loss in (9.0, chinchilla_loss(N, D, rng)):  # an early eval, then the final one
                run.log({"val/loss": loss})
            log = run.settings.sync_file
            run.finish()
            assert wait_complete(log)  # finish() can return before the last block is flushed
            logged[(N, D)] = loss
    with pytest.raises(HarnessError, match=r"col_N=config\.KEY or summary\.KEY"):
        fit_table(collect(str(tmp_path))[0])  # without a mapping: N is in the config, not the summary
    runs, _ = collect(str(tmp_path), columns={"N": "config.N", "D": "config.D", "loss": "summary.val/loss"})
    table, excluded = fit_table(runs, "total")
    assert len(table) == 16 and not excluded and set(table["status"]) == {"finished"}
    assert {(n, d): loss for n, d, loss in zip(table["N"], table["D"], table["loss"])} == logged
    assert np.allclose(table["C"], 6 * table["N"] * table["D"]) and table["N_nonembed"].isna().all()


def api_run(run_id, config, summary, state="finished"):
    return {"id": run_id, "state": state, "group": "g", "config": config, "summary": summary}


def test_wandb_project_column_mapping_reads_config_and_summary():
    rng = np.random.default_rng(1)
    grid = [(1e6, 2e7), (4e6, 2e7), (4e6, 8e7)]
    runs = [api_run(f"r{i}", {"model": {"n_params": N}, "tokens": D},
                    {"eval/loss": chinchilla_loss(N, D, rng), "tokens": 1.0, "flops": 6 * N * D})
            for i, (N, D) in enumerate(grid)]
    runs.append(api_run("x", {"model": {"n_params": 1e6}, "tokens": 2e7}, {"eval/loss": 3.0}, "crashed"))
    runs_table, _ = collect("wandb:me/p", api=FakeApi(runs), columns={
        "N": "config.model.n_params", "D": "config.tokens", "loss": "summary.eval/loss"})
    table, excluded = fit_table(runs_table)
    assert sorted(zip(table["N"], table["D"])) == grid
    assert [(e["run_id"], e["status"]) for e in excluded] == [("x", "crashed")]
    # A bare name is the summary key first (tokens 1.0 here), then the config key.
    bare, _ = collect("wandb:me/p", api=FakeApi(runs[:1]), columns={"N": "model.n_params", "D": "tokens",
                                                                    "loss": "eval/loss"})
    assert bare["D"][0] == 1.0 and bare["N_total"][0] == 1e6
    # Only C mapped: D = C / (6 N).
    by_C, _ = collect("wandb:me/p", api=FakeApi(runs), columns={"N": "config.model.n_params",
                                                                "C": "summary.flops", "loss": "eval/loss"})
    assert np.allclose(by_C["D"][:3], [D for _, D in grid])


def test_explicit_default_columns_read_the_harness_keys_as_before():
    """harness-fit always passes col_N=N, col_D=D, col_C=C, col_loss=loss: that is no mapping."""
    plain, _ = collect("wandb:me/scaling", api=FakeApi(RECORDED_API_RUNS))
    explicit, _ = collect("wandb:me/scaling", api=FakeApi(RECORDED_API_RUNS),
                          columns={"N": "N", "D": "D", "C": "C", "loss": "loss"})
    assert plain.equals(explicit) and plain["N_nonembed"].notna().any()


def test_a_mapped_key_missing_from_a_run_excludes_it_by_name():
    runs = [api_run("a", {"N": 1e6, "D": 2e7}, {"val/loss": 3.0}),
            api_run("b", {"N": 2e6}, {"val/loss": 2.9}),
            api_run("c", {"N": 4e6, "D": 2e7}, {"val/loss": "oops"})]
    columns = {"N": "config.N", "D": "config.D", "loss": "summary.val/loss"}
    table, excluded = fit_table(collect("wandb:me/p", api=FakeApi(runs), columns=columns)[0])
    assert list(table["run_id"]) == ["a"]
    why = {e["run_id"]: e["reason"] for e in excluded}
    assert "no config key 'D' (col_D=config.D)" in why["b"]
    assert "summary key 'val/loss' is 'oops', not a number" in why["c"]
    no_N = {**columns, "N": "config.n_params"}  # a typo that no run has: one clear error, naming it
    with pytest.raises(HarnessError, match=r"no run carries N: no config key 'n_params' \(col_N=config\.n_params\)"):
        fit_table(collect("wandb:me/p", api=FakeApi(runs), columns=no_N)[0])


def test_csv_default_columns_and_C_to_D(tmp_path):
    (tmp_path / "a.csv").write_text("N,D,loss\n1e6,2e7,3.0\n2e6,4e7,2.8\n")
    (tmp_path / "b.csv").write_text("N,C,loss\n1e6,1.2e14,3.0\n")
    t, _ = fit_table(collect(str(tmp_path / "a.csv"))[0])
    assert list(t["D"]) == [2e7, 4e7] and t["C"][0] == pytest.approx(6 * 1e6 * 2e7)
    t, _ = fit_table(collect(str(tmp_path / "b.csv"))[0])
    assert t["D"][0] == pytest.approx(1.2e14 / 6e6)


def test_csv_column_mapping_and_drop_highest(tmp_path):
    (tmp_path / "x.csv").write_text("params,flops,L\n1e6,1.2e14,3.0\n2e6,2.4e14,5.0\n"
                                    "3e6,3.6e14,2.0\n")
    runs, _ = collect(str(tmp_path / "x.csv"), columns={"N": "params", "C": "flops",
                                                        "loss": "L"})
    t, excluded = fit_table(runs, drop_highest=1)
    assert sorted(t["loss"]) == [2.0, 3.0] and "drop_highest" in excluded[0]["reason"]


@pytest.mark.parametrize("text, match", [
    ("N,D\n1,2\n", r"lacks column\(s\) \['loss'\]"),
    ("N,D,loss\n1e6,2e7,nan\n", "NaN or non-positive"),
    ("N,D,loss\n1e6,-2e7,3.0\n", "NaN or non-positive"),
    ("", "bad.csv is empty"),
    ("N,D,loss\n", "bad.csv has a header .* but no data rows"),
])
def test_csv_bad_input(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(HarnessError, match=match):
        collect(str(tmp_path / "bad.csv"))


def test_missing_source():
    with pytest.raises(HarnessError, match="no such directory or file"):
        collect("/nonexistent/runs")


def test_schedule_filter_and_seedless_cell_key(tmp_path):
    cos = {**summary(1000, 10**6, 3.0), "cell_key": "k"}
    cos2 = {**summary(1000, 10**6, 3.2, seed=1, cell="c1"), "cell_key": "k"}
    wsd = {**summary(1000, 10**6, 3.05, cell="w"), "schedule": "wsd", "cell_key": "kw"}
    for name, s in (("r1", cos), ("r2", cos2), ("r3", wsd)):
        write_run(tmp_path, name, s)
    runs, _ = collect(str(tmp_path))
    both, _ = fit_table(runs)
    assert len(both) == 2 and sorted(both["n_seeds"]) == [1, 2]  # seeds of one cell averaged
    only_wsd, _ = fit_table(runs, schedule="wsd")
    assert len(only_wsd) == 1 and only_wsd["loss"].item() == pytest.approx(3.05)
    with pytest.raises(HarnessError):
        fit_table(runs, schedule="linear")


def test_exported_runs_csv_reads_back_under_both_conventions(tmp_path):
    for i, (N, D) in enumerate([(1000, 10**6), (2000, 10**6), (2000, 4 * 10**6)]):
        write_run(tmp_path / "runs", f"r{i}", summary(N, D, 3.0 - 0.1 * i, cell=f"c{i}", N_ne=N // 2))
    for convention in ("total", "nonembed"):
        table, _ = fit_table(collect(str(tmp_path / "runs"))[0], n_convention=convention)
        csv = tmp_path / f"{convention}.csv"
        table.to_csv(csv, index=False)  # what harness-fit writes as runs.csv
        again, _ = fit_table(collect(str(csv))[0], n_convention=convention)
        for k in ("N", "N_total", "N_nonembed", "D", "C", "loss", "epochs"):
            assert np.allclose(again[k], table[k]), k
    plain = tmp_path / "plain.csv"
    plain.write_text("N,D,loss\n1000,1000000,3.0\n")
    with pytest.raises(HarnessError, match=r"no run carries N_nonembed \(a CSV column N_nonembed, or for wandb runs "
                                           r"col_N_nonembed=KEY\); use n_convention=total$"):
        fit_table(collect(str(plain))[0], n_convention="nonembed")


def test_missing_convention_column_suggests_the_other_convention():
    no_total = [{"id": "a", "state": "finished", "group": "g", "config": {},
                 "summary": {"val/loss": 3.0, "N_nonembed": 800, "D": 10**6, "status": "finished"}}]
    runs, _ = collect("wandb:me/p", api=FakeApi(no_total))
    with pytest.raises(HarnessError, match=r"no run carries N_total .*; use n_convention=nonembed$"):
        fit_table(runs, n_convention="total")


def test_one_wandb_run_found_twice_is_read_once(tmp_path):
    """wandb's `latest-run` link, copied as a folder (cp -r, shutil.copytree), holds the same log again."""
    from tests.conftest import ROOT

    src = next((ROOT / "results" / "tiny").rglob("offline-run-*"))
    for name in (src.name, "latest-run"):
        shutil.copytree(src, tmp_path / "wandb" / name)
    runs, _ = collect(str(tmp_path))
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
