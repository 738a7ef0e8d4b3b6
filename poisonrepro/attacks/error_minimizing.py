"""Error-minimising noise, sample-wise and class-wise (H. Huang, X. Ma, S. M. Erfani, J. Bailey,
Y. Wang, "Unlearnable Examples: Making Personal Data Unexploitable", ICLR 2021).

The min-min problem of Eq. 2, over the noise delta and a surrogate f_theta:

    argmin_theta  E_{(x, y)}  min_{delta}  CE(f_theta(x + delta), y)    s.t.  ||delta||_inf <= eps

solved as Sec. 4.1 and the authors' ``perturbation.py`` do, by alternation until the surrogate
fits the noisy data (its error on them below ``stop_error``, 0.01):

1. ``train_steps`` (10) SGD steps of the surrogate on mini-batches of (x + delta, y), train mode;
2. ``noise_steps`` L-inf PGD steps (Madry et al. 2018, Eq. 2, with the sign of the gradient turned
   to *descent*) on the noise, the surrogate fixed in eval mode, step size ``step_size``
   (0.8/255), from a uniform random start in the ball;
3. stop when the error of the surrogate on the perturbed crafting set is below ``stop_error``.

Both run on the shared crafting loop (``crafting.craft_perturbations``): the noise steps are its
steps (each a pass over the crafting set), steps 1 and 3 its ``model_update`` callback, run
every ``noise_steps`` steps (one round), which stops crafting by returning True. Sample-wise noise
(Delta_s, one delta per image, 20 PGD steps per round) uses per-sample deltas; class-wise noise
(Delta_c, one delta per class) the loop's ``groups`` = labels, crafted on a stratified
``subset`` (20% in the paper) while the surrogate trains on the whole set with each class's noise.

Departures, all small: the first surrogate steps (before any noise exists here) are on clean
images rather than on the random start; a class-wise step takes the sign of the gradient summed
over the class (the authors average per-batch signed steps of their members, one step per batch,
so a round makes about as many steps as the subset has batches: ``noise_steps``' default).

``craft_error_minimizing`` returns the noise as an artifact (``availability.noise_artifact``);
``availability.poison_training_set`` applies it to a share of a training set in an evaluation spec.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_attack
from .availability import check_budget, check_mode, check_training_set, noise_artifact
from .crafting import CraftState, craft_perturbations, device_of

# Huang et al. 2021, Sec. 4 and the authors' scripts (scripts/cifar10/min-min-noise/*/exp_setting.sh)
PAPER = dict(eps=8 / 255, step_size=0.8 / 255, sample_noise_steps=20, train_steps=10, stop_error=0.01,
             class_subset=0.2, batch_size=512, lr=0.1, momentum=0.9, weight_decay=5e-4)


def _check(x, y, *, mode, eps, step_size, noise_steps, train_steps, stop_error, max_rounds, subset, batch_size,
           lr):
    check_mode(mode)
    check_budget(eps)
    y = check_training_set(x, y)
    if not 0 < step_size <= eps:
        raise ValueError(f"step_size={step_size!r}: need a PGD step in (0, eps={eps:.5g}] (0.8/255 in the paper)")
    for name, value, minimum in (("noise_steps", noise_steps, 1), ("train_steps", train_steps, 0),
                                 ("max_rounds", max_rounds, 1), ("batch_size", batch_size, 1)):
        if value is None and name == "noise_steps":
            continue
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name}={value!r}: need an integer >= {minimum}")
    if not 0 <= stop_error < 1:
        raise ValueError(f"stop_error={stop_error!r}: need a training error in [0, 1) (0.01 in the paper)")
    if not 0 < subset <= 1:
        raise ValueError(f"subset={subset!r}: the share of the set that class-wise noise is crafted on, in (0, 1]")
    if mode == "sample" and subset != 1:
        raise ValueError(f"subset={subset!r}: sample-wise noise needs every sample (subset=1)")
    if not lr > 0:
        raise ValueError(f"lr={lr!r}: need a surrogate learning rate > 0")
    return y


def stratified_subset(y: torch.Tensor, share: float, seed: int) -> torch.Tensor:
    """Sorted indices of round(share * n_c) samples of each class c (at least one), seeded."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in y.unique().tolist():
        members = torch.nonzero(y == c).flatten()
        take = max(1, round(share * len(members)))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def _as_float(x):
    return x.float() / 255 if x.dtype == torch.uint8 else x


@torch.no_grad()
def error_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """The share of ``images`` (floats in [0, 1]) that ``model``, in eval mode, misclassifies."""
    device, wrong = device_of(model), 0
    for start in range(0, len(images), batch_size):
        xb = images[start:start + batch_size].to(device)
        wrong += int((model(xb).argmax(1).cpu() != labels[start:start + batch_size]).sum())
    return wrong / max(len(images), 1)


@register_attack("error_minimizing_noise", paper="Huang et al. 2021", notebook="12_unlearnable_examples",
                 summary="sample-wise error-minimising noise (min-min, L-inf 8/255): data a model cannot learn from",
                 timing="poisoning", goal="untargeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_error_minimizing(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, mode: str = "sample",
                           eps: float = PAPER["eps"], step_size: float = PAPER["step_size"],
                           noise_steps: int | None = None, train_steps: int = PAPER["train_steps"],
                           stop_error: float = PAPER["stop_error"], max_rounds: int = 50, subset: float = 1.0,
                           batch_size: int = PAPER["batch_size"], lr: float = PAPER["lr"],
                           momentum: float = PAPER["momentum"], weight_decay: float = PAPER["weight_decay"],
                           augment: bool = False, seed: int = 0, desc: str = "error-minimising noise") -> dict:
    """Error-minimising noise for the training set (``x`` uint8 or floats in [0, 1], ``y``), by
    the min-min alternation of the module docstring; ``model`` is the surrogate, trained in place
    (it may live on a GPU). ``mode`` "sample" | "class"; ``noise_steps`` per round (default: 20
    sample-wise, the subset's number of batches class-wise); at most ``max_rounds`` rounds.

    Returns ``availability.noise_artifact`` with the diagnostics ``round_errors`` (the surrogate's
    error on the perturbed crafting set after each round's noise steps), ``rounds``,
    ``train_error`` (at the end), ``stopped`` (the stop condition was met) and ``loss_history``
    (the mean objective of every noise step)."""
    y = _check(x, y, mode=mode, eps=eps, step_size=step_size, noise_steps=noise_steps, train_steps=train_steps,
               stop_error=stop_error, max_rounds=max_rounds, subset=subset, batch_size=batch_size, lr=lr)
    classwise = mode == "class"
    crafted = stratified_subset(y, subset, seed) if classwise and subset < 1 else torch.arange(len(y))
    inputs, labels = x[crafted], y[crafted]
    if noise_steps is None:
        noise_steps = math.ceil(len(crafted) / batch_size) if classwise else PAPER["sample_noise_steps"]
    device = device_of(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    batches = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(len(y), generator=batches), 0
    was_training = model.training

    def train_surrogate(perturb):
        """``train_steps`` SGD steps on the next mini-batches of the whole set, perturbed."""
        nonlocal order, cursor
        model.train()
        for _ in range(train_steps):
            if cursor >= len(order):  # a new epoch: a new order
                order, cursor = torch.randperm(len(y), generator=batches), 0
            idx = order[cursor:cursor + batch_size]
            cursor += batch_size
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(perturb(idx).to(device)), y[idx].to(device)).backward()
            optimizer.step()
        model.eval()

    def current(state: CraftState):
        """The perturbed images of whole-set indices under the loop's current noise."""
        if classwise:
            delta = state.delta()
            return lambda idx: (_as_float(x[idx]) + delta[y[idx]]).clamp(0, 1)
        return state.perturbed  # sample-wise: the crafting set is the whole set

    def crafting_error(perturbed_of):
        return error_rate(model, torch.cat([perturbed_of(torch.arange(s, min(s + batch_size, len(crafted))))
                                            for s in range(0, len(crafted), batch_size)]), labels, batch_size)

    errors = []

    def model_update(state: CraftState) -> bool:
        # the stop test on this round's noise (the authors' order: train, perturb, test)
        errors.append(crafting_error(state.perturbed))
        if errors[-1] < stop_error:
            return True
        train_surrogate(current(state))
        return False

    def objective(net, x_perturbed, idx):  # minimised: the surrogate's own loss on the noisy batch
        return F.cross_entropy(net(x_perturbed), labels[idx].to(x_perturbed.device), reduction="none")

    try:
        train_surrogate(lambda idx: _as_float(x[idx]))
        result = craft_perturbations(inputs, objective, models=model, eps=eps, norm="linf",
                                     steps=max_rounds * noise_steps, step_rule="pgd", lr=step_size, init="uniform",
                                     groups=labels if classwise else None, augment=augment,
                                     model_update=model_update, update_every=noise_steps, batch_size=batch_size,
                                     seed=seed, desc=desc)
        stopped = bool(errors) and errors[-1] < stop_error
        if not stopped:  # the last round's noise, never tested by the callback
            errors.append(crafting_error(lambda idx: result.perturbed(inputs[idx], idx)))
    finally:
        model.train(was_training)
    history = result.loss_history[0]
    return noise_artifact(result.delta, eps=eps, by_class=classwise,
                          groups=None if classwise else torch.arange(len(y)),
                          round_errors=torch.tensor(errors), rounds=len(errors), train_error=errors[-1],
                          stopped=errors[-1] < stop_error, loss_history=history[~history.isnan()])


@register_attack("error_minimizing_noise_classwise", paper="Huang et al. 2021", notebook="12_unlearnable_examples",
                 summary="class-wise error-minimising noise (one L-inf 8/255 pattern per class)",
                 timing="poisoning", goal="untargeted", knowledge="gray-box", universality="universal",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_error_minimizing_classwise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                                     subset: float = PAPER["class_subset"], **kwargs) -> dict:
    """Class-wise error-minimising noise: ``craft_error_minimizing(..., mode="class")``, crafted
    on a stratified 20% of the set as in the paper."""
    return craft_error_minimizing(model, x, y, mode="class", subset=subset, **kwargs)
