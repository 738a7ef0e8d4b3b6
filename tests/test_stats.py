"""The statistical verdicts on cases where the answer is known: a fair coin, a strong
trend, a null trend, a tie, and the edges 0/n, n/n, n = 0."""
import math

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from poisonrepro import plots as P
from poisonrepro import stats as S
from poisonrepro.results import Results
from poisonrepro.summary import write_summary


def test_fair_coin_is_inconclusive_against_half_and_fails_against_high_rates():
    d = S.rate_test(50, 100, 0.5, ">")
    assert d.verdict == "inconclusive" and math.isinf(d.n_needed)
    assert S.rate_test(50, 100, 0.8, ">").verdict == "fails"
    assert S.rate_test(50, 100, 0.2, ">").verdict == "holds"
    assert S.rate_test(50, 100, 0.2, "<").verdict == "fails"


def test_rate_verdict_needs_enough_trials():
    # 9/10 against 0.8 cannot be told apart; 90/100 can
    small, large = S.rate_test(9, 10, 0.8), S.rate_test(90, 100, 0.8)
    assert small.verdict == "inconclusive" and small.n_needed > 10
    assert large.verdict == "holds" and large.p < 0.05 and large.ci_low > 0.8


@pytest.mark.parametrize("k,n", [(0, 30), (30, 30), (0, 1), (1, 1)])
def test_rate_edges_keep_the_rate_inside_its_bounds(k, n):
    d = S.rate_test(k, n, 0.5)
    assert d.ci_low <= d.measured <= d.ci_high
    lo, hi = S.wilson(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


def test_no_trials_is_inconclusive_not_an_error():
    for d in (S.rate_test(0, 0, 0.5), S.rate_difference_test(0, 0, 3, 10), S.mean_test([], 0.0),
              S.mean_test([1.0], 0.0), S.correlation_test([1, 2], [3, 4]),
              S.count_trend_test([1], [0], [0]), S.slope_trend_test([1, 1, 1], [1, 2, 3])):
        assert d.verdict == "inconclusive" and math.isnan(d.n_needed)


def test_rate_difference():
    assert S.rate_difference_test(28, 30, 2, 30).verdict == "holds"
    assert S.rate_difference_test(2, 30, 28, 30).verdict == "fails"
    # two trials each: Newcombe's bound clears 0 but Fisher's p is 1/6, so it cannot hold
    tiny = S.rate_difference_test(2, 2, 0, 2)
    assert tiny.ci_low > 0 and tiny.p > 0.05 and tiny.verdict == "inconclusive"
    d = S.rate_difference_test(5, 10, 5, 10)
    assert d.verdict == "inconclusive" and d.measured == 0
    # a minimum effect: 0.60 vs 0.50 on 2000 trials each is significant but below a 0.2 margin
    assert S.rate_difference_test(600, 1000, 500, 1000).verdict == "holds"
    assert S.rate_difference_test(600, 1000, 500, 1000, margin=0.2).verdict == "fails"
    # 0/n on one side with a margin: no warning may leak into a notebook's output
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert S.rate_difference_test(1, 60, 0, 30, 0.5).verdict == "fails"


def test_count_trend_strong_null_and_tie():
    x, n = [1, 5, 10, 25, 50], [30] * 5
    strong = S.count_trend_test(x, [0, 5, 12, 20, 28], n, ">", min_change=0.1)
    assert strong.verdict == "holds" and strong.p < 1e-6
    assert S.count_trend_test(x, [28, 20, 12, 5, 0], n, ">").verdict == "fails"
    rng = np.random.default_rng(0)
    null = S.count_trend_test(x, rng.binomial(30, 0.5, 5), n, ">", min_change=0.3)
    assert null.verdict in ("fails", "inconclusive") and null.verdict != "holds"
    tie = S.count_trend_test(x, [0] * 5, n, ">", min_change=0.1)
    assert tie.verdict == "fails" and tie.p == 1.0  # nothing ever succeeds: no rise of 0.1


def test_cochran_armitage_p_matches_the_textbook_formula():
    x, k, n = np.array([0, 1, 2, 3.0]), np.array([2, 4, 6, 9]), np.array([20, 20, 20, 20])
    N, pbar = n.sum(), k.sum() / n.sum()
    T = np.sum(x * (k - n * pbar))
    var = pbar * (1 - pbar) * (np.sum(n * x ** 2) - np.sum(n * x) ** 2 / N)
    from scipy.stats import norm
    p_textbook = norm.sf(T / math.sqrt(var * N / (N - 1)))  # linear-by-linear form: N - 1 for N
    assert S.count_trend_test(x, k, n).p == pytest.approx(p_textbook, rel=1e-6)


def test_slope_and_correlation_trends():
    rng = np.random.default_rng(1)
    x = np.repeat(np.linspace(0, 1, 6), 5)
    assert S.slope_trend_test(x, 2 * x + 0.1 * rng.normal(size=x.size), ">", 0.5).verdict == "holds"
    assert S.slope_trend_test(x, rng.normal(size=x.size), ">", 1.5).verdict == "fails"
    assert S.correlation_test(x, x + 0.05 * rng.normal(size=x.size), ">", 0.8).verdict == "holds"
    null = S.correlation_test(x, rng.normal(size=x.size), ">", 0.0)
    assert null.verdict != "holds" and null.p > 0.05
    # a tie: one side constant, no correlation can be claimed
    assert S.correlation_test(x, np.ones_like(x)).verdict == "inconclusive"


def test_paired_and_mean_tests():
    a = np.array([0.30, 0.35, 0.32, 0.31, 0.36])
    b = a - np.array([0.10, 0.12, 0.09, 0.11, 0.10])
    assert S.paired_difference_test(a, b, 0.05).verdict == "holds"
    assert S.paired_difference_test(a, b, 0.2).verdict == "fails"
    assert S.paired_difference_test(a, a).verdict == "inconclusive"  # identical: exactly at the margin
    assert S.mean_test([0.002, 0.001, 0.003], 0.01, "<").verdict == "holds"  # all equal spread case below
    assert S.mean_test([0.5, 0.5, 0.5], 0.01, "<").verdict == "fails"
    with pytest.raises(ValueError):
        S.paired_difference_test([1, 2], [1, 2, 3])


def test_decide_refuses_an_unknown_side():
    with pytest.raises(ValueError, match="side"):
        S.decide(1, 0, 2, 0, ">=", test="t", n=3)


def test_error_bars_never_negative_at_the_edges():
    rates = np.array([0.0, 1.0, 0.5, np.nan, 0.3])
    lows = np.array([1e-17, 1.0 + 1e-16, 0.2, np.nan, 0.3 + 1e-15])  # bounds a rounding error off
    highs = np.array([0.1, 1.0 - 1e-16, 0.8, np.nan, 0.5])
    yerr = P.error_bars(rates, lows, highs)
    assert (yerr >= 0).all() and not np.isnan(yerr).any()
    fig, ax = plt.subplots()
    P.success_curve(ax, [1, 2, 3, 4, 5], rates, lows, highs, "edge cases")  # must not raise
    table = pd.DataFrame({"success_rate": rates, "ci_low": lows, "ci_high": highs},
                         index=pd.MultiIndex.from_product([[0.3], [1, 2, 3, 4, 5]], names=["g", "x"]))
    P.success_curves(ax, table, "g", "x", str)
    plt.close(fig)


def test_claims_and_report_at_the_edges(isolated_artifacts):
    res = Results("01_poison_frogs", "smoke", "poison_frogs")
    rows = [res.claim("PF-F5", "zero of n", "success_rate", S.rate_test(0, 30, 0.8),
                      paper_key="transfer_success_rate", role="supporting"),
            res.claim("PF-F5", "n of n", "success_rate", S.rate_test(30, 30, 0.8), role="supporting", key="all"),
            res.claim("PF-F5", "no trials", "success_rate", S.rate_test(0, 0, 0.8), role="supporting", key="none")]
    assert [r["verdict"] for r in rows] == ["fails", "holds", "inconclusive"]
    assert rows[0]["source"].startswith("Shafahi") and rows[0]["setting"] == ""
    with pytest.raises(TypeError, match="Decision"):
        res.claim("PF-F5", "a bare number", "success_rate", 0.9, role="supporting")
    res.write_claims()
    shown = res.paper_vs_measured()
    assert "nan" not in shown.to_string().lower()
    _, report = write_summary("smoke", ["01_poison_frogs"])
    text = report.read_text()
    assert "supporting: 1 of 3 claims hold, 1 fail, 1 inconclusive, 0 untested (not reproduced: 2)" in text
    table = text[text.index("| claim"):]
    assert "nan" not in table.lower() and not any(c.isdigit() and "e-" in c for c in table.split("|"))


def test_ratio_of_split_means_by_fieller():
    rng = np.random.default_rng(0)
    whole = 0.2 + 0.01 * rng.standard_normal(8)
    d = S.ratio_test(0.9 * whole + 0.005 * rng.standard_normal(8), whole, 0.5, ">")
    assert d.verdict == "holds" and 0.85 < d.measured < 0.95 and d.ci_low < d.measured < d.ci_high
    assert S.ratio_test(0.1 * whole, whole, 0.5, ">").verdict == "fails"
    assert S.ratio_test(0.1 * whole, whole, 0.5, "<").verdict == "holds"
    # a share of an effect that may be nil cannot be told
    nil = 0.02 * rng.standard_normal(8)
    assert S.ratio_test(0.9 * nil + 0.01, nil, 0.5, ">").verdict == "inconclusive"
    assert S.ratio_test([0.1], [0.2], 0.5, ">").verdict == "inconclusive"
    # the bound agrees with the paired t of part - threshold * whole at the threshold
    part = 0.55 * whole + 0.02 * rng.standard_normal(8)
    d = S.ratio_test(part, whole, 0.5, ">")
    assert (d.ci_low > 0.5) == (d.p < 0.05)
