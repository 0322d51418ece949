"""Repetition as a measured effect: what a repeated token is worth, from the `datacon` fit.

Muennighoff et al. (2023) eq. 5 replaces D by the effective data D' = U + U R* (1 - exp(-R/R*)),
R = D/U - 1 repeated epochs: the k-th repetition of a token is worth exp(-(k-1)/R*) of a fresh one,
and the R* they fit is 15.4 (R_D* in their paper). Here, per repeated run, the value measured is
what its loss says: the fresh-token data D_eff at which the fitted law gives the measured loss (the
law's data term solved for D, A/N^alpha taken from the same fit), then the value of each repeated
token, (D_eff - U) / (D - U), beside the fitted curve R* (1 - exp(-R/R*)) / R. Torch-free, no I/O.
"""
from __future__ import annotations

import numpy as np

MUENNIGHOFF_R_D = 15.4  # Muennighoff et al. (2023), fitted R_D* (their Table/eq. 5)
MIN_EPOCHS = 2.0  # a study of repetition needs runs that repeat their data at least this often
MEASURE_FROM = 1.5  # epochs: below, D - U is so small that the measured value is mostly noise


def value_of_repeats(epochs, r_star) -> np.ndarray:
    """Average worth of a repeated token relative to a fresh one after `epochs` passes (> 1)."""
    R = np.maximum(np.asarray(epochs, float) - 1, 1e-12)
    return r_star * -np.expm1(-R / r_star) / R


def analyse(table, fit) -> dict | None:
    """R_D with its interval, and each repeated run's measured value; None if nothing repeats."""
    if fit is None or "U" not in table or table["epochs"].max() < MIN_EPOCHS or table["U"].nunique() < 2:
        return None
    p = fit.params
    rep = table[table["epochs"] >= MEASURE_FROM].sort_values("epochs")
    data_term = rep["loss"].to_numpy() - p["E"] - p["A"] / rep["N"].to_numpy() ** p["alpha"]
    with np.errstate(invalid="ignore", divide="ignore"):
        d_eff = np.where(data_term > 0, (p["B"] / data_term) ** (1 / p["beta"]), np.inf)
    U, D = rep["U"].to_numpy(), rep["D"].to_numpy()
    runs = [{"cell_key": k, "N": int(n), "U": int(u), "D": int(d), "epochs": float(e), "loss": float(loss),
             "D_eff": float(de), "value_measured": float((de - u) / (d - u)),
             "value_fitted": float(value_of_repeats(e, p["R_D"]))}
            for k, n, u, d, e, loss, de in zip(rep["cell_key"], rep["N"], U, D, rep["epochs"], rep["loss"], d_eff)]
    return {"R_D": p["R_D"], "ci95": fit.ci95.get("R_D"), "stderr": fit.stderr.get("R_D"),
            "not_identified": "R_D" in fit.not_identified, "muennighoff_R_D": MUENNIGHOFF_R_D,
            "max_epochs": float(table["epochs"].max()), "unique_tokens": sorted(int(u) for u in table["U"].unique()),
            "runs": runs}
