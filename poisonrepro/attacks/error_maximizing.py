"""Error-maximising noise: adversarial examples of a fixed trained model used as poisons, the
"error-maximising noise" baseline of H. Huang, X. Ma, S. M. Erfani, J. Bailey, Y. Wang,
"Unlearnable Examples: Making Personal Data Unexploitable", ICLR 2021 (Fig. 1, the authors'
``min-max`` attack), and the adversarial poisons of L. Fowl, M. Goldblum, P. Chiang, J. Geiping,
W. Czaja, T. Goldstein, "Adversarial Examples Make Strong Poisons", NeurIPS 2021 (class-targeted
variant, ``targeted=True``).

With the network f_theta* trained on the clean data and fixed (eval mode), L-inf PGD (Madry et
al. 2018, Eq. 2) from a random start in the ball:

    untargeted:  max_{||delta_i||_inf <= eps}  CE(f_theta*(x_i + delta_i), y_i)
    targeted:    min_{||delta_i||_inf <= eps}  CE(f_theta*(x_i + delta_i), (y_i + 1) mod K)

run on the shared crafting loop (``crafting.craft_perturbations``; the loop minimises, so the
untargeted objective is the negative loss). Defaults are Huang et al.'s (eps 8/255, 20 steps of
0.8/255); Fowl et al. use 250 steps of eps/20 with 8 restarts and differentiable augmentation
(``steps``, ``step_size``, ``restarts``, ``augment``).
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_attack
from .availability import check_budget, check_training_set, noise_artifact
from .crafting import craft_perturbations


@register_attack("error_maximizing_noise", paper="Huang et al. 2021 (baseline); Fowl et al. 2021",
                 notebook="12_unlearnable_examples",
                 summary="sample-wise error-maximising noise: PGD adversarial examples of a fixed model as poisons",
                 timing="poisoning", goal="untargeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_error_maximizing(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 8 / 255,
                           steps: int = 20, step_size: float = 0.8 / 255, restarts: int = 1,
                           targeted: bool = False, num_classes: int | None = None, augment: bool = False,
                           batch_size: int = 512, seed: int = 0, desc: str = "error-maximising noise") -> dict:
    """Per-sample noise that raises the fixed ``model``'s loss on (x + delta, y) (or lowers it
    towards the next class, ``targeted``); ``x`` uint8 or floats in [0, 1]. The model's mode is
    restored. Returns ``availability.noise_artifact`` with ``loss_history`` (the mean objective
    of every step of the kept restart's run, negated back to the loss when untargeted)."""
    check_budget(eps)
    y = check_training_set(x, y)
    if not 0 < step_size <= eps:
        raise ValueError(f"step_size={step_size!r}: need a PGD step in (0, eps={eps:.5g}]")
    for name, value in (("steps", steps), ("restarts", restarts)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}: need an integer >= 1")
    classes = int(y.max()) + 1 if num_classes is None else num_classes
    if targeted and (not isinstance(classes, int) or classes < 2 or classes <= int(y.max())):
        raise ValueError(f"num_classes={num_classes!r}: need an integer > the largest label {int(y.max())}")
    goal = (y + 1) % classes if targeted else y
    sign = 1.0 if targeted else -1.0  # the loop minimises: towards the next class, or away from the true one

    def objective(net, x_perturbed, idx):
        return sign * F.cross_entropy(net(x_perturbed), goal[idx].to(x_perturbed.device), reduction="none")

    was_training = model.training
    model.eval()
    try:
        result = craft_perturbations(x, objective, models=model, eps=eps, norm="linf", steps=steps, step_rule="pgd",
                                     lr=step_size, init="uniform", restarts=restarts, augment=augment,
                                     batch_size=batch_size, seed=seed, desc=desc)
    finally:
        model.train(was_training)
    history = sign * result.loss_history[int(result.best_restart.mode().values)]
    return noise_artifact(result.delta, eps=eps, by_class=False, groups=torch.arange(len(x)),
                          loss_history=history, best_restart=result.best_restart)
