"""Per-seed summaries of victim trials, for the reports whose claims' unit is a victim training (a
seed): each victim's score, the t interval of the mean over seeds, and a table row beside the paper's
number, and ``run_arms``, which runs a grid of arms (each a list of trials, one per seed) in one
batch. Notebooks 13 and 14 use them; 12 still holds its own copies, to be moved here with its next
full rerun (a change to its code stales its committed run)."""
from __future__ import annotations

import numpy as np


def per_seed(rs, key: str = "test_accuracy") -> np.ndarray:
    """Each victim's (seed's) score ``key``, in seed order."""
    return np.array([float(r[key]) for r in rs])


def seed_interval(values) -> tuple[float, float]:
    """The two-sided 95% t interval of the mean over seeds (NaN with fewer than two seeds)."""
    from statsmodels.stats.weightstats import DescrStatsW
    v = np.asarray(values, float)
    if len(v) < 2:
        return (np.nan, np.nan)
    if np.ptp(v) == 0:
        return (float(v[0]), float(v[0]))
    lo, hi = DescrStatsW(v).tconfint_mean(alpha=0.05)
    return float(lo), float(hi)


def seed_row(label: dict, rs, paper: float, key: str = "test_accuracy") -> dict:
    """A table row: ``label``, the number of seeds, the mean of ``key`` over them with its interval,
    and the paper's value."""
    values = per_seed(rs, key)
    lo, hi = seed_interval(values)
    return {**label, "seeds": len(values), key: float(values.mean()), "ci_low": lo, "ci_high": hi, "paper": paper}


def run_arms(grid: dict, cache, desc: str) -> dict[str, list[dict]]:
    """Run every trial of ``grid`` ({arm: [trial of each seed]}) in one batch of
    ``executor.run_trials`` (so one progress bar, and a parallel executor sees them all) and return
    {arm: [the result of each seed]}."""
    from .executor import run_trials
    flat = [t for trials in grid.values() for t in trials]
    results = iter(run_trials(flat, cache, desc=desc))
    return {arm: [next(results) for _ in trials] for arm, trials in grid.items()}
