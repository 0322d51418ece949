"""The reproduction verdict: every reference cell within the stated tolerance and a's intervals overlapping."""
import pandas as pd

from harness.report.compare import TOLERANCE_NATS, compare


def _table(losses: dict) -> pd.DataFrame:
    return pd.DataFrame({"cell": list(losses), "loss": list(losses.values())})


def _fit(a, lo, hi) -> dict:
    return {"parametric": {"E": 1, "A": 1, "B": 1, "alpha": 0.3, "beta": 0.3},
            "compute_optimal": {"a": a, "ci95": {"a": [lo, hi]}}}


REF = {"c1": 4.0, "c2": 3.5, "c3": 3.0}


def test_within_tolerance_and_overlapping_laws_is_reproduced_in_one_line():
    new = {k: v + (0.8 * TOLERANCE_NATS if k == "c2" else 0.0) for k, v in REF.items()}
    v = compare(_table(new), _fit(0.658, 0.587, 0.743), _table(REF), _fit(0.675, 0.592, 0.751))["verdict"]
    assert v["reproduced"] and v["a_overlap"] and not v["outside"] and not v["missing"]
    assert v["line"].startswith("reproduced: 3 cells within 0.01 nats") and "overlaps" in v["line"]


def test_each_failure_is_named():
    new = {"c1": 4.0 + 2 * TOLERANCE_NATS, "c2": 3.5}  # c1 off, c3 never rerun
    v = compare(_table(new), _fit(0.5, 0.45, 0.55), _table(REF), _fit(0.675, 0.592, 0.751))["verdict"]
    assert not v["reproduced"] and v["missing"] == ["c3"] and v["outside"][0].startswith("c1 (+0.02")
    assert v["a_overlap"] is False
    assert v["line"].startswith("NOT reproduced") and all(s in v["line"] for s in ("c1", "c3", "does not overlap"))


def test_the_tolerance_is_a_bound_not_a_target():
    new = {k: v - TOLERANCE_NATS for k, v in REF.items()}  # exactly at the bound: inside
    assert compare(_table(new), _fit(0.6, 0.5, 0.7), _table(REF), _fit(0.6, 0.5, 0.7))["verdict"]["reproduced"]
    tighter = compare(_table(new), _fit(0.6, 0.5, 0.7), _table(REF), _fit(0.6, 0.5, 0.7), tolerance=0.005)
    assert not tighter["verdict"]["reproduced"] and len(tighter["verdict"]["outside"]) == 3


def test_a_reference_with_seed_noise_is_matched_within_its_own_seed_sd():
    """Another CPU's float order perturbs every cell a little (0.011 nats at most across 25 tiny cells on
    one machine, against a seed sd of 0.036): a reference that measured its seed noise is the bound."""
    ref_fit = {**_fit(0.6, 0.5, 0.7), "seed_noise": {"pooled_sd": 0.036}}
    near = {k: v + 0.011 for k, v in REF.items()}
    v = compare(_table(near), _fit(0.6, 0.5, 0.7), _table(REF), ref_fit)["verdict"]
    assert v["reproduced"] and v["tolerance_nats"] == 0.036 and "within 0.036 nats" in v["line"]
    far = {k: v + (0.05 if k == "c1" else 0.0) for k, v in REF.items()}  # more than a seed apart
    v = compare(_table(far), _fit(0.6, 0.5, 0.7), _table(REF), ref_fit)["verdict"]
    assert not v["reproduced"] and v["outside"] == ["c1 (+0.0500)"]
