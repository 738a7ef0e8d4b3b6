"""Statistical verdicts for the claims of every notebook.

A claim says that some effect lies on one side of a threshold ("the success rate is at
least 0.8", "the attack raises the error by more than 1 point", "success rises with the
number of poisons"). Each function here runs the test that suits the kind of claim on the
per-trial data, and returns a :class:`Decision`:

- ``holds``: the one-sided 95% confidence bound on the claim's side lies beyond the
  threshold (the effect is on the claim's side, at the 5% level), and the test's one-sided p,
  where it gives one, is below 0.05 too;
- ``fails``: the one-sided 95% bound on the other side lies short of the threshold (the
  effect is on the wrong side, or smaller than the claim's minimum effect, at the 5% level);
- ``inconclusive``: the interval straddles the threshold: too little data to tell. It counts
  as *not reproduced* in every summary, and ``n_needed`` estimates how many trials would
  decide it if the observed effect and spread held;
- ``untested``: a precondition that makes the claim a test did not hold (the victims did not
  reach their accuracy floor, the backdoor was not learned without the defence): the numbers
  are shown, but they decide nothing. Set by ``poisonrepro.results``, never by a test here; it
  counts as not reproduced.

``ci_low`` and ``ci_high`` are the two one-sided 95% bounds (together a two-sided 90%
interval), so the verdict can be read off the interval and the threshold alone. ``p`` is the
one-sided p-value of the claim's null hypothesis (the effect on the wrong side of the
threshold) where the test provides one; the trend and correlation tests' p is against no
trend at all, as their names say, and the bound decides against the minimum effect. The threshold is the claim's minimum effect where
the claim implies one, so that a significant but negligible effect does not count.

Tests, by kind of claim (scipy and statsmodels do the arithmetic):

- a rate against a threshold: Wilson score bound; score-test p (exact binomial at 0 or 1);
- a difference of two rates: Newcombe hybrid score bound; Fisher's exact p (score test
  against a non-zero margin);
- a trend of success counts over a sweep: Cochran-Armitage p (per trial; statsmodels'
  linear-by-linear form, which puts N - 1 where the textbook has N); the bound of the
  fitted change over the sweep (linear probability model, HC3 errors);
- a trend of a continuous metric: OLS slope on per-trial points, its t bound, as the change
  over the sweep;
- a rank correlation: Spearman's rho, permutation p, Fisher-z bound (Bonett-Wright SE);
- a mean or a paired difference over splits or seeds: one-sample t on the (paired) values;
- a share, the ratio of two per-split means: Fieller's bound from the paired t;
- paired binary outcomes (the same target attacked two ways, or attacked and clean): the
  exact McNemar (sign) test on the discordant pairs, and the Newcombe bound of the paired
  difference of rates (Newcombe 1998, method 10);
- a family of headline claims: Holm's step-down adjustment of their p-values (``holm``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

ALPHA = 0.05            # one-sided level of every verdict
LEVEL = 1 - 2 * ALPHA   # the two-sided level of the interval (its bounds are one-sided 95%)
SIDES = (">", "<")
VERDICTS = ("holds", "fails", "inconclusive", "untested")


@dataclass(frozen=True)
class Decision:
    """A claim's verdict and the numbers behind it."""
    measured: float      # the estimate of the effect
    threshold: float     # the claim: measured > threshold (side ">") or < threshold (side "<")
    side: str
    ci_low: float        # one-sided 95% lower bound
    ci_high: float       # one-sided 95% upper bound
    p: float             # one-sided p of the claim's null (NaN where the test gives none)
    test: str
    n: int               # trials the test counts
    verdict: str
    n_needed: float      # inconclusive: trials that would decide at the observed effect; else NaN

    @property
    def expectation(self) -> str:
        return f"{self.side} {self.threshold:g}"

    @property
    def holds(self) -> bool:
        return self.verdict == "holds"


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def decide(measured: float, ci_low: float, ci_high: float, threshold: float, side: str, *,
           test: str, n: int, p: float = math.nan) -> Decision:
    """The verdict from an estimate, its one-sided 95% bounds and the claim's threshold."""
    if side not in SIDES:
        raise ValueError(f"side={side!r}: must be one of {SIDES}")
    measured, lo, hi, threshold = (float(v) for v in (measured, ci_low, ci_high, threshold))
    if any(map(math.isnan, (measured, lo, hi))):
        verdict = "inconclusive"
    elif side == ">":
        verdict = "holds" if lo > threshold else "fails" if hi < threshold else "inconclusive"
    else:
        verdict = "holds" if hi < threshold else "fails" if lo > threshold else "inconclusive"
    if verdict == "holds" and not math.isnan(float(p)) and p >= ALPHA:
        # the bound and the test's p must agree (they can differ on a handful of trials)
        return Decision(measured, threshold, side, lo, hi, float(p), test, int(n), "inconclusive", math.nan)
    needed = math.nan
    if verdict == "inconclusive" and n and not any(map(math.isnan, (measured, lo, hi))):
        # half-width of the interval on the threshold's side, shrinking as 1/sqrt(n)
        gap = abs(measured - threshold)
        width = (measured - lo) if measured > threshold else (hi - measured)
        needed = math.inf if gap == 0 or width <= 0 else float(math.ceil(n * (width / gap) ** 2))
    return Decision(measured, threshold, side, lo, hi, float(p), test, int(n), verdict, needed)


# ----------------------------------------------------------------------------- rates
def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate (statsmodels), clipped so that it always
    contains the rate (a rounding error once put a bound on the wrong side of it)."""
    from statsmodels.stats.proportion import proportion_confint
    if n == 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    rate = successes / n
    return float(min(max(lo, 0.0), rate)), float(max(min(hi, 1.0), rate))


def rate_test(successes: int, n: int, threshold: float, side: str = ">") -> Decision:
    """A success rate against a threshold: the Wilson bound on the claim's side."""
    from statsmodels.stats.proportion import proportions_ztest
    successes, n = int(successes), int(n)
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n (got {successes}, {n})")
    if n == 0:
        return decide(math.nan, math.nan, math.nan, threshold, side, test="Wilson bound (no trials)", n=0)
    lo, hi = wilson(successes, n, LEVEL)
    alt = "larger" if side == ">" else "smaller"
    if 0 < threshold < 1:
        _, p = proportions_ztest(successes, n, value=threshold, alternative=alt, prop_var=threshold)
        ptest = "score p"
    else:
        p = st.binomtest(successes, n, min(max(threshold, 0.0), 1.0),
                         alternative="greater" if side == ">" else "less").pvalue
        ptest = "exact binomial p"
    return decide(successes / n, lo, hi, threshold, side, test=f"Wilson bound; {ptest}", n=n, p=float(p))


def rate_difference_test(k1: int, n1: int, k2: int, n2: int, margin: float = 0.0,
                         side: str = ">") -> Decision:
    """rate1 - rate2 against ``margin``: Newcombe's hybrid score bound; Fisher's exact p
    (at margin 0) or the score test's p (at another margin)."""
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep
    k1, n1, k2, n2 = int(k1), int(n1), int(k2), int(n2)
    if n1 == 0 or n2 == 0:
        return decide(math.nan, math.nan, math.nan, margin, side, test="Newcombe bound (no trials)", n=n1 + n2)
    diff = k1 / n1 - k2 / n2
    lo, hi = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - LEVEL)
    lo, hi = min(float(lo), diff), max(float(hi), diff)
    if margin == 0:
        alt = "greater" if side == ">" else "less"
        p = st.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative=alt).pvalue
        ptest = "Fisher exact p"
    else:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            # statsmodels also forms the ratio and odds ratio, which divide by zero at 0/n
            warnings.simplefilter("ignore", RuntimeWarning)
            p = test_proportions_2indep(k1, n1, k2, n2, value=margin, method="score", compare="diff",
                                        alternative="larger" if side == ">" else "smaller").pvalue
        ptest = "score p"
    return decide(diff, lo, hi, margin, side, test=f"Newcombe bound; {ptest}", n=n1 + n2, p=float(p))


def _per_trial(x, successes, n) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for xi, k, m in zip(np.asarray(x, float), np.asarray(successes, int), np.asarray(n, int)):
        xs += [xi] * int(m)
        ys += [1.0] * int(k) + [0.0] * int(m - k)
    return np.asarray(xs), np.asarray(ys)


def _ols_change(x: np.ndarray, y: np.ndarray, cov: str) -> tuple[float, float, float, float]:
    """Fitted change of y over the range of x, its two-sided ``LEVEL`` interval, and the
    slope's standard error; NaNs where x does not vary."""
    import statsmodels.api as sm
    span = float(np.ptp(x)) if len(x) else 0.0
    if len(x) < 3 or span == 0:
        return math.nan, math.nan, math.nan, math.nan
    if np.ptp(y) == 0:  # no spread at all: the fitted change is exactly 0
        return 0.0, 0.0, 0.0, 0.0
    fit = sm.OLS(y, sm.add_constant(x)).fit(cov_type=cov)
    lo, hi = fit.conf_int(alpha=1 - LEVEL)[1]
    return float(fit.params[1]) * span, float(lo) * span, float(hi) * span, float(fit.bse[1])


def count_trend_test(x, successes, n, side: str = ">", min_change: float = 0.0) -> Decision:
    """A trend of success counts over the levels ``x`` of a sweep, on the per-trial data:
    the Cochran-Armitage test (its p) and the change of the success rate over the whole
    sweep fitted by a linear probability model with HC3 errors (its bound decides)."""
    from statsmodels.stats.contingency_tables import Table
    xs, ys = _per_trial(x, successes, n)
    change, lo, hi, _ = _ols_change(xs, ys, "HC3")
    p = math.nan
    levels = np.unique(xs)
    if len(levels) >= 2 and 0 < ys.sum() < len(ys):
        counts = np.array([[np.sum((xs == v) & (ys == 0)), np.sum((xs == v) & (ys == 1))] for v in levels])
        z = Table(counts).test_ordinal_association(row_scores=levels, col_scores=np.array([0.0, 1.0])).zscore
        p = float(st.norm.sf(z) if side == ">" else st.norm.cdf(z))
    elif len(levels) >= 2:
        p = 1.0  # every trial the same: no evidence of any trend
    return decide(change, lo, hi, min_change, side,
                  test="Cochran-Armitage p (against no trend); bound of the fitted change over the sweep (LPM, HC3)",
                  n=len(ys), p=p)


def slope_trend_test(x, y, side: str = ">", min_change: float = 0.0) -> Decision:
    """A trend of a continuous metric over a sweep: the OLS slope on the per-trial points,
    expressed as the change over the whole sweep, with its t bound."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    change, lo, hi, se = _ols_change(x, y, "nonrobust")
    p = math.nan
    if not math.isnan(change) and se > 0:
        t = (change / np.ptp(x) - min_change / np.ptp(x)) / se
        dist = st.t(len(x) - 2)
        p = float(dist.sf(t) if side == ">" else dist.cdf(t))
    return decide(change, lo, hi, min_change, side, test="OLS slope x range, t bound", n=len(x), p=p)


def correlation_test(x, y, side: str = ">", min_rho: float = 0.0, seed: int = 0) -> Decision:
    """Spearman's rho on per-trial pairs: permutation p (against rho = 0) and the Fisher-z
    bound with the Bonett-Wright standard error (against ``min_rho``)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return decide(math.nan, math.nan, math.nan, min_rho, side, test="Spearman (too few or tied values)", n=n)
    rho = float(st.spearmanr(x, y).statistic)
    res = st.permutation_test((x, y), lambda a, b: st.spearmanr(a, b).statistic, permutation_type="pairings",
                              n_resamples=9999, alternative="greater" if side == ">" else "less",
                              random_state=np.random.default_rng(seed))
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    se = math.sqrt((1 + rho ** 2 / 2) / (n - 3))
    q = st.norm.ppf(1 - ALPHA)
    return decide(rho, math.tanh(z - q * se), math.tanh(z + q * se), min_rho, side,
                  test="Spearman, permutation p (against rho = 0); Fisher-z bound", n=n, p=float(res.pvalue))


def mean_test(values, threshold: float = 0.0, side: str = ">") -> Decision:
    """The mean of per-trial values (or of paired differences) against a threshold: one-sample t."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n < 2:
        m = float(v.mean()) if n else math.nan
        return decide(m, math.nan, math.nan, threshold, side, test="t bound (too few values)", n=n)
    m, sd = float(v.mean()), float(v.std(ddof=1))
    if sd == 0:  # every trial agrees: the interval is the point
        p = 0.0 if (m > threshold if side == ">" else m < threshold) else 1.0
        return decide(m, m, m, threshold, side, test="t bound (no spread)", n=n, p=p)
    q = st.t(n - 1).ppf(1 - ALPHA) * sd / math.sqrt(n)
    p = st.ttest_1samp(v, threshold, alternative="greater" if side == ">" else "less").pvalue
    return decide(m, m - q, m + q, threshold, side, test="t bound", n=n, p=float(p))


def mean_difference_test(a, b, margin: float = 0.0, side: str = ">") -> Decision:
    """mean(a) - mean(b) of two independent groups (poisoned against clean victims) against
    ``margin``: Welch's t, so that the uncertainty of both means counts."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
    a, b = (np.asarray(v, float) for v in (a, b))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return decide(diff, math.nan, math.nan, margin, side, test="Welch t bound (too few values or no spread)", n=n)
    compare = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    lo, hi = compare.tconfint_diff(alpha=2 * ALPHA, usevar="unequal")
    p = compare.ttest_ind(alternative="larger" if side == ">" else "smaller", usevar="unequal", value=margin)[1]
    return decide(diff, lo, hi, margin, side, test="Welch t bound", n=n, p=float(p))


def paired_difference_test(a, b, margin: float = 0.0, side: str = ">") -> Decision:
    """mean(a - b) over paired trials (same split or seed) against ``margin``: paired t."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same shape (got {a.shape} and {b.shape})")
    d = mean_test(a - b, margin, side)
    return Decision(**{**d.__dict__, "test": "paired " + d.test})


def ratio_test(part, whole, threshold: float, side: str = ">") -> Decision:
    """A share of two per-split means, mean(part) / mean(whole) (e.g. the error increase a
    defence takes back over the increase the attack caused), against ``threshold``: Fieller's
    one-sided 95% bounds of the ratio from the paired t over the splits, and the p of the paired
    t of ``part - threshold * whole`` (the same test, inverted at the threshold). Where the
    denominator itself is not clearly away from 0 the bounds are unbounded (NaN), and the
    verdict is inconclusive: a share of an effect that may be nil cannot be told."""
    a, b = np.asarray(part, float), np.asarray(whole, float)
    n = len(a)
    ratio = a.mean() / b.mean() if n and b.mean() != 0 else float("nan")
    test = "Fieller bound of the ratio of split means; paired t p"
    if n < 2:
        return decide(ratio, np.nan, np.nan, threshold, side, test=test + " (too few splits)", n=n)
    p = paired_difference_test(a, threshold * b, 0.0, side).p
    t2 = st.t(n - 1).ppf(1 - ALPHA) ** 2
    (saa, sab), (_, sbb) = np.cov(a, b, ddof=1) / n
    qa, qb, qc = b.mean() ** 2 - t2 * sbb, a.mean() * b.mean() - t2 * sab, a.mean() ** 2 - t2 * saa
    lo = hi = np.nan
    if qa > 0:
        root = np.sqrt(max(qb * qb - qa * qc, 0.0))
        lo, hi = min((qb - root) / qa, ratio), max((qb + root) / qa, ratio)
    return decide(ratio, lo, hi, threshold, side, test=test, n=n, p=p)


def paired_rate_difference_test(a, b, margin: float = 0.0, side: str = ">") -> Decision:
    """rate(a) - rate(b) over paired binary outcomes (``a[i]`` and ``b[i]`` come from the same
    unit: one target with its own victim seed, attacked two ways): the exact McNemar p (a sign
    test on the discordant pairs; at a non-zero margin the score test is left out) and the
    one-sided 95% bounds of the paired difference from Newcombe's method 10 (Wilson intervals of
    the marginal rates combined with their phi correlation). Against a non-zero margin the bound
    alone decides."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes need two 1-d arrays of one length (got {a.shape} and {b.shape})")
    n = len(a)
    if n == 0:
        return decide(math.nan, math.nan, math.nan, margin, side, test="paired Newcombe bound (no pairs)", n=0)
    b10, b01 = int(np.sum(a & ~b)), int(np.sum(~a & b))   # discordant pairs
    diff = (b10 - b01) / n
    lo, hi = _newcombe_paired(a, b, LEVEL)
    lo, hi = min(lo, diff), max(hi, diff)
    if margin == 0:
        discordant = b10 + b01
        p = 1.0 if discordant == 0 else st.binomtest(
            b10, discordant, 0.5, alternative="greater" if side == ">" else "less").pvalue
        ptest = "exact McNemar p"
    else:  # no exact test against a non-zero margin: the bound alone decides
        p, ptest = math.nan, "no p at a non-zero margin"
    return decide(diff, lo, hi, margin, side, test=f"paired Newcombe bound; {ptest}", n=n, p=float(p))


def _newcombe_paired(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float]:
    """Newcombe's (1998) method 10 interval of the difference of paired proportions."""
    n = len(a)
    k1, k2 = int(a.sum()), int(b.sum())
    l1, u1 = wilson(k1, n, level)
    l2, u2 = wilson(k2, n, level)
    p1, p2 = k1 / n, k2 / n
    n11, n10, n01, n00 = (int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b)))
    denom = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    phi = 0.0 if denom == 0 else (n11 * n00 - n10 * n01) / math.sqrt(denom)
    if denom != 0 and n11 * n00 - n10 * n01 > 0:  # Newcombe's continuity correction of phi
        phi = max(n11 * n00 - n10 * n01 - n / 2, 0) / math.sqrt(denom)
    d = p1 - p2
    lo = d - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    hi = d + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return float(lo), float(hi)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family's one-sided p-values (statsmodels); NaN stays NaN
    and is left out of the family."""
    from statsmodels.stats.multitest import multipletests
    p = np.asarray(p_values, float)
    out = np.full_like(p, np.nan)
    finite = ~np.isnan(p)
    if finite.any():
        out[finite] = multipletests(p[finite], alpha=ALPHA, method="holm")[1]
    return out
