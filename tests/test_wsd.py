"""WSD branches: one trunk per N, a cooldown per budget, each branch a record the collector reads."""
import pytest

from harness.errors import Diverged, HarnessError
from harness.fit.collect import collect
from harness.store import records
from harness.train import cell, spec
from tests.conftest import make_config

BASE = ["model=gpt2-20k", "data.val_tokens=16384", "optim.lr=0.01", "optim.warmup_tokens=10240",
        "optim.batch_tokens=512"]


def test_branches_become_records_and_match_cosine_within_noise(tmp_path):
    results = tmp_path / "results"
    cfg = make_config(*BASE, "optim=wsd", "budget.tokens=120000", "branches=[0.5]", f"results_dir={results}")
    trunk = cell.run(cfg)
    assert trunk["status"] == "finished" and len(trunk["branches"]) == 2
    # the trunk shares the first 0.8 * 60k tokens with the short branch: cheaper than two runs
    assert trunk["summary"]["train_tokens"] < 0.85 * (120_000 + 60_000)
    runs, _ = collect(str(results))
    d = spec.resolve(cfg)
    assert len(runs) == 2 and sorted(runs["D"]) == [round(d.steps / 2) * 512, d.D]
    assert set(runs["schedule"]) == {"wsd"}

    cosine = make_config(*BASE, "budget.tokens=60000", f"results_dir={results}")
    cos_loss = cell.run(cosine)["summary"]["val/loss"]
    wsd_loss = runs.loc[runs["D"] == runs["D"].min(), "loss"].item()
    # Haegele et al. (2024): WSD with a 20% cooldown matches cosine; tiny-model seed noise is ~0.03
    assert abs(wsd_loss - cos_loss) < 0.08, (wsd_loss, cos_loss)
    again = cell.run(cfg)  # done: skipped
    assert again == trunk or again["branches"] == trunk["branches"]


def test_branch_plan_ends_at_each_budget():
    cfg = make_config("optim=wsd", "branches=[0.25,0.5]", "budget.tokens=102400", "optim.batch_tokens=1024")
    plan = spec.resolve(cfg).branches
    assert [end for _, end in plan] == [25, 50, 100]
    assert all(end - start == round(0.2 * end) for start, end in plan)


def test_branches_need_the_wsd_schedule(tmp_path):
    cfg = make_config("branches=[0.5]", f"results_dir={tmp_path}")
    with pytest.raises(HarnessError, match="wsd"):
        cell.run(cfg)
    assert not records.sweep_status(tmp_path / "single")


def test_a_diverging_branch_is_recorded_once(tmp_path):
    results = tmp_path / "results"
    # budget 20 steps; the 5% branch cools down from step 0, so the blow-up happens inside a branch
    cfg = make_config(*BASE, "optim=wsd", "optim.lr=1e30", "budget.tokens=10240", "branches=[0.05]",
                      f"results_dir={results}")
    with pytest.raises(Diverged) as info:
        cell.run(cfg)
    assert info.value.recorded  # so a multirun does not write a second, invalid-* record
    (branch,) = [p.parent for p in results.rglob("summary.json")]
    assert records.read(branch)["status"] == "diverged"
    assert records.read(branch.parent, records.TRUNK)["status"] == "diverged"
