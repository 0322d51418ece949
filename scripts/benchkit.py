"""What the step benchmarks share (bench_moe.py, bench_distributed.py): the median wall time of the
harness's real training step (loop.Session.step, as harness-train runs it) after a warm-up."""
from __future__ import annotations

import statistics
import time


def median_step_seconds(session, lr: float, steps: int, warmup: int, before=None) -> float:
    """Median seconds of `steps` steps after `warmup` untimed ones; `before()` runs ahead of each step
    (a barrier, so processes start a step together)."""
    times = []
    for i in range(warmup + steps):
        if before is not None:
            before()
        t0 = time.perf_counter()
        session.step(lr).item()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
