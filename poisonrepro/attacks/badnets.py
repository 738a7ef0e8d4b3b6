"""BadNets: T. Gu, B. Dolan-Gavitt, S. Garg, "BadNets: Identifying Vulnerabilities in the Machine
Learning Model Supply Chain", arXiv:1708.06733, 2017 (Sec. 3-4): a small fixed pixel pattern in a
corner of a share of the training images, relabelled as the target class (dirty label).

As Anti-Backdoor Learning evaluates it (bboylyg/ABL, ``data_loader.py``): a 3x3 black-and-white
grid (255/0) in the bottom-right corner; the grid's exact pattern there is UNCONFIRMED, here a
checkerboard with the corner pixel white. The poisoning itself is ``backdoor_poisoning``.
"""
from __future__ import annotations

import torch

from ..registry import register_attack
from .backdoor_poisoning import check_images, check_trigger_fits, poison_training_set

GRID = 3


def checkerboard(size: int = GRID) -> torch.Tensor:
    """[size, size] uint8, 255 where (row + column) has the parity of the bottom-right corner."""
    i = torch.arange(size)
    return torch.where((i[:, None] + i[None, :]) % 2 == (2 * (size - 1)) % 2, 255, 0).to(torch.uint8)


def apply_trigger(images: torch.Tensor, generator: torch.Generator | None = None, *, size: int = GRID) -> torch.Tensor:
    """The grid pasted into the bottom-right ``size`` x ``size`` corner of every channel."""
    images = check_images(images)
    check_trigger_fits(tuple(images.shape[-2:]), (size, size))
    out = images.clone()
    out[..., -size:, -size:] = checkerboard(size)
    return out


@register_attack("badnets", paper="Gu et al. 2017", notebook="11_abl",
                 summary="a fixed 3x3 pixel grid in the corner, poisons relabelled as the target class",
                 timing="poisoning", goal="targeted", knowledge="black-box", universality="universal",
                 influence="causative", violation="integrity", specificity="targeted")
def craft_poisons(images, labels, *, rate: float, target_class: int, size: int = GRID, num_classes: int = 10,
                  seed: int = 0):
    """The BadNets-poisoned training set (``backdoor_poisoning.BackdoorSet``)."""
    check_trigger_fits(tuple(check_images(images).shape[-2:]), (size, size))  # before drawing anything
    return poison_training_set(images, labels, lambda x, g: apply_trigger(x, size=size), rate=rate,
                               target_class=target_class, num_classes=num_classes, seed=seed)
