"""TensorClog: J. Shen, X. Zhu, D. Ma, "TensorClog: An Imperceptible Poisoning Attack on Deep
Neural Network Applications", IEEE Access 7, 2019; a baseline of Transferable Unlearnable
Examples (Ren et al., ICLR 2023, notebook 14) by way of Fowl et al. 2021 ("Adversarial Examples
Make Strong Poisons", whose table of availability attacks Ren et al. take over).

The idea: a network learns little from data on which the gradient of its loss w.r.t. its
parameters vanishes. With a fixed (e.g. pre-trained) network f_theta in eval mode, per-sample
perturbations minimise the squared norm of that gradient, batch by batch,

    min_{delta}  sum_b  || grad_theta  mean_{i in b} CE(f_theta(x_i + delta_i), y_i) ||^2
    s.t.         ||delta_i||_inf <= eps  and  x_i + delta_i in [0, 1],

by L-inf PGD (Madry et al. 2018, Eq. 2, with the sign turned to descent) on the shared crafting
loop (``crafting.craft_perturbations``): the objective of a batch is one scalar, spread evenly over
its samples (``loss.expand(B) / B``), as Witches' Brew's gradient matching is; its gradient w.r.t.
the inputs is a double backward. Defaults are those of Huang et al.'s error-maximising baseline
(eps 8/255, 20 steps of 0.8/255, a uniform random start).

Departures:

- the gradient is taken over the LAST layer's parameters only (``layers="last"``: a
  ``models.Classifier``'s ``head``, else the last module that holds parameters), for cost: the
  double backward through a whole ResNet-18 per PGD step is what makes TensorClog expensive;
  ``layers="all"`` takes every trainable parameter, as the paper does;
- the squared norm rather than the norm of the reimplementation by Fowl et al.
  (``lhfowl/adversarial_poisons``, ``village/shop/forgemaster_tensorclog.py``: the square root of
  the summed squares over all parameters of the batch's mean loss); a signed step does not see the
  difference within one batch, only in how the batches of a pass are weighted;
- the paper's own optimisation (a penalised objective with an L2 and SSIM constraint on the
  perturbation, optimised without a hard L-inf bound) is replaced by the L-inf PGD of the
  availability-attack comparisons; its exact settings there are UNCONFIRMED.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_attack
from .availability import check_budget, check_training_set, noise_artifact
from .crafting import craft_perturbations, device_of

LAYERS = ("last", "all")


def _integer(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: need an integer >= {minimum}")


def clogged_parameters(model: nn.Module, layers: str = "last") -> list[torch.Tensor]:
    """The parameters whose gradient TensorClog shrinks: ``layers="last"``, those of the model's
    ``head`` (a ``models.Classifier``), else of the last module (in ``modules()`` order) that holds
    parameters of its own; ``"all"``: every parameter."""
    if layers not in LAYERS:
        raise ValueError(f"layers={layers!r}: unknown; allowed: {', '.join(map(repr, LAYERS))}")
    if layers == "all":
        params = list(model.parameters())
    else:
        head = getattr(model, "head", None)
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            params = list(head.parameters())
        else:
            owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
            params = list(owners[-1].parameters(recurse=False)) if owners else []
    if not params:
        raise ValueError("model: has no parameters to take the gradient of")
    return params


def _squared_gradient_norm(model, params, x, y, create_graph):
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return sum(g.pow(2).sum() for g in grads if g is not None)


class _Trainable:
    """Let autograd see ``params`` (a frozen head too) inside the block; their flags restored after."""

    def __init__(self, params):
        self.params, self.flags = params, [p.requires_grad for p in params]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(True)

    def __exit__(self, *exc):
        for p, flag in zip(self.params, self.flags):
            p.requires_grad_(flag)


def gradient_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
                  layers: str = "last") -> float:
    """TensorClog's objective on a data set: the mean over batches of ``batch_size`` (in order) of
    ||grad_theta mean CE(model(x_b), y_b)||^2 over ``clogged_parameters(model, layers)``, the model
    in eval mode (its mode restored); ``x`` uint8 or floats in [0, 1]."""
    y = check_training_set(x, y)
    _integer("batch_size", batch_size)
    params = clogged_parameters(model, layers)
    device, was_training, values = device_of(model), model.training, []
    model.eval()
    try:
        with _Trainable(params):
            for start in range(0, len(x), batch_size):
                xb = x[start:start + batch_size]
                xb = (xb.float() / 255 if xb.dtype == torch.uint8 else xb).to(device)
                values.append(float(_squared_gradient_norm(model, params, xb, y[start:start + batch_size].to(device),
                                                           create_graph=False)))
    finally:
        model.train(was_training)
    return sum(values) / len(values)


@register_attack("tensorclog", paper="Shen et al. 2019 (baseline of Ren et al. 2023)", notebook="14_tue",
                 summary="sample-wise L-inf noise that minimises the norm of a fixed model's parameter gradient "
                         "(last layer) on the perturbed data, so that training on it barely moves the model",
                 timing="poisoning", goal="untargeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_tensorclog(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 8 / 255, steps: int = 20,
                     step_size: float = 0.8 / 255, batch_size: int = 256, layers: str = "last", seed: int = 0,
                     desc: str = "TensorClog") -> dict:
    """Per-sample TensorClog noise for the training set (``x`` uint8 or floats in [0, 1], ``y``)
    against the fixed ``model`` (eval mode while crafting; its mode and ``requires_grad`` flags are
    restored), by the PGD of the module docstring; ``layers`` "last" (default) | "all".

    Returns ``availability.noise_artifact`` (sample-wise) with ``loss_history`` (the mean over
    batches of the squared gradient norm, at every step) and ``grad_norm_clean`` (the same on the
    clean set, before crafting)."""
    check_budget(eps)
    y = check_training_set(x, y)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: need an nn.Module mapping [0, 1] images to logits, got {type(model).__name__}")
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not 0 < step_size <= eps:
        raise ValueError(f"step_size={step_size!r}: need a PGD step in (0, eps={eps:.5g}]")
    _integer("steps", steps)
    _integer("batch_size", batch_size)
    _integer("seed", seed, minimum=0)
    params = clogged_parameters(model, layers)
    clean = gradient_norm(model, x, y, batch_size=batch_size, layers=layers)

    def objective(net, x_perturbed, idx):
        value = _squared_gradient_norm(net, params, x_perturbed, y[idx].to(x_perturbed.device), create_graph=True)
        return value.expand(len(idx)) / len(idx)  # the batch's one value, spread evenly over its samples

    was_training = model.training
    model.eval()
    try:
        with _Trainable(params):
            result = craft_perturbations(x, objective, models=model, eps=eps, norm="linf", steps=steps,
                                         step_rule="pgd", lr=step_size, init="uniform", batch_size=batch_size,
                                         seed=seed, desc=desc)
    finally:
        model.train(was_training)
    batches = -(-len(x) // batch_size)
    return noise_artifact(result.delta, eps=eps, by_class=False, groups=torch.arange(len(x)),
                          loss_history=result.loss_history[0] * len(x) / batches, grad_norm_clean=clean)
