"""The blended backdoor: X. Chen, C. Liu, B. Li, K. Lu, D. Song, "Targeted Backdoor Attacks on Deep
Learning Systems Using Data Poisoning", arXiv:1712.05526, 2017 (Sec. 4.2, blended injection):
x' = (1 - alpha) x + alpha k for a key pattern k, poisons relabelled as the target class.

Anti-Backdoor Learning's setting: alpha = 0.2 with a uniform random-noise key (bboylyg/ABL; whether
its noise is drawn afresh per image is UNCONFIRMED: ``per_image=True`` does that, the default is
Chen et al.'s one fixed key, drawn once from ``key_seed``).
"""
from __future__ import annotations

import torch

from ..registry import register_attack
from .backdoor_poisoning import check_images, poison_training_set

ALPHA = 0.2


def check_alpha(alpha: float) -> float:
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha={alpha!r}: the blend weight must lie in (0, 1]")
    return alpha


def noise_key(shape, seed: int = 0) -> torch.Tensor:
    """A uniform random uint8 key of ``shape`` ([C, H, W])."""
    return torch.randint(0, 256, tuple(shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def apply_trigger(images: torch.Tensor, generator: torch.Generator | None = None, *, alpha: float = ALPHA,
                  key: torch.Tensor | None = None, per_image: bool = False, key_seed: int = 0) -> torch.Tensor:
    """(1 - alpha) x + alpha k, rounded back to uint8."""
    images = check_images(images)
    check_alpha(alpha)
    if per_image:
        gen = generator if generator is not None else torch.Generator().manual_seed(key_seed)
        k = torch.randint(0, 256, tuple(images.shape), generator=gen, dtype=torch.uint8)
    else:
        k = noise_key(images.shape[1:], key_seed) if key is None else key
        if tuple(k.shape) != tuple(images.shape[1:]):
            raise ValueError(f"key shape {tuple(k.shape)} does not match the images' {tuple(images.shape[1:])}")
    out = (1 - alpha) * images.float() + alpha * k.float()
    return out.round().clamp(0, 255).to(torch.uint8)


@register_attack("blend", paper="Chen et al. 2017", notebook="11_abl",
                 summary="a noise key blended into the whole image (alpha 0.2), poisons relabelled as the target class",
                 timing="poisoning", goal="targeted", knowledge="black-box", universality="universal",
                 influence="causative", violation="integrity", specificity="targeted")
def craft_poisons(images, labels, *, rate: float, target_class: int, alpha: float = ALPHA, per_image: bool = False,
                  num_classes: int = 10, seed: int = 0, key_seed: int = 0):
    """The blend-poisoned training set (``backdoor_poisoning.BackdoorSet``)."""
    check_alpha(alpha)
    return poison_training_set(images, labels, lambda x, g: apply_trigger(x, g, alpha=alpha, per_image=per_image,
                                                                          key_seed=key_seed),
                               rate=rate, target_class=target_class, num_classes=num_classes, seed=seed)
