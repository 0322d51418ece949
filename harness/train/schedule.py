"""Learning-rate schedules as pure functions of the step (torch-free)."""
from __future__ import annotations

import math

from harness.config import OptimConfig
from harness.errors import HarnessError


def lr_at(step: int, steps: int, warmup_steps: int, peak: float, o: OptimConfig) -> float:
    """LR for optimizer step `step` (0-based) of a run of exactly `steps` steps."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if o.schedule == "cosine":
        # Hoffmann et al. (2022): one cosine cycle over exactly the run's D, down to min_lr_ratio.
        t = (step - warmup_steps) / max(1, steps - warmup_steps)
        return peak * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
    if o.schedule == "wsd":
        return peak * wsd_factor(step, steps, o)
    raise HarnessError(f"optim.schedule={o.schedule!r} is not one of 'cosine', 'wsd'")


def wsd_factor(step: int, steps: int, o: OptimConfig) -> float:
    """Warmup-stable-decay after warmup: constant, then a cooldown over the last fraction of steps."""
    cooldown = max(1, round(o.cooldown_fraction * steps))
    t = (step - (steps - cooldown)) / cooldown
    if t < 0:
        return 1.0
    if o.cooldown_shape == "1-sqrt":  # Haegele et al. (2024) found 1-sqrt beats linear
        return 1 - math.sqrt(t)
    if o.cooldown_shape == "linear":
        return 1 - t
    raise HarnessError(f"optim.cooldown_shape={o.cooldown_shape!r} is not one of '1-sqrt', 'linear'")


def validate(o: OptimConfig) -> None:
    lr_at(0, 2, 1, 1.0, o)
    lr_at(1, 2, 0, 1.0, o)
