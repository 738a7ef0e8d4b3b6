"""Label poisoning: the attacker changes labels, never features.

- Random label flipping (RLF) and informed label flipping (ILF), the label-flipping baselines of
  Munoz-Gonzalez et al. (AISec 2017) and Paudice et al., "Label Sanitization against Label
  Flipping Poisoning Attacks" (2018, arXiv:1803.00992), as the lecture deck "Adversarial Machine
  Learning" (Luis Munoz-Gonzalez, Imperial College London, 20 December 2018; slide "But Label
  Flipping Attacks are Difficult to Detect") compares them with the optimal attack. Here both
  *insert* copies of points the attacker holds (its validation data) with the other binary
  label, so that every attack spends the same budget: RLF picks the points at random; ILF picks
  them greedily, each time the candidate whose flipped copy raises the validation loss of the
  retrained learner most (every candidate retrained at once with ``torch.func.vmap``).
- The three label-poisoning variants of the lecture deck "Data Poisoning: Attacks and Defenses"
  (Xingjun Ma, Fudan University; slide "Label Poisoning"): random labels (labels redrawn uniformly
  from all classes), label flipping (each poisoned label moved to another class, here the next one,
  y -> y + 1 mod K) and partial label flipping (only the points of one source class moved to one
  target class).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.func import vmap

from ..registry import register_attack
from .back_gradient import Learner, as_tensor, train_gd

_LABEL_ONLY = dict(timing="poisoning", knowledge="white-box", universality="universal", influence="causative",
                   violation="availability", specificity="indiscriminate")


@register_attack("random_label_flipping", paper="Munoz-Gonzalez et al. 2017", notebook="06_back_gradient",
                 summary="insert randomly chosen points with the other label (RLF)",
                 goal="untargeted", **dict(_LABEL_ONLY, knowledge="black-box"))
def random_label_flips(X_cand, y_cand, count: int, rng: np.random.Generator):
    """``count`` distinct candidates, chosen at random, with their binary label flipped."""
    idx = rng.choice(len(y_cand), size=count, replace=False)
    return np.asarray(X_cand)[idx], 1 - np.asarray(y_cand)[idx]


@register_attack("informed_label_flipping", paper="Munoz-Gonzalez et al. 2017", notebook="06_back_gradient",
                 summary="greedily insert the flipped points that most raise the validation loss (ILF)",
                 goal="untargeted", **_LABEL_ONLY)
def informed_label_flips(learner: Learner, X_tr, y_tr, X_cand, y_cand, count: int, objective, *, steps: int,
                         lr: float, warm_steps: int):
    """Greedy ILF: ``count`` rounds; in each, every remaining candidate is tried (its flipped
    copy added, the learner warm-started from the current model and trained ``warm_steps``
    steps) and the one with the largest validation loss is kept."""
    X_tr, y_tr, X_cand = as_tensor(X_tr), as_tensor(y_tr), as_tensor(X_cand)
    y_flip = 1 - as_tensor(y_cand)
    chosen: list[int] = []
    w = train_gd(learner, X_tr, y_tr, steps=steps, lr=lr)

    def trial(x, y, X, Y, w0):  # vmapped over the candidates
        return objective(train_gd(learner, torch.cat([X, x[None]]), torch.cat([Y, y[None]]), steps=warm_steps,
                                  lr=lr, w0=w0))

    for _ in range(count):
        X, Y = torch.cat([X_tr, X_cand[chosen]]), torch.cat([y_tr, y_flip[chosen]])
        w = train_gd(learner, X, Y, steps=warm_steps, lr=lr, w0=w)
        values = vmap(trial, in_dims=(0, 0, None, None, None))(X_cand, y_flip, X, Y, w)
        values[chosen] = -torch.inf
        chosen.append(int(values.argmax()))
    return X_cand[chosen].numpy(), y_flip[chosen].numpy()


@register_attack("label_noise_variants", notebook="06_back_gradient",
                 paper="X. Ma, lecture deck 'Data Poisoning: Attacks and Defenses' (Label Poisoning)",
                 summary="random labels, label flipping and partial label flipping of a fraction of the labels",
                 goal="untargeted", **dict(_LABEL_ONLY, knowledge="black-box"))
def poison_labels(y, fraction: float, variant: str, n_classes: int, rng: np.random.Generator, *, source: int = 0,
                  target: int = 1):
    """Labels after poisoning ``fraction`` of them (of the source class for ``partial``)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction={fraction}: must lie in [0, 1)")
    y = np.asarray(y).copy()
    pool = np.flatnonzero(y == source) if variant == "partial" else np.arange(len(y))
    idx = rng.choice(pool, size=int(round(fraction * len(pool))), replace=False)
    if variant == "random":
        y[idx] = rng.integers(0, n_classes, size=len(idx))
    elif variant == "flip":
        y[idx] = (y[idx] + 1) % n_classes
    elif variant == "partial":
        y[idx] = target
    else:
        raise ValueError(f"variant={variant!r}: allowed values are 'random', 'flip', 'partial'")
    return y
