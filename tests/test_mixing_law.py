"""The data mixing law (fit/mixing.py): a known law recovered from noisy mixtures, its interval's
coverage measured by simulation, the optimum found inside the fitted range, and too few mixtures refused."""
import numpy as np
import pytest

from harness.errors import HarnessError
from harness.fit import mixing

SHARES = np.array([0.0, 0.2, 0.4, 0.6, 0.8])
TRUE = {"code": (1.9, 3.0, -4.0), "wiki": (3.0, 0.8, 2.5)}  # (c, k, t): L = c + k exp(t * code share)


def _losses(a, rng=None, sd=0.0):
    y = np.stack([c + k * np.exp(t * np.asarray(a)) for c, k, t in TRUE.values()], axis=-1)
    return y + (rng.normal(0, sd, y.shape) if rng is not None else 0)


def test_a_known_mixing_law_is_recovered_and_predicts_a_held_out_mixture():
    rng = np.random.default_rng(0)
    law = mixing.fit(list(TRUE), np.c_[SHARES, 1 - SHARES], _losses(SHARES, rng, 0.005), n_bootstrap=50)
    for got, (c, k, t) in zip(law.laws, TRUE.values()):
        assert got.t[0] == pytest.approx(t, rel=0.1) and got.c == pytest.approx(c, abs=0.1)
    held = law.predict([0.3, 0.7])
    assert np.all(np.abs(held / _losses(0.3) - 1) < 0.01)  # within 1 % of the truth


def test_the_prediction_interval_covers_the_truth_at_its_nominal_rate():
    rng, sd, hits, n = np.random.default_rng(1), 0.01, 0, 40
    for _ in range(n):
        law = mixing.fit(list(TRUE), np.c_[SHARES, 1 - SHARES], _losses(SHARES, rng, sd), n_bootstrap=60,
                         seed=int(rng.integers(1 << 30)))
        new = _losses(0.3, rng, sd)  # a new run at the held-out mixture, with its own noise
        got = mixing.interval(law, [0.3, 0.7], sd)
        hits += all(p["pi95"][0] <= y <= p["pi95"][1] for p, y in zip(got.values(), new))
    assert hits / n >= 0.8  # both domains inside: nominal 0.95^2 = 0.90, minus sampling noise of 40 draws


def test_the_optimum_minimises_the_target_inside_the_fitted_shares():
    law = mixing.fit(list(TRUE), np.c_[SHARES, 1 - SHARES], _losses(SHARES), n_bootstrap=30)
    best = mixing.optimum(law, {"code": 0.5, "wiki": 0.5})
    grid = np.linspace(0, 0.8, 801)
    truth = grid[np.argmin(_losses(grid).mean(axis=1))]
    assert best["shares"]["code"] == pytest.approx(truth, abs=0.01) and not best["at_bound"]
    assert best["share_ci95"][0] <= best["shares"]["code"] <= best["share_ci95"][1]
    only_wiki = mixing.optimum(law, {"wiki": 1.0})  # wiki alone is best with the least code that trains on it:
    assert only_wiki["shares"]["code"] == pytest.approx(0.2, abs=1e-3) and only_wiki["at_bound"]  # the bound


def test_too_few_mixtures_are_refused():
    with pytest.raises(HarnessError, match="2 distinct mixtures train on code, to fit 3 parameters"):
        mixing.fit(list(TRUE), np.c_[SHARES[:3], 1 - SHARES[:3]], _losses(SHARES[:3]))


def test_a_domain_the_mixture_never_trains_on_is_not_fitted_by_its_law():
    """A model that never saw code scores it above ln V (10.4 nats at V = 2048 in results/data_mix): that
    mixture is left out of code's law and kept in wiki's, so the law of the trained mixtures is unchanged."""
    y = _losses(SHARES)
    unseen = y.copy()
    unseen[0, 0] = 10.4
    a, b = (mixing.fit(list(TRUE), np.c_[SHARES, 1 - SHARES], v, n_bootstrap=5) for v in (y, unseen))
    assert a.laws == b.laws and a.laws[0].t[0] == pytest.approx(TRUE["code"][2], rel=1e-3)
    assert b.laws[1].rmse < 1e-6  # wiki's law still uses the mixture with no code
