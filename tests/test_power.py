"""Power analysis (``poisonrepro.power``): computed with the decision rule itself, it keeps the
false-positive rate at the level, grows with the units and the effect, and refuses percentages."""
import math

import pytest

from poisonrepro import power as P
from poisonrepro import stats as S


def test_without_an_effect_the_paired_test_holds_at_most_at_its_level():
    for n in (5, 20, 40):
        assert P.paired_success_power(n, 0.1, 0.1) <= S.ALPHA
        assert P.paired_success_power(n, 0.0, 0.0) == 0.0


def test_power_grows_with_the_units_and_the_effect_and_holm_costs_power():
    assert P.paired_success_power(10, 0.45, 0.02) < P.paired_success_power(16, 0.45, 0.02)
    assert P.paired_success_power(16, 0.25, 0.02) < P.paired_success_power(16, 0.45, 0.02)
    assert P.paired_success_power(16, 0.45, 0.02, S.ALPHA / 2) < P.paired_success_power(16, 0.45, 0.02)
    # five successes of five discordant pairs: exact McNemar p = 1/32, the smallest p with n = 5
    assert P.paired_success_power(5, 1.0, 0.0) == 1.0
    assert P.paired_success_power(4, 1.0, 0.0) == 0.0   # p = 1/16 > 0.05 whatever happens


def test_the_monte_carlo_above_the_exact_range_agrees_with_the_enumeration():
    exact = P.paired_success_power(P.EXACT_UNITS, 0.1, 0.02)
    drawn = P.paired_success_power(P.EXACT_UNITS + 1, 0.1, 0.02)
    assert abs(exact - drawn) < 0.05


def test_units_for_and_the_t_power():
    n = P.units_for(lambda k: P.paired_success_power(k, 0.45, 0.022))
    assert P.paired_success_power(n, 0.45, 0.022) >= P.TARGET_POWER > P.paired_success_power(n - 1, 0.45, 0.022)
    assert P.units_for(lambda k: 0.0, n_max=10) == math.inf
    assert P.mean_difference_power(10, 0.0, 0.005, -0.02) > 0.99
    assert P.mean_difference_power(10, -0.02, 0.005, -0.02) <= S.ALPHA + 1e-9


@pytest.mark.parametrize("args, message", [((10, 45, 0.02), "share, not a percentage"),
                                           ((0, 0.4, 0.02), "at least one unit")])
def test_bad_input_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        P.paired_success_power(*args)
