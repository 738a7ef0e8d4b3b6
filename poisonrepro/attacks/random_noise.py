"""Uniform random noise in the L-inf ball, sample-wise and class-wise: the "random noise"
baseline of H. Huang, X. Ma, S. M. Erfani, J. Bailey, Y. Wang, "Unlearnable Examples: Making
Personal Data Unexploitable", ICLR 2021 (Fig. 1 and Sec. 4.1; the authors' ``random_noise``):

    delta_g ~ U([-eps, eps]^{C x H x W})   for every sample g (Delta_s) or every class g (Delta_c),

added as x_i + delta_{g(i)} and clipped into [0, 1] (``availability.apply_noise``). Sample-wise
it leaves the data learnable (~94% test accuracy in Fig. 1); class-wise, constant per class, it
is a shortcut the network can fit (~10% after epoch 14).
"""
from __future__ import annotations

import torch

from ..registry import register_attack
from .availability import check_budget, check_mode, check_training_set, noise_artifact


def _uniform(shape, eps: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.empty(shape).uniform_(-eps, eps, generator=generator)


@register_attack("random_noise", paper="Huang et al. 2021 (baseline)", notebook="12_unlearnable_examples",
                 summary="sample-wise uniform random noise in the L-inf ball (the baseline of error-minimising noise)",
                 timing="poisoning", goal="untargeted", knowledge="black-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def random_noise(x: torch.Tensor, y: torch.Tensor, *, mode: str = "sample", eps: float = 8 / 255,
                 num_classes: int | None = None, seed: int = 0) -> dict:
    """Uniform noise in [-eps, eps] for the training set (``x`` uint8 or floats in [0, 1], ``y``):
    one draw per sample (``mode="sample"``) or per class (``"class"``, ``num_classes`` rows,
    default max(y) + 1), seeded; returned as ``availability.noise_artifact``."""
    check_mode(mode)
    check_budget(eps)
    y = check_training_set(x, y)
    if mode == "sample":
        return noise_artifact(_uniform(x.shape, eps, seed), eps=eps, by_class=False, groups=torch.arange(len(x)))
    rows = int(y.max()) + 1 if num_classes is None else num_classes
    if not isinstance(rows, int) or rows <= int(y.max()):
        raise ValueError(f"num_classes={num_classes!r}: need an integer > the largest label {int(y.max())}")
    return noise_artifact(_uniform((rows, *x.shape[1:]), eps, seed), eps=eps, by_class=True)


@register_attack("random_noise_classwise", paper="Huang et al. 2021 (baseline)", notebook="12_unlearnable_examples",
                 summary="class-wise uniform random noise in the L-inf ball (one pattern per class)",
                 timing="poisoning", goal="untargeted", knowledge="black-box", universality="universal",
                 influence="causative", violation="availability", specificity="indiscriminate")
def random_noise_classwise(x: torch.Tensor, y: torch.Tensor, **kwargs) -> dict:
    """``random_noise(..., mode="class")``."""
    return random_noise(x, y, mode="class", **kwargs)
