"""Chinchilla approaches 1 and 2 and Kaplan-style single-variable power laws (numpy only, no I/O).

Approach 2 (Hoffmann et al. 2022, sec. 3.2): at each compute budget fit a parabola of loss in
log N, take its minimum, then fit N*(C) ∝ C^a and D*(C) ∝ C^b across budgets.
Approach 1: the lowest final loss at each compute budget and the (N, D) that attain it.
"""

from __future__ import annotations

import numpy as np

MIN_PER_BUDGET = 3  # a parabola needs three distinct N
_LOG_FLOAT_MAX = float(np.log(np.finfo(float).max))  # exp() of more overflows


def group_budgets(C, tol_dex=0.02) -> np.ndarray:
    """Label points by compute budget: sorted log10 C splits where a gap exceeds tol_dex.

    Real sweeps plan a few budgets but C = 6ND drifts a little from rounding D to whole steps
    (and Epoch's SVG extraction adds read-out noise), so exact equality would split budgets."""
    logC = np.log10(np.asarray(C, float))
    order = np.argsort(logC)
    labels = np.empty(len(logC), int)
    labels[order] = np.concatenate([[0], np.cumsum(np.diff(logC[order]) > tol_dex)])
    return labels


def _parabolas(x, y, labels, weights):
    """Weighted quadratic fits y ~ q0 + q1 u + q2 u^2 per label, batched over weight rows.

    u = (x - centre) / scale per label: at N ~ 1e30 raw log N sits near 69 with a spread of a few
    units, and the normal equations in 1, x, x^2 lose the curvature's digits (a convex
    parabola comes out concave). weights: (R, n) bootstrap counts (or ones).
    Returns {label: ((R, 3) coefficients in u, centre, scale)}; `_vertex` maps back to x."""
    out = {}
    for g in np.unique(labels):
        m = labels == g
        X, centre, scale = _design(x[m])
        W = weights[:, m]
        XtWX = np.einsum("ri,ij,ik->rjk", W, X, X)
        XtWy = np.einsum("ri,ij,i->rj", W, X, y[m])
        coef = np.full((len(W), 3), np.nan)
        ok = np.linalg.matrix_rank(XtWX) == 3  # resample kept < 3 distinct N in this budget
        if ok.any():
            coef[ok] = np.linalg.solve(XtWX[ok], XtWy[ok][..., None])[..., 0]
        out[g] = coef, centre, scale
    return out


def _design(x):
    """Columns 1, u, u^2 of u = (x - centre) / scale, with centre and scale."""
    centre = x.mean()
    scale = np.ptp(x) / 2 or 1.0  # one distinct N: _parabolas' rank test rejects it anyway
    u = (x - centre) / scale
    return np.column_stack([np.ones(len(x)), u, u**2]), centre, scale


def _vertex(coef, centre, scale):
    """(x at the minimum, y there) per coefficient row; NaN where the parabola has no minimum."""
    q0, q1, q2 = coef[:, 0], coef[:, 1], coef[:, 2]
    convex = q2 > 0  # NaN rows (rank-deficient resamples) compare False
    u = np.full(len(coef), np.nan)
    u[convex] = -q1[convex] / (2 * q2[convex])
    return centre + scale * u, q0 + q1 * u + q2 * u**2


def _power_law(C, Y):
    """Slope and intercept of log Y = k log C + c (least squares), None if < 2 points."""
    C, Y = np.asarray(C, float), np.asarray(Y, float)
    if len(C) < 2 or np.ptp(np.log(C)) == 0:
        return None
    k, c = np.polyfit(np.log(C), np.log(Y), 1)
    return float(k), float(c)


def isoflop(N, L, C, weights=None, tol_dex=0.02) -> dict | None:
    """Approach 2. Returns budgets, rejected budgets (with reason), exponents a and b.

    A budget whose parabola opens downward or whose minimum lies outside the N range sampled at
    that budget is rejected: the optimum there is an extrapolation, not a measurement."""
    N, L, C = (np.asarray(v, float) for v in (N, L, C))
    labels = group_budgets(C, tol_dex)
    keep = np.isin(labels, [g for g in np.unique(labels)
                            if len(np.unique(N[labels == g])) >= MIN_PER_BUDGET])
    if not keep.any():
        return None
    x = np.log(N[keep])
    w = np.ones((1, keep.sum())) if weights is None else np.asarray(weights, float)[None, keep]
    coefs = _parabolas(x, L[keep], labels[keep], w)
    budgets, rejected = [], []
    for g, (coef, centre, scale) in coefs.items():
        m = labels == g
        Cg = float(np.exp(np.log(C[m]).mean()))  # geometric mean: the budget's nominal C
        (xs,), (loss_opt,) = _vertex(coef, centre, scale)
        lo, hi = np.log(N[m]).min(), np.log(N[m]).max()
        if not np.isfinite(xs):
            rejected.append({"C": Cg, "n_points": int(m.sum()), "reason": "no minimum (concave)"})
        elif not lo < xs < hi:
            rejected.append({"C": Cg, "n_points": int(m.sum()),
                             "reason": "minimum at the edge of the sampled N range"})
        else:
            N_opt = float(np.exp(xs))
            budgets.append({"C": Cg, "N_opt": N_opt, "D_opt": Cg / (6 * N_opt),
                            "loss_opt": float(loss_opt),
                            "n_points": int(m.sum())})
    out = {"budgets": budgets, "rejected": rejected, "a": None, "b": None}
    fa = _power_law([b["C"] for b in budgets], [b["N_opt"] for b in budgets])
    fb = _power_law([b["C"] for b in budgets], [b["D_opt"] for b in budgets])
    if fa and fb and len(budgets) >= 2:
        out["a"], out["b"] = fa[0], fb[0]
        out["a_intercept"], out["b_intercept"] = fa[1], fb[1]
    return out


def isoflop_bootstrap(N, L, C, counts, tol_dex=0.02) -> dict:
    """Bootstrap samples of the approach-2 exponents a and b from (R, n) resample counts.

    Budgets are those accepted on the full data; a resample whose minimum leaves the sampled
    range at some budget drops that budget for that resample only."""
    N, L, C = (np.asarray(v, float) for v in (N, L, C))
    kept = _kept_budgets(N, L, C, tol_dex)
    if kept is None:
        return {}
    labels, keep_g = kept
    keep = np.isin(labels, keep_g)
    coefs = _parabolas(np.log(N[keep]), L[keep], labels[keep], np.asarray(counts)[:, keep])
    xs = np.full((len(counts), len(keep_g)), np.nan)
    for j, g in enumerate(keep_g):
        x, _ = _vertex(*coefs[g])
        lo, hi = np.log(N[labels == g]).min(), np.log(N[labels == g]).max()
        xs[:, j] = np.where((x > lo) & (x < hi), x, np.nan)  # NaN (no minimum) compares False
    return _exponents(C, labels, keep_g, xs)


def _kept_budgets(N, L, C, tol_dex):
    """(budget labels, the labels of the budgets approach 2 accepts on the full data), or None."""
    full = isoflop(N, L, C, tol_dex=tol_dex)
    if not full or full["a"] is None:
        return None
    labels = group_budgets(C, tol_dex)
    return labels, [labels[np.argmin(np.abs(np.log(C) - np.log(b["C"])))] for b in full["budgets"]]


def _exponents(C, labels, keep_g, xs) -> dict:
    """a and b per resample from its log N* at each kept budget (NaN: that budget dropped); a needs 2."""
    logC = np.array([np.log(C[labels == g]).mean() for g in keep_g])
    a = np.full(len(xs), np.nan)
    for r in range(len(xs)):
        ok = np.isfinite(xs[r])
        if ok.sum() >= 2:
            a[r] = np.polyfit(logC[ok], xs[r, ok], 1)[0]
    # D* = C/(6 N*), so log D* = log C - log N* - log 6 and b = 1 - a per resample
    return {"a": a, "b": 1.0 - a}


def envelope(N, D, L, C, tol_dex=0.02) -> dict:
    """Approach 1: the lowest loss at each compute budget, kept where it beats every cheaper budget.

    Runs are grouped into budgets as approach 2 groups them (group_budgets): the sizes of one
    IsoFLOP budget differ in C in the 4th digit (D rounded to whole steps), and taking each as its
    own budget would put nearly every run of a budget "on the envelope", the worst included.
    Each point is the best run of its budget, at its own C; n_runs counts the budget's runs."""
    N, D, L, C = (np.asarray(v, float) for v in (N, D, L, C))
    labels = group_budgets(C, tol_dex)  # numbered in ascending order of C
    idx, low = [], np.inf
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        i = members[np.argmin(L[members])]
        if L[i] < low:  # a dearer budget whose best run is no better is not on the envelope
            idx.append(i)
            low = L[i]
    idx = np.array(idx, int)
    out = {"points": [{"C": float(C[i]), "N": float(N[i]), "D": float(D[i]), "loss": float(L[i]),
                       "n_runs": int(np.sum(labels == labels[i]))} for i in idx], "a": None, "b": None}
    if len(idx) >= 3 and np.ptp(np.log(C[idx])) > 0:
        out["a"] = _power_law(C[idx], N[idx])[0]
        out["b"] = _power_law(C[idx], D[idx])[0]
    return out


def kaplan_laws(N, D, L, C, min_span_dex=0.5, tol_dex=0.02) -> dict:
    """Kaplan et al. (2020)-style pure power laws L = (X_c / X)^alpha_X for X in N, D, C.

    L(N) uses the best loss at each N (the least data-limited run), L(D) the best at each D,
    L(C) the approach-1 envelope. Only fitted with >= 3 distinct X spanning min_span_dex."""
    N, D, L, C = (np.asarray(v, float) for v in (N, D, L, C))
    env = envelope(N, D, L, C, tol_dex)["points"]
    series = {"N": _best_per(N, L), "D": _best_per(D, L),
              "C": (np.array([p["C"] for p in env]), np.array([p["loss"] for p in env]))}
    out = {}
    for name, (X, Y) in series.items():
        if len(np.unique(X)) < 3 or np.log10(X.max() / X.min()) < min_span_dex:
            continue
        k, c = _power_law(X, Y)
        alpha = -k
        out[name] = {"alpha": alpha, "X_c": _scale(c, alpha), "n_points": int(len(X))}
    return out


def _scale(c, alpha):
    """X_c = exp(c / alpha) of log L = c - alpha log X; None without a positive exponent.

    A nearly flat law (alpha -> 0) puts X_c past the float range: that is inf (the report shows
    ∞, fit.json null), not an overflow."""
    if not alpha > 0:
        return None
    return float(np.exp(c / alpha)) if c / alpha < _LOG_FLOAT_MAX else float("inf")


def _best_per(X, L):
    ux = np.unique(X)
    return ux, np.array([L[X == u].min() for u in ux])


def isoflop_wild_bootstrap(N, L, C, n_resamples=1000, seed=0, tol_dex=0.02) -> dict:
    """Bootstrap samples of a and b with the sizes held fixed: a wild bootstrap of each budget's parabola.

    The sizes of an IsoFLOP grid are designed, not sampled, so resampling cells (isoflop_bootstrap)
    answers the wrong question: with 5-7 sizes per budget a resample keeps 3-4 distinct sizes and
    the vertex swings far more than noise moves it. Here every resample keeps every cell and
    perturbs its loss by its own parabola residual times a random sign (Rademacher; Wu 1986, Liu
    1988), the residual rescaled by 1/sqrt(1 - leverage) (MacKinnon & White 1985's HC2) so that a
    3-parameter fit to 5 points does not shrink the noise. A cell keeps its own residual size, so
    noisier cells (short D, on the early plateau) stay noisier. Budgets as isoflop_bootstrap."""
    N, L, C = (np.asarray(v, float) for v in (N, L, C))
    kept = _kept_budgets(N, L, C, tol_dex)
    if kept is None:
        return {}
    labels, keep_g = kept
    rng = np.random.default_rng(seed)
    xs = np.empty((n_resamples, len(keep_g)))
    for j, g in enumerate(keep_g):
        m = labels == g
        x = np.log(N[m])
        X, centre, scale = _design(x)
        P = np.linalg.pinv(X)  # (3, n): coefficients = P @ y
        fitted = X @ (P @ L[m])
        lev = np.clip(np.einsum("ij,ji->i", X, P), 0.0, 0.99)
        r = (L[m] - fitted) / np.sqrt(1.0 - lev)
        signs = rng.choice([-1.0, 1.0], size=(n_resamples, m.sum()))
        coef = (fitted + signs * r) @ P.T
        u, _ = _vertex(coef, centre, scale)
        xs[:, j] = np.where((u > x.min()) & (u < x.max()), u, np.nan)
    return _exponents(C, labels, keep_g, xs)
