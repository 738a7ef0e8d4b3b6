"""Learning with noisy labels as a defence against label flipping: N. Natarajan, I. S. Dhillon,
P. Ravikumar, A. Tewari, "Learning with Noisy Labels", NIPS 2013, the method of unbiased
estimators (their Lemma 1) with symmetric noise rate rho:

    l~(t, y) = ((1 - rho) l(t, y) - rho l(t, -y)) / (1 - 2 rho),

which the lecture deck "Adversarial Machine Learning" (Luis Munoz-Gonzalez, Imperial College London,
20 December 2018) lists as the "RLS" baseline against label flipping. The loss
itself lives in ``attacks.back_gradient.Learner`` (``noise_rate``); the defender sets rho to the
fraction of poisoned labels it assumes.
"""
from __future__ import annotations

import dataclasses

from ..attacks.back_gradient import Learner
from ..registry import register_defense


@register_defense("noise_robust_loss", paper="Natarajan et al. 2013", notebook="06_back_gradient",
                  summary="train with the unbiased-estimator loss for symmetric label noise",
                  defends=[("causative", "availability", "indiscriminate")])
def noise_robust(learner: Learner, noise_rate: float) -> Learner:
    if learner.kind != "logistic":
        raise ValueError("the unbiased-estimator loss is implemented for the logistic learner only")
    return dataclasses.replace(learner, noise_rate=noise_rate)
