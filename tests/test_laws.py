"""Each published law in fit/laws.py reproduces a number its paper prints, from the constants held."""

import math

import pytest

from harness.fit.laws import PUBLISHED


def _a(law):
    """Exponent of N_opt(C) for a Chinchilla-form law: beta / (alpha + beta)."""
    return law.beta / (law.alpha + law.beta)


def test_kaplan_joint_fit_gives_the_overfitting_exponent_of_eq_4_4():
    # Eq. 4.4 prints D >~ 5e3 N^0.74, with 0.74 = alpha_N / alpha_D of table 2's joint fit.
    k = PUBLISHED["kaplan2020"].kaplan
    assert round(k["alpha_N"] / k["alpha_D"], 2) == 0.74
    assert "table 2" in PUBLISHED["kaplan2020"].source


def test_kaplan_law_tends_to_its_own_data_limit():
    # With D -> infinity eq. 1.5 becomes L(N) = (N_c / N)^alpha_N (eq. 1.1's form, table 2's N_c).
    law = PUBLISHED["kaplan2020"]
    k = law.kaplan
    N = 1e9
    assert float(law.predict(N, 1e30)) == pytest.approx((k["N_c"] / N) ** k["alpha_N"], rel=1e-6)


def test_hoffmann_unrounded_gives_table_2_approach_3_exponents():
    law = PUBLISHED["hoffmann2022_unrounded"]
    assert round(_a(law), 2) == 0.46 and round(1 - _a(law), 2) == 0.54
    # ...and rounds to the constants printed in eq. 10.
    printed = PUBLISHED["hoffmann2022"]
    assert (round(law.E, 2), round(law.A, 1), round(law.B, 1)) == (printed.E, printed.A, printed.B)


def test_hoffmann_as_printed_is_within_its_rounding_of_table_2():
    # alpha 0.34 and beta 0.28 are printed to 2 digits, and so is a = 0.46: the a their rounding allows
    # must meet [0.455, 0.465).
    law = PUBLISHED["hoffmann2022"]
    lo = (law.beta - 0.005) / (law.alpha + 0.005 + law.beta - 0.005)
    hi = (law.beta + 0.005) / (law.alpha - 0.005 + law.beta + 0.005)
    assert lo < 0.465 and hi >= 0.455 and abs(_a(law) - 0.46) < 0.01


def test_epoch_replication_gives_its_printed_exponent():
    # Besiroglu et al. 2024 print a = beta / (alpha + beta) = 0.513.
    assert round(_a(PUBLISHED["epoch2024"]), 3) == 0.513


def test_every_entry_is_covered_here():
    assert set(PUBLISHED) == {"hoffmann2022", "hoffmann2022_unrounded", "epoch2024", "kaplan2020"}
    for law in PUBLISHED.values():
        assert math.isfinite(float(law.predict(1e9, 2e10)))
