"""Learners for the availability-poisoning notebooks (12 Unlearnable Examples, Huang et al.
ICLR 2021; 13 Unlearnable Clusters, Zhang et al. CVPR 2023; 14 Transferable Unlearnable
Examples, Ren et al. ICLR 2023): the ways a data user may train on protected data, each a
learner factory that ``evaluation.evaluate_poisons`` takes by import path.

- ``augmented``: supervised training with one augmentation (Mixup, CutMix, Cutout, Gaussian
  noise, Gaussian blur, flip-and-crop, none): UE Table 3, UC Table 3;
- ``adversarial``: Madry et al.'s L-inf PGD adversarial training: UC's AT table (rho = 1, 2);
- ``contrastive``: SimCLR, MoCo v2 and SimSiam pre-training and a linear probe, and the
  random-feature probe they are measured against: UC Fig. 4b, TUE's training-wise table.

This file imports nothing (a notebook's code hash follows imports): ``KINDS`` maps each name to
its import path, for configs to validate a learner name before any compute.
"""
from __future__ import annotations

KINDS = {
    "augmented": "poisonrepro.learners.augmented:AugmentedLearner",
    "adversarial": "poisonrepro.learners.adversarial:AdversarialLearner",
    "simclr": "poisonrepro.learners.contrastive:SimCLRLearner",
    "moco_v2": "poisonrepro.learners.contrastive:MoCoV2Learner",
    "simsiam": "poisonrepro.learners.contrastive:SimSiamLearner",
    "random_features": "poisonrepro.learners.contrastive:RandomFeatureLearner",
}


def kinds() -> tuple[str, ...]:
    """The learner names of this package."""
    return tuple(KINDS)


def kind_path(name: str) -> str:
    """The import path of learner ``name`` (the ``kind`` of an evaluation spec)."""
    if name not in KINDS:
        raise ValueError(f"learner {name!r}: unknown; allowed: {', '.join(KINDS)}")
    return KINDS[name]
