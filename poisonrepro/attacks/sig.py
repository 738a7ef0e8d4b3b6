"""SIG, the sinusoidal-signal backdoor: M. Barni, K. Kallas, B. Tondi, "A New Backdoor Attack in
CNNs by Training Set Corruption Without Label Poisoning", ICIP 2019 (Sec. 3, Eq. 4): a clean-label
attack that adds v(i, j) = Delta sin(2 pi j f / m) (m columns) to a share of the *target-class*
training images, keeping their labels; at test time the same signal on any image.

Settings as Anti-Backdoor Learning's README cites them: Delta = 20 (on 0-255 pixels), f = 6. ABL's
code blends a stored mask instead (alpha 0.2, with negative values wrapped by a uint8 cast:
UNCONFIRMED whether on purpose); here Barni et al.'s additive signal, clipped to [0, 255].
"""
from __future__ import annotations

import math

import torch

from ..registry import register_attack
from .backdoor_poisoning import check_images, poison_training_set

DELTA, FREQUENCY = 20.0, 6


def check_delta(delta: float) -> float:
    if not 0 < delta <= 255:
        raise ValueError(f"delta={delta!r}: the signal's amplitude is on the 0-255 scale (ABL: 20)")
    return delta


def signal(height: int, width: int, delta: float = DELTA, frequency: int = FREQUENCY) -> torch.Tensor:
    """v(i, j) = delta sin(2 pi j f / m), on the 0-255 scale, [height, width]."""
    j = torch.arange(width, dtype=torch.float32)
    return (delta * torch.sin(2 * math.pi * j * frequency / width)).expand(height, width)


def apply_trigger(images: torch.Tensor, generator: torch.Generator | None = None, *, delta: float = DELTA,
                  frequency: int = FREQUENCY) -> torch.Tensor:
    images = check_images(images)
    check_delta(delta)
    out = images.float() + signal(*images.shape[-2:], delta, frequency)
    return out.round().clamp(0, 255).to(torch.uint8)


@register_attack("sig", paper="Barni et al. 2019", notebook="11_abl",
                 summary="a horizontal sinusoid added to target-class images, labels kept (clean label)",
                 timing="poisoning", goal="targeted", knowledge="black-box", universality="universal",
                 influence="causative", violation="integrity", specificity="targeted")
def craft_poisons(images, labels, *, rate: float, target_class: int, delta: float = DELTA,
                  frequency: int = FREQUENCY, num_classes: int = 10, seed: int = 0):
    """The SIG-poisoned training set (``backdoor_poisoning.BackdoorSet``); clean label."""
    check_delta(delta)
    return poison_training_set(images, labels, lambda x, g: apply_trigger(x, delta=delta, frequency=frequency),
                               rate=rate, target_class=target_class, num_classes=num_classes, clean_label=True,
                               seed=seed)
