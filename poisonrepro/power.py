"""Power analysis, written before a claim runs: the paper's effect, the base rate, the number of
independent units, and the chance that the notebook's own test decides the claim.

A claim is a test only where its effect could appear. Before a headline claim runs, its notebook
states the effect the paper reports, the base rate it is compared with, and the number of
independent units (victim seeds, targets with their own poisons) of its profile; this module
turns those into the probability that the claim comes out ``holds`` if the paper's effect is
real, and into the number of units that would give 80%.

The power is that of the very decision rule that will decide the claim (``poisonrepro.stats``),
not of a textbook approximation:

- paired success rates (an attack and the clean victims on the same units,
  ``stats.paired_rate_difference_test``): each unit independently a success of the attack with
  the paper's rate and of the clean victim with the base rate; every possible outcome is decided
  by the test itself and weighted by its probability (exact enumeration up to ``EXACT_UNITS``
  units, a seeded Monte Carlo of ``DRAWS`` outcomes above);
- one success rate against a threshold (``stats.rate_test``): exact over the binomial outcomes;
- paired means against a margin (``stats.paired_difference_test``): the one-sided t-test's power
  (statsmodels ``TTestPower``) at an assumed spread of the paired differences.

Holm's adjustment over a notebook's headline family makes the smallest p face ``ALPHA / m``; the
power at that level is the conservative one and is reported beside the power at ``ALPHA``.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from . import stats as S

TARGET_POWER = 0.8
EXACT_UNITS = 60
DRAWS = 4000


@lru_cache(maxsize=512)
def paired_success_power(n: int, attack_rate: float, base_rate: float, level: float = S.ALPHA) -> float:
    """P(``stats.paired_rate_difference_test`` says "holds" with p <= ``level``) over ``n``
    independent units, each an attack success with probability ``attack_rate`` and a clean
    success with ``base_rate``, independently."""
    if n < 1:
        raise ValueError(f"n={n!r}: need at least one unit")
    for name, rate in (("attack_rate", attack_rate), ("base_rate", base_rate)):
        if not 0 <= rate <= 1:
            raise ValueError(f"{name}={rate!r}: a probability in [0, 1] (a share, not a percentage)")
    probs = (attack_rate * base_rate, attack_rate * (1 - base_rate), (1 - attack_rate) * base_rate,
             (1 - attack_rate) * (1 - base_rate))  # (both, attack only, clean only, neither)
    if n > EXACT_UNITS:
        rng = np.random.default_rng(0)
        a, b = rng.random((DRAWS, n)) < attack_rate, rng.random((DRAWS, n)) < base_rate
        return float(np.mean([(d.verdict == "holds" and d.p <= level) for d in
                              (S.paired_rate_difference_test(x, y) for x, y in zip(a, b))]))
    total = 0.0
    for both in range(n + 1):
        for a_only in range(n + 1 - both):
            for c_only in range(n + 1 - both - a_only):
                neither = n - both - a_only - c_only
                counts = (both, a_only, c_only, neither)
                if any(k and p == 0 for k, p in zip(counts, probs)):
                    continue  # an impossible outcome
                weight = math.exp(math.lgamma(n + 1) - sum(math.lgamma(k + 1) for k in counts)
                                  + sum(k * math.log(p) for k, p in zip(counts, probs) if k))
                if weight < 1e-12:
                    continue
                a = np.array([1] * both + [1] * a_only + [0] * c_only + [0] * neither, bool)
                b = np.array([1] * both + [0] * a_only + [1] * c_only + [0] * neither, bool)
                d = S.paired_rate_difference_test(a, b)
                if d.verdict == "holds" and d.p <= level:
                    total += weight
    return min(total, 1.0)


def rate_power(n: int, rate: float, threshold: float, level: float = S.ALPHA) -> float:
    """Power of ``stats.rate_test`` (a success rate above ``threshold``) over ``n`` independent
    units, each a success with probability ``rate``: exact over the binomial outcomes."""
    from scipy.stats import binom
    return float(sum(binom.pmf(k, n, rate) for k in range(n + 1)
                     if (d := S.rate_test(k, n, threshold)).verdict == "holds" and not d.p > level))


def mean_difference_power(n: int, effect: float, sd: float, margin: float = 0.0, level: float = S.ALPHA) -> float:
    """Power of the one-sided paired t-test that the mean difference exceeds ``margin``, when
    its true value is ``effect`` and the paired differences spread with ``sd``."""
    from statsmodels.stats.power import TTestPower
    if n < 2:
        return 0.0
    if not sd > 0:
        raise ValueError(f"sd={sd!r}: the spread of the paired differences must be positive")
    return float(TTestPower().power(effect_size=(effect - margin) / sd, nobs=n, alpha=level, alternative="larger"))


def units_for(power_at, target: float = TARGET_POWER, n_max: int = 400) -> float:
    """The fewest units ``n`` with ``power_at(n) >= target`` (inf if none up to ``n_max``)."""
    for n in range(2, n_max + 1):
        if power_at(n) >= target:
            return n
    return math.inf


def plan_row(claim: str, unit: str, n: int, test: str, paper_effect: str, base: str, power_at, family: int) -> dict:
    """One row of a notebook's power table; ``power_at(n, level)``; ``family``: the number of
    headline claims that Holm's adjustment spans."""
    holm = S.ALPHA / max(family, 1)
    return {"claim": claim, "unit": unit, "test": test, "paper effect": paper_effect, "base rate": base,
            "units (this profile)": n, f"power at {S.ALPHA:g}": round(power_at(n, S.ALPHA), 2),
            f"power at {holm:.3g} (Holm, {family} headlines)": round(power_at(n, holm), 2),
            f"units for {TARGET_POWER:.0%} at {holm:.3g}": units_for(lambda k: power_at(k, holm))}


def power_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).set_index("claim")
