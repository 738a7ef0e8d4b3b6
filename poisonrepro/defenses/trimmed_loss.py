"""Iterative trimmed loss minimisation (ITLM): Y. Shen and S. Sanghavi, "Learning with Bad Training
Data via Iterative Trimmed Loss Minimization", ICML 2019 (arXiv:1810.11874), Algorithm 1.

The objective is the trimmed loss, min_theta min_{S, |S| = floor(alpha n)} sum_{i in S} f(theta; s_i):
fit only the alpha fraction of the training set that the model explains best. Algorithm 1
alternates its two minimisations:

    S_0: the whole training set (or a given subset)
    for t = 0 .. T-1:
        theta_t     = ModelUpdate(theta_{t-1}, S_t)          # e.g. a few epochs of SGD on S_t
        S_{t+1}     = the floor(alpha n) samples of lowest loss f(theta_t; s_i)

and, with ``final_update``, refits once more on S_T and returns that model. The
``update`` and ``losses`` callables are the caller's (a scikit-learn estimator in the tests, the
fast victims in notebook 09), so the loop is written once. Which ModelUpdate the paper's deep
experiments use (a warm start, as in Algorithm 1, or a re-initialisation per round), and its
rounds and epochs, are UNCONFIRMED (the paper has no code); here ``update`` receives the previous
state and decides.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..registry import register_defense


def check_alpha(alpha: float) -> float:
    """The kept fraction: a number in (0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 < alpha <= 1:
        raise ValueError(f"alpha={alpha!r}: the fraction of samples kept must lie in (0, 1] "
                         "(1 keeps everything: plain training)")
    return float(alpha)


def lowest_loss_subset(losses, alpha: float) -> np.ndarray:
    """The indices of the floor(alpha n) samples of lowest loss (at least one), sorted; ties go
    to the earlier index (a stable sort), so the subset is deterministic."""
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 1 or not len(losses):
        raise ValueError("losses: one number per training sample")
    if not np.isfinite(losses).all():
        raise ValueError("losses: NaN or infinite values (a diverged model?)")
    keep = max(1, int(np.floor(check_alpha(alpha) * len(losses))))
    return np.sort(np.argsort(losses, kind="stable")[:keep])


@dataclass
class TrimmedResult:
    state: Any                                   # the model after the last update
    subsets: list = field(default_factory=list)  # S_0, S_1, ..., S_T (index arrays)
    losses: list = field(default_factory=list)   # the per-sample losses after each round's update


@register_defense("trimmed_loss", paper="Shen and Sanghavi 2019", notebook="09_trimmed_loss",
                  summary="alternate fitting on the kept samples and keeping the alpha fraction of lowest loss",
                  defends=[("causative", "availability", "indiscriminate"), ("causative", "integrity", "targeted")])
def trimmed_loss_minimization(n: int, alpha: float, rounds: int, update: Callable, losses: Callable, *,
                              state: Any = None, initial: np.ndarray | None = None, final_update: bool = True,
                              on_round: Callable | None = None) -> TrimmedResult:
    """Algorithm 1 on ``n`` training samples: ``update(state, subset) -> state`` fits on the
    indices ``subset``; ``losses(state) -> [n]`` scores every training sample. ``rounds`` of
    (update; trim), then, with ``final_update``, one more update on the last subset.
    ``on_round(t, result)`` is called after each round (progress, logging)."""
    alpha = check_alpha(alpha)
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"rounds={rounds!r}: at least one round")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r}: the training set must have at least one sample")
    subset = np.arange(n) if initial is None else np.sort(np.asarray(initial, dtype=np.int64))
    if len(subset) and (subset.min() < 0 or subset.max() >= n):
        raise ValueError(f"initial: indices must lie in [0, {n})")
    result = TrimmedResult(state, [subset])
    for t in range(int(rounds)):
        result.state = update(result.state, subset)
        scores = np.asarray(losses(result.state), dtype=float)
        if scores.shape != (n,):
            raise ValueError(f"losses(state) must give one loss per training sample: shape {scores.shape}, not ({n},)")
        subset = lowest_loss_subset(scores, alpha)
        result.losses.append(scores)
        result.subsets.append(subset)
        if on_round is not None:
            on_round(t, result)
    if final_update:
        result.state = update(result.state, subset)
    return result
