"""The gradient-alignment availability attack ("Alignment"): L. Fowl, P. Chiang, M. Goldblum,
J. Geiping, A. Bansal, W. Czaja, T. Goldstein, "Preventing Unauthorized Use of Proprietary Data:
Poisoning for Secure Dataset Release", 2021 (arXiv:2103.02683); a baseline of Transferable
Unlearnable Examples (Ren et al., ICLR 2023, notebook 14).

Witches' Brew's gradient matching (Geiping et al., ICLR 2021, Eq. 3; ``witches_brew``) turned from
one target to availability: the perturbations are crafted so that a training step on the released
data moves the network the way a step that RAISES the loss on held-out validation data would. A
gradient step theta <- theta - lr g_train raises the validation loss when -g_train points along
+grad_theta CE(f(x_val), y_val), i.e. when g_train aligns with the "target gradient"

    t = -grad_theta CE(f_theta(x_val), y_val)      (the mean over the validation set, computed once),

and the perturbations minimise the cosine distance of Witches' Brew, batch by batch,

    min_{delta}  sum_b  1 - cos( grad_theta mean_{i in b} CE(f_theta(x_i + delta_i), y_i),  t )
    s.t.         ||delta_i||_inf <= eps  and  x_i + delta_i in [0, 1],

the cosine over all trainable parameters together, on the shared crafting loop with the helpers
of ``witches_brew`` (``target_gradient``, ``gradient_matching_loss``, ``forest_augment``,
``forest_step_size``, its crafting mode: eval with dropout on), and its optimiser: signed Adam,
forest's x0.1 step decay at 3/8, 5/8 and 7/8 of the steps, differentiable flip-and-shift
augmentation, a fixed batch order (one cosine per batch of ``batch_size``).

UNCONFIRMED details (the paper's settings are not checked against its code here): the surrogate
(a network trained on the clean data, fixed during crafting, as in Witches' Brew), the size and
source of the validation set, the number of steps (250, forest's default, here), the step size
(forest's rule, ``witches_brew.forest_step_size``), the restarts (forest brews 8; one here by
default, for cost), whether the target gradient is recomputed during crafting (once, here) and
whether the authors' target is exactly the negated mean validation gradient (the reading above).
"""
from __future__ import annotations

import numbers
from typing import Callable

import torch
from torch import nn

from ..registry import register_attack
from . import witches_brew as WB
from .availability import check_budget, check_training_set, noise_artifact
from .crafting import craft_perturbations


def _integer(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: need an integer >= {minimum}")


def check_with_validation(x, y, x_val, y_val) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation sets of an attack that targets validation data (alignment, NTGA),
    checked: their labels as long tensors."""
    y = check_training_set(x, y)
    try:
        y_val = check_training_set(x_val, y_val)
    except ValueError as error:
        raise ValueError(f"validation set: {error}") from None
    if tuple(x_val.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(f"x_val {tuple(x_val.shape[1:])} and x {tuple(x.shape[1:])}: need images of the same shape")
    return y, y_val


def _check(model, x, y, x_val, y_val, eps, steps, step_size, restarts, batch_size, augment, seed):
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: need an nn.Module mapping [0, 1] images to logits, got {type(model).__name__}")
    check_budget(eps)
    y, y_val = check_with_validation(x, y, x_val, y_val)
    _integer("steps", steps)
    _integer("restarts", restarts)
    _integer("batch_size", batch_size)
    _integer("seed", seed, minimum=0)
    if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, numbers.Real)
                                  or not 0 < step_size <= eps):
        raise ValueError(f"step_size={step_size!r}: need a step in (0, eps={eps:.5g}] (None: forest's rule)")
    if not (isinstance(augment, bool) or callable(augment)):
        raise ValueError(f"augment={augment!r}: need True, False or a callable (x, generator) -> x")
    return y, y_val


def validation_ascent_gradient(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor) -> list[torch.Tensor]:
    """The target gradient t = -grad_theta mean CE(model(x_val), y_val) over the trainable
    parameters (detached); call it in the mode of crafting (``witches_brew._crafting_mode``)."""
    return [-g for g in WB.target_gradient(model, x_val, y_val)]


def alignment(model: nn.Module, x: torch.Tensor, y, x_val: torch.Tensor, y_val, *, batch_size: int = 512) -> float:
    """cos(grad_theta mean CE on a batch of (x, y), -grad_theta mean CE on the validation set),
    per batch of ``batch_size`` (in order, un-augmented, crafting mode), averaged over the batches:
    1 is a training set whose every step ascends the validation loss; about 0 for clean data of
    a converged model. ``witches_brew.poison_alignment`` against the un-negated gradient, negated."""
    return -WB.poison_alignment(model, x, y, x_val, y_val, batch_size=batch_size)


@register_attack("alignment", paper="Fowl et al. 2021, Preventing Unauthorized Use of Proprietary Data "
                                   "(baseline of Ren et al. 2023)", notebook="14_tue",
                 summary="sample-wise L-inf noise whose training gradient aligns (cosine, as Witches' Brew) with "
                         "the gradient that raises a fixed model's loss on validation data",
                 timing="poisoning", goal="untargeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *,
                    eps: float = 8 / 255, steps: int = 250, step_size: float | None = None, restarts: int = 1,
                    batch_size: int = WB.FOREST_REFERENCE_PBATCH, augment: bool | Callable = True, seed: int = 0,
                    desc: str = "Alignment") -> dict:
    """Alignment noise for the training set (``x`` uint8 or floats in [0, 1], ``y``) against the
    fixed surrogate ``model`` (crafting mode while crafting, every module's mode restored), with the
    target gradient of the validation set (``x_val``, ``y_val``), by the module docstring's loop.
    ``step_size`` on the [0, 1] scale (None: ``witches_brew.forest_step_size(0.1, batch_size)``);
    ``augment`` True (forest's transform), False or a callable ``(x, generator) -> x``.

    Returns ``availability.noise_artifact`` (sample-wise) with ``loss_history`` (the objective at
    every step of the kept restart: the sum over batches of 1 - cos_b, divided by N),
    ``alignment_history`` (the mean over batches of cos_b at every step, augmented as crafted) and
    ``alignment_clean`` (``alignment`` of the clean set)."""
    y, y_val = _check(model, x, y, x_val, y_val, eps, steps, step_size, restarts, batch_size, augment, seed)
    lr = step_size if step_size is not None else WB.forest_step_size(0.1, batch_size)
    clean = alignment(model, x, y, x_val, y_val, batch_size=batch_size)
    with WB._crafting_mode([model]):
        target = validation_ascent_gradient(model, x_val, y_val)

        def objective(net, x_perturbed, idx):
            # the batch's one cosine distance, spread evenly over its samples
            loss = WB.gradient_matching_loss(net, x_perturbed, y[idx], target)
            return loss.expand(len(idx)) / len(idx)

        result = craft_perturbations(x, objective, models=model, eps=eps, norm="linf", steps=steps,
                                     step_rule="signadam", lr=lr, decay="multistep", restarts=restarts,
                                     init="uniform", augment=WB.forest_augment if augment is True else augment,
                                     batch_size=batch_size, shuffle=False, keep_best="all", seed=seed, desc=desc)
    history = result.loss_history[int(result.best_restart[0])]
    batches = -(-len(x) // batch_size)
    return noise_artifact(result.delta, eps=eps, by_class=False, groups=torch.arange(len(x)),
                          loss_history=history, alignment_history=1 - history * len(x) / batches,
                          alignment_clean=clean)
