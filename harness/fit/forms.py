"""Scaling-law forms: what fit, bootstrap, back-test, report and plots need to know of a law (numpy only).

A form predicts log L from data columns (N, D and, for `datacon`, U = unique training tokens) for a
batch of parameter vectors theta in its internal coordinates (logs of scales, plain exponents),
which keep the fit well scaled. Each coordinate has a box: a bootstrap refit that ends on an edge
of it has run off to infinity, and `fit.summarise` then calls that parameter "not identified".

  chinchilla  L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, eq. 2)
  kaplan      L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan et al. 2020, eq. 1.5; no floor)
  datacon     chinchilla with D replaced by the effective data D' of repeated tokens (Muennighoff
              et al. 2023, eq. 5): D' = U + U R* (1 - exp(-R/R*)), R = D/U - 1 repetitions beyond
              the first epoch. N is used as it is: their excess-parameter term needs U_N, the
              compute-optimal size for the unique data, taken from another fit; our studies stay
              within a few epochs, where that term is ~0.
Constraints any form with those parameters may take: a fixed floor (E=1.9), tied exponents
(alpha=beta). `get("chinchilla", E=1.9, tie=True)` builds the constrained form.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from harness.errors import HarnessError


def _lse(*terms):
    m = np.maximum.reduce(terms)
    return m + np.log(sum(np.exp(t - m) for t in terms))


def _chinchilla(theta, X):
    a, b, e, alpha, beta = (theta[:, k:k + 1] for k in range(5))
    return _lse(a - alpha * X["logN"], b - beta * X["logD"], np.broadcast_to(e, (len(theta), X["logN"].size)))


def _chinchilla_jac(theta, X):
    a, b, e, alpha, beta = (theta[:, k:k + 1] for k in range(5))
    t = np.stack(np.broadcast_arrays(a - alpha * X["logN"], b - beta * X["logD"], e), -1)
    lp = _lse(t[..., 0], t[..., 1], t[..., 2])
    s = np.exp(t - lp[..., None])  # softmax weights of the three terms
    J = np.stack([s[..., 0], s[..., 1], s[..., 2], -s[..., 0] * X["logN"], -s[..., 1] * X["logD"]], -1)
    return lp, J


def _kaplan(theta, X):
    lnc, ldc, an, ad = (theta[:, k:k + 1] for k in range(4))
    return ad * _lse(an / ad * (lnc - X["logN"]), ldc - X["logD"])


def _kaplan_jac(theta, X):
    lnc, ldc, an, ad = (theta[:, k:k + 1] for k in range(4))
    u, v = np.broadcast_arrays(an / ad * (lnc - X["logN"]), ldc - X["logD"])
    lse = _lse(u, v)
    su, sv = np.exp(u - lse), np.exp(v - lse)
    J = np.stack(np.broadcast_arrays(an * su, ad * sv, su * (lnc - X["logN"]), lse - su * u), -1)
    return ad * lse, J


def effective_data(D, U, r_star):
    """Muennighoff et al. (2023) eq. 5: D' from D tokens over U unique ones, decay constant R*."""
    U = np.minimum(U, D)  # a run that sees each token at most once has R = 0, D' = D
    R = D / U - 1
    return U + U * r_star * (-np.expm1(-R / r_star))


def _datacon(theta, X):
    a, b, e, alpha, beta, lr = (theta[:, k:k + 1] for k in range(6))
    d_eff = effective_data(X["D"], X["U"], np.exp(lr))
    return _lse(a - alpha * X["logN"], b - beta * np.log(d_eff), np.broadcast_to(e, d_eff.shape))


def _datacon_jac(theta, X):
    r_star = np.exp(theta[:, 5:6])
    U = np.minimum(X["U"], X["D"])
    x = (X["D"] / U - 1) / r_star
    d_eff = U + U * r_star * (-np.expm1(-x))
    lp, J = _chinchilla_jac(theta[:, :5], {"logN": X["logN"], "logD": np.log(d_eff)})
    # d log D' / d log R* = R* U (1 - e^-x (1 + x)) / D', through the B/D'^beta term
    dlog = r_star * U * (-np.expm1(-x) - x * np.exp(-x)) / d_eff
    return lp, np.concatenate([J, (-J[..., 1] * theta[:, 4:5] * dlog)[..., None]], -1)


def _chinchilla_phys(theta):
    return {"E": np.exp(theta[:, 2]), "A": np.exp(theta[:, 0]), "B": np.exp(theta[:, 1]),
            "alpha": theta[:, 3], "beta": theta[:, 4]}


def _kaplan_phys(theta):
    return {"N_c": np.exp(theta[:, 0]), "D_c": np.exp(theta[:, 1]), "alpha_N": theta[:, 2], "alpha_D": theta[:, 3]}


def _datacon_phys(theta):
    return {**_chinchilla_phys(theta), "R_D": np.exp(theta[:, 5])}


@dataclass(frozen=True)
class Form:
    name: str
    params: tuple  # physical parameter names, in the order reports print them
    coords: tuple  # internal coordinates theta, one per parameter
    columns: tuple  # data columns the form reads
    _log_predict: Callable
    _physical: Callable  # theta (R, p) -> {param: (R,) array}
    bounds: tuple  # (lo, hi) per coordinate
    _jac: Callable | None = None  # analytic (log L_hat, d log L_hat / d theta); else central differences
    fixed: dict = field(default_factory=dict)  # coordinate index -> value (constraints)
    tie: tuple = ()  # (i, j): theta[j] is theta[i]
    constraint: str = ""  # how the constraints read, e.g. "E=1.9, beta=alpha"

    @property
    def free(self) -> list[int]:
        return [k for k in range(len(self.coords)) if k not in self.fixed and (not self.tie or k != self.tie[1])]

    def expand(self, z: np.ndarray) -> np.ndarray:
        """Free coordinates (R, q) -> full theta (R, p)."""
        theta = np.empty((len(z), len(self.coords)))
        theta[:, self.free] = z
        for k, v in self.fixed.items():
            theta[:, k] = v
        if self.tie:
            theta[:, self.tie[1]] = theta[:, self.tie[0]]
        return theta

    def log_predict(self, z: np.ndarray, X: dict) -> np.ndarray:
        return self._log_predict(self.expand(np.atleast_2d(z)), X)

    def log_predict_jac(self, z: np.ndarray, X: dict) -> tuple[np.ndarray, np.ndarray]:
        """(log L_hat (R, n), its Jacobian in the free coordinates (R, n, q))."""
        theta = self.expand(z)
        if self._jac is not None:
            lp, J = self._jac(theta, X)
            if self.tie:
                J = J.copy()
                J[..., self.tie[0]] += J[..., self.tie[1]]
            return lp, J[..., self.free]
        lp = self._log_predict(theta, X)
        h = 1e-6
        cols = []
        for k in range(z.shape[1]):
            step = np.zeros(z.shape[1])
            step[k] = h
            cols.append((self.log_predict(z + step, X) - self.log_predict(z - step, X)) / (2 * h))
        return lp, np.stack(cols, -1)

    def physical(self, z: np.ndarray) -> dict:
        return {k: v for k, v in self._physical(self.expand(np.atleast_2d(z))).items()}

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        b = np.array(self.bounds, float)[self.free]
        return b[:, 0], b[:, 1]

    @property
    def label(self) -> str:
        return self.name + (f" ({self.constraint})" if self.constraint else "")

    @property
    def n_free(self) -> int:
        return len(self.free)

    def coord_param(self, k: int) -> str:
        """The physical parameter coordinate k sets (log A -> A)."""
        return self.coords[k].removeprefix("log ")


_BIG = (-10.0, 80.0)  # log of a scale: e^80 ~ 5e34; a refit that reaches it has run off to infinity
_EXP = (0.01, 3.0)  # exponents
_FLOOR = (np.log(0.01), 3.0)  # E from 0.01 nats (a floor too small to detect: "no floor") to 20
CHINCHILLA = Form("chinchilla", ("E", "A", "B", "alpha", "beta"), ("log A", "log B", "log E", "alpha", "beta"),
                  ("N", "D"), _chinchilla, _chinchilla_phys, (_BIG, _BIG, _FLOOR, _EXP, _EXP), _chinchilla_jac)
KAPLAN = Form("kaplan", ("N_c", "D_c", "alpha_N", "alpha_D"), ("log N_c", "log D_c", "alpha_N", "alpha_D"),
              ("N", "D"), _kaplan, _kaplan_phys, ((-10.0, 150.0), (-10.0, 150.0), (0.005, 3.0), (0.005, 3.0)),
              _kaplan_jac)
DATACON = Form("datacon", ("E", "A", "B", "alpha", "beta", "R_D"), ("log A", "log B", "log E", "alpha", "beta",
                                                                    "log R_D"),
               ("N", "D", "U"), _datacon, _datacon_phys, CHINCHILLA.bounds + ((np.log(0.01), np.log(1e4)),),
               _datacon_jac)
FORMS = {f.name: f for f in (CHINCHILLA, KAPLAN, DATACON)}
# where the constrainable parameters live in theta
_COORD = {"E": (2, np.log), "alpha": (3, float), "beta": (4, float)}


def get(name: str, E: float | None = None, tie: bool = False) -> Form:
    """A form by name, with a fixed floor E and/or tied exponents alpha = beta."""
    if name not in FORMS:
        raise HarnessError(f"form={name!r} is not one of {sorted(FORMS)}")
    form = FORMS[name]
    fixed, pair, words = {}, (), []
    if E is not None:
        if "E" not in form.params:
            raise HarnessError(f"form {name} has no floor E to fix (its parameters: {', '.join(form.params)})")
        if not E > 0:
            raise HarnessError(f"fixed E={E} must be positive")
        fixed[_COORD["E"][0]] = float(np.log(E))
        words.append(f"E={E:g}")
    if tie:
        if not {"alpha", "beta"} <= set(form.params):
            raise HarnessError(f"form {name} has no exponents alpha and beta to tie")
        pair = (_COORD["alpha"][0], _COORD["beta"][0])
        words.append("beta=alpha")
    if not words:
        return form
    return Form(**{**form.__dict__, "fixed": fixed, "tie": pair, "constraint": ", ".join(words)})


def data(form: Form, table) -> dict:
    """The columns the form reads, as float arrays, with their logs; checks they are usable."""
    X = {}
    for c in form.columns:
        if c not in table:
            raise HarnessError(f"form {form.name} needs a column {c!r} (U: unique training tokens of each run)")
        x = np.asarray(table[c], float)
        if not np.all(np.isfinite(x) & (x > 0)):
            raise HarnessError(f"form {form.name}: column {c!r} has missing or non-positive values")
        X[c] = x
    X["logN"], X["logD"] = np.log(X["N"]), np.log(X["D"])
    return X


def subset(X: dict, idx) -> dict:
    return {k: v[idx] for k, v in X.items()}


def starts(form: Form, X: dict, L: np.ndarray) -> np.ndarray:
    """Starting points (K, q) in free coordinates: a grid over the exponents with the scales solved
    in closed form where the form allows (linear in E, A, B once alpha, beta are fixed), else a
    coarse grid over the box. Batched LM refines all of them at once (fit.fit)."""
    from scipy.optimize import nnls

    if form.name in ("chinchilla", "datacon"):
        out = []
        D = X["D"] if form.name == "chinchilla" else effective_data(X["D"], X["U"], 15.0)
        for alpha in np.linspace(0.05, 1.5, 10):
            for beta in np.linspace(0.05, 1.5, 10):
                M = np.column_stack([np.ones_like(L), X["N"] ** -alpha, D ** -beta])
                scale = M.max(axis=0)  # columns span many decades; NNLS wants them comparable
                E, A, B = np.maximum(nnls(M / scale, L)[0] / scale, 1e-3)
                full = [np.log(A), np.log(B), np.log(E), alpha, beta]
                full += [np.log(15.0)] if form.name == "datacon" else []
                out.append(full)
        full = np.array(out)
    else:
        g = np.meshgrid(np.log(X["N"]).max() + np.array([0.0, 5, 15]), np.log(X["D"]).max() + np.array([0.0, 5, 15]),
                        [0.05, 0.15, 0.4], [0.05, 0.15, 0.4], indexing="ij")
        full = np.column_stack([x.ravel() for x in g])
    lo, hi = form.box()
    z = np.clip(full[:, form.free], lo, hi)
    return np.unique(z, axis=0)
