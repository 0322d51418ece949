"""The throughput benchmark runs (it once broke silently in a refactor) and reports what it claims."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_throughput_times_both_sides_in_alternating_rounds(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_throughput.py"), "--device", "cpu",
                    "--sizes", "1x32", "--steps", "6", "--rounds", "3", "--warmup", "1", "--batch-tokens", "128",
                    "--ctx", "64", "--vocab", "256", "--threads", "1", "--compile", "off", "--out", str(out)],
                   check=True, capture_output=True, text=True)
    (row,) = json.loads(out.read_text())["sizes"]
    for side in ("harness", "reference"):
        r = row[side]
        assert len(r["round_ms"]) == 3 and min(r["round_ms"]) <= r["step_ms"] <= max(r["round_ms"])
        assert r["tokens_per_s"] == 1e3 * 128 / r["step_ms"]
    assert row["harness"]["N"] == row["reference"]["N"]
    assert row["ratio"] == row["harness"]["tokens_per_s"] / row["reference"]["tokens_per_s"]
