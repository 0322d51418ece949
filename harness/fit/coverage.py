"""Coverage of the prediction interval by simulation, on truths outside the candidate forms (numpy only).

A study's design (its fitted cells' N, D) is kept; the losses are drawn from a law that none of the
candidate forms can express, plus the study's own noise; the fitter then does what it does on real
runs (every form fitted, bootstrapped and back-tested; the headline chosen by its rollout) and
predicts cells outside the design along one axis (held_out), whose losses are drawn the same way:
C, +1 dex at the fitted shape; N, twice the largest fitted N at the fitted compute; D/N, three times
beyond either end of the fitted D/N range at the fitted compute. Over many draws of the truth's
parameters, the share of those cells inside their 95 % interval is the interval's coverage; the
median half-width against the median |error| says whether it covers by being useless.

Truths, each about a Chinchilla law `base` (E, A, B, alpha, beta; e.g. the study's own fit):
  broken_power_law  the N term's exponent changes by delta at a break N_b drawn within the fitted
                    sizes or up to one decade beyond them: A N^-alpha (1 + N / N_b)^-delta;
  transient         a data-starved transient on top, T exp(-D / D_0), of T nats at D_0 near the
                    smallest fitted D (loss that the short-D cells carry and the long ones shed).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.fit import forms
from harness.fit.analysis import fit_forms, form_section, model_choice
from harness.fit.law import interval_parts

TRUTHS = ("broken_power_law", "transient")


def truth(kind: str, base: dict, N, D, rng):
    """A function L(N, D) drawn from `kind` about the Chinchilla law `base`, at design (N, D)."""
    E, A, B, alpha, beta = (base[k] for k in ("E", "A", "B", "alpha", "beta"))
    if kind == "broken_power_law":
        n_b = 10 ** rng.uniform(np.log10(np.min(N)), np.log10(np.max(N)) + 1)
        delta = rng.uniform(-0.2, 0.2)
        return lambda n, d: E + A / n ** alpha * (1 + n / n_b) ** -delta + B / d ** beta
    if kind == "transient":
        T, d0 = rng.uniform(0.05, 0.3), np.min(D) * 10 ** rng.uniform(-0.5, 0.3)
        return lambda n, d: E + A / n ** alpha + B / d ** beta + T * np.exp(-d / d0)
    raise ValueError(f"truth {kind!r} is not one of {TRUTHS}")


AXES = ("C", "N", "D/N")


def held_out(N, D, dex=1.0, axis="C"):
    """Cells outside the design along `axis`. C: `dex` beyond the largest C, the two largest sizes
    scaled up by half the distance (a study's held-out cells grow N and D together). N: 2x the largest
    N at the largest C and at half of it (a bigger model at the fitted compute, so fewer tokens per
    parameter). D/N: 3x above and 3x below the fitted D/N range at the largest C."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    c_max = 6 * np.max(N * D)
    if axis == "C":
        c = c_max * 10 ** dex
        n = np.sort(np.unique(N))[-2:] * 10 ** (dex / 2)
        return n, c / (6 * n)
    if axis == "N":
        n = np.full(2, 2.0 * N.max())
        return n, np.array([c_max, c_max / 2]) / (6 * n)
    if axis == "D/N":
        r = np.array([3.0 * np.max(D / N), np.min(D / N) / 3.0])
        n = np.sqrt(c_max / (6 * r))
        return n, r * n
    raise ValueError(f"axis {axis!r} is not one of {AXES}")


def draw(kind: str, base: dict, N, D, noise: float, seed: int, n_bootstrap=100,
         names=("chinchilla", "kaplan"), dex=1.0, axis="C") -> dict:
    """One simulated study and its prediction outside the design along `axis`: inside (per cell),
    half-width and |error| in log loss, the headline form."""
    rng = np.random.default_rng(seed)
    N, D = np.asarray(N, float), np.asarray(D, float)
    f = truth(kind, base, N, D, rng)
    table = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": f(N, D) * np.exp(rng.normal(0, noise, len(N)))})
    fits, rollouts, _ = fit_forms(table, names, n_bootstrap=n_bootstrap, seed=seed)
    choice = model_choice({lab: form_section(fit) for lab, fit in fits.items()}, rollouts, None)
    head = fits[choice["headline"]]
    nh, dh = held_out(N, D, dex, axis)
    measured = f(nh, dh) * np.exp(rng.normal(0, noise, len(nh)))
    iv = interval_parts(head, forms.data(head.form, pd.DataFrame({"N": nh, "D": dh})), seed=seed)
    err = np.log(measured) - np.log(iv["point"])
    inside = (measured >= iv["lo"]) & (measured <= iv["hi"])
    return {"inside": inside, "halfwidth": (np.log(iv["hi"]) - np.log(iv["lo"])) / 2, "abs_error": np.abs(err),
            "headline": choice["headline"], "parts": {k: v.tolist() for k, v in iv["parts"].items()}}


def coverage(kind: str, base: dict, N, D, noise: float, n_draws=50, n_bootstrap=100, seed=0, axis="C") -> dict:
    """Coverage, median half-width and median |error| of the predictions along `axis` (C: +1 dex)
    over n_draws truths."""
    rows = [draw(kind, base, N, D, noise, seed + i, n_bootstrap, axis=axis) for i in range(n_draws)]
    inside = np.concatenate([r["inside"] for r in rows])
    hw = np.concatenate([r["halfwidth"] for r in rows])
    err = np.concatenate([r["abs_error"] for r in rows])
    heads = pd.Series([r["headline"] for r in rows]).value_counts().to_dict()
    return {"truth": kind, "axis": axis, "n_draws": n_draws, "n_cells": int(len(inside)),
            "coverage": float(inside.mean()),
            "median_halfwidth": float(np.median(hw)), "median_abs_error": float(np.median(err)),
            "width_to_error": float(np.median(hw) / np.median(err)), "headlines": heads, "noise": noise}
