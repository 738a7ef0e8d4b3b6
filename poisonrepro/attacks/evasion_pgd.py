"""Evasion by projected gradient descent (Madry et al., ICLR 2018, Eq. 2).

Targeted, run towards a chosen class: the test-time attack that the Poison Frogs blog post ("Clean-Label
Poison Attacks on Neural Nets", Shafahi et al.; section "Evasion attacks") contrasts with poisoning, used
for its plane -> "frog" illustration (PF-F1).

    x_{k+1} = Proj_{||x - x_0||_inf <= eps, x in [0,1]} ( x_k - alpha * sign(grad_x CE(f(x_k), y_target)) )

Untargeted, away from the true label (``untargeted_pgd``, ascent on CE(f(x), y) from a random
start): the inner maximisation of Madry et al.'s adversarial training (``train.VictimRecipe``'s
``adversarial_eps``) and the first stage of the clean-label backdoor.

It runs on the shared crafting loop (``crafting.craft_perturbations``: per-sample L-inf PGD
from a zero start, no restarts, no augmentation); the result is the same as the classic loop
on the adversarial image (a test compares them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import register_attack
from .crafting import craft_perturbations


def untargeted_pgd(model, x: torch.Tensor, labels: torch.Tensor, *, eps: float, steps: int, step_size: float,
                   random_start: bool = True, batch_size: int = 1000, seed: int = 0,
                   desc: str = "untargeted PGD") -> torch.Tensor:
    """L-inf PGD raising ``model``'s cross-entropy of each image's own label, in eval mode (the
    mode is restored). ``x`` uint8 or floats in [0, 1] on the CPU; the model may live elsewhere.
    Returns floats in [0, 1], within eps of ``x``."""
    was_training = model.training
    model.eval()
    labels = torch.as_tensor(labels).long()

    def away_from_true_label(net, x_adv, idx):  # the loop minimises: the negative loss
        # the loop has sent the batch to the model's device; the labels follow it
        return -F.cross_entropy(net(x_adv), labels[idx].to(x_adv.device), reduction="none")
    try:
        result = craft_perturbations(x, away_from_true_label, models=model, eps=eps, norm="linf", steps=steps,
                                     step_rule="pgd", lr=step_size, init="uniform" if random_start else "zeros",
                                     batch_size=batch_size, seed=seed, desc=desc)
    finally:
        model.train(was_training)
    return result.perturbed(x)


@register_attack("pgd_evasion", paper="Madry et al. 2018 (illustration in Shafahi et al. 2018 blog)",
                 notebook="01_poison_frogs", summary="targeted L-inf PGD at test time",
                 timing="evasion", goal="targeted", knowledge="white-box", universality="individual",
                 influence="exploratory", violation="integrity", specificity="targeted")
def targeted_pgd(model, x: torch.Tensor, target_class: int, *, eps: float, steps: int,
                 step_size: float | None = None) -> torch.Tensor:
    """Adversarial examples for ``x`` pushed towards ``target_class`` within an L-inf ball."""
    if not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: must lie in (0, 1] (pixels are on the [0, 1] scale; 8/255, not 8)")
    step_size = step_size or 2.5 * eps / steps
    model.eval()
    y = torch.full((len(x),), target_class, dtype=torch.long)

    def towards_target(net, x_adv, idx):
        # the batch's mean cross-entropy, spread over its samples: the same gradient as the mean
        return F.cross_entropy(net(x_adv), y[idx], reduction="none") / len(idx)
    result = craft_perturbations(x, towards_target, models=model, eps=eps, norm="linf", steps=steps,
                                 step_rule="pgd", lr=step_size, batch_size=len(x), desc="evasion PGD")
    return result.perturbed(x)
