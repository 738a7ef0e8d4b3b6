"""Contrastive Poisoning (CP), sample-wise (CP-S): H. He, K. Zha, D. Katabi, "Indiscriminate
Poisoning Attacks on Unsupervised Contrastive Learning", ICLR 2023; the "UCL" baseline of
Transferable Unlearnable Examples (Ren et al., ICLR 2023, notebook 14).

The min-min of error-minimising noise (Huang et al. 2021, Eq. 2; ``error_minimizing``) with
SimCLR's contrastive loss in place of the cross-entropy, and no labels: over an encoder f, a
projector g and one perturbation per image,

    min_{f, g}  E_batches  min_{delta}  NT-Xent( g(f(A(x + delta))), g(f(A'(x + delta))) )
    s.t.        ||delta_i||_inf <= eps,   x_i + delta_i in [0, 1],

NT-Xent at ``temperature`` (SimCLR, Chen et al. 2020, Eq. 1; ``learners.contrastive.nt_xent``)
between two random augmentations A, A' of each perturbed image of a batch, the other images of the
batch the negatives. Solved by alternation, ``rounds`` times:

(a) ``train_steps`` SGD steps (lr ``lr``, momentum 0.9, weight decay 5e-4) of the encoder and
    projector, train mode, on two views of the next mini-batches of x + delta;
(b) ``noise_steps`` L-inf PGD steps (the sign of the gradient turned to descent, step
    ``step_size``, from a uniform random start in the ball) on delta, encoder and projector fixed in
    eval mode, each a pass over the set in shuffled mini-batches (so that the negatives vary).

Both on the shared crafting loop (``crafting.craft_perturbations``): (b) are its steps, (a) its
``model_update`` callback every ``noise_steps`` steps, as ``error_minimizing`` does; each batch's
NT-Xent is one value, spread evenly over the batch's samples.

The augmentation must be differentiable w.r.t. the input: ``learners.contrastive.two_views``
(torchvision's v2 transforms on uint8 images, one call per image) is not, so ``differentiable_view``
is a torch-ops stand-in of SimCLR's CIFAR-10 augmentation: a random resized crop (area in
``crop_scale``, aspect ratio in [3/4, 4/3], bilinear ``grid_sample``) with a horizontal flip
(p = 1/2), colour jitter of brightness, contrast and saturation (0.4, with p = 0.8; NO hue jitter)
and grayscale (p = 0.2). He et al. use a differentiable SimCLR augmentation (kornia) as well; its
exact parameters are UNCONFIRMED here.

Departures and UNCONFIRMED settings: the schedule (``rounds``, ``train_steps``, ``noise_steps``,
the optimiser of the encoder) is this module's (the paper's UNCONFIRMED); the first training steps
are on the clean images (before any noise exists, as in ``error_minimizing``); the noise steps use
eval mode (batch norm on its running statistics; whether the authors keep train mode is
UNCONFIRMED); no stop criterion (the paper trains for a fixed number of epochs); the encoder is the
caller's (a small ``models`` network at the ``cpu`` profile, ResNet-18 in the paper) and the
projector SimCLR's two-layer MLP (``learners.contrastive.mlp``) unless one is passed; CP-C (one
delta per cluster or class) is not implemented.
"""
from __future__ import annotations

import math
from typing import Callable
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_attack
from ..rng import seeded
from ..train import check_pixels
from .availability import check_budget, noise_artifact
from .crafting import CraftState, craft_perturbations, device_of

#: the stand-in augmentation's strengths (SimCLR's CIFAR-10 ones, hue left out)
JITTER, P_JITTER, P_GRAY = 0.4, 0.8, 0.2
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def _gray(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def differentiable_view(x: torch.Tensor, generator: torch.Generator, crop_scale: tuple = (0.2, 1.0)) -> torch.Tensor:
    """One random augmentation of every image of ``x`` [B, C, H, W] (floats in [0, 1]),
    differentiable w.r.t. ``x``, every draw from ``generator`` (CPU): the module docstring's
    resized crop and flip, then (three channels only) colour jitter and grayscale."""
    n, c = x.shape[:2]
    draws = torch.rand(n, 7, generator=generator)
    area = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * draws[:, 0]
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * draws[:, 1])
    width, height = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    centre_x, centre_y = (draws[:, 2] * 2 - 1) * (1 - width), (draws[:, 3] * 2 - 1) * (1 - height)
    sign = torch.where(draws[:, 4] < 0.5, -1.0, 1.0)  # a flip mirrors the crop
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sign * width, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if c != 3:
        return out
    jitter = (draws[:, 5] < P_JITTER).to(x.dtype)
    factors = (1 - JITTER + 2 * JITTER * torch.rand(n, 3, generator=generator)).to(x.dtype)
    factors = (1 + jitter[:, None] * (factors - 1)).to(x.device).view(n, 3, 1, 1, 1)  # 1: not applied
    out = (out * factors[:, 0]).clamp(0, 1)  # brightness
    mean = _gray(out).mean((1, 2, 3), keepdim=True)
    out = ((out - mean) * factors[:, 1] + mean).clamp(0, 1)  # contrast
    gray = _gray(out)
    out = ((out - gray) * factors[:, 2] + gray).clamp(0, 1)  # saturation
    to_gray = (draws[:, 6] < P_GRAY).to(x.device).view(n, 1, 1, 1)
    return torch.where(to_gray, _gray(out).clamp(0, 1).expand_as(out), out)


def _features(encoder: nn.Module):
    return encoder.features if callable(getattr(encoder, "features", None)) else encoder


def feature_dim(encoder: nn.Module, x: torch.Tensor) -> int:
    dim = getattr(encoder, "feature_dim", None)
    if isinstance(dim, int):
        return dim
    was_training = encoder.training
    try:
        with torch.no_grad():
            return int(_features(encoder.eval())(_as_unit(x[:2]).to(device_of(encoder))).flatten(1).shape[1])
    finally:
        encoder.train(was_training)


def _as_unit(x):
    return x.float() / 255 if x.dtype == torch.uint8 else x


def simclr_batch_loss(encoder, projector, images, generator, temperature, crop_scale):
    """The NT-Xent of two ``differentiable_view``s of a batch of [0, 1] images (differentiable
    w.r.t. the images and the networks; TUE's L_CL too)."""
    from ..learners.contrastive import nt_xent  # here: learners import evaluation, which imports every attack
    features = _features(encoder)
    z1 = projector(features(differentiable_view(images, generator, crop_scale)).flatten(1))
    z2 = projector(features(differentiable_view(images, generator, crop_scale)).flatten(1))
    return nt_xent(z1, z2, temperature)


def contrastive_loss(encoder: nn.Module, projector: nn.Module, x: torch.Tensor, *, temperature: float = 0.5,
                     batch_size: int = 512, crop_scale: tuple = (0.2, 1.0), seed: int = 0) -> float:
    """The mean over batches (of ``batch_size``, in order) of the NT-Xent of two
    ``differentiable_view``s of the images ``x`` (uint8 or floats in [0, 1]) through the fixed
    encoder and projector (eval mode, modes restored), the views drawn from ``seed``: the same
    draws for clean and poisoned images of the same shape."""
    _check_images(x)
    _integer("batch_size", batch_size, 2)
    generator, device, values = torch.Generator().manual_seed(seed), device_of(encoder), []
    modes = [(m, m.training) for m in (encoder, projector)]
    try:
        encoder.eval()
        projector.eval()
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                images = _as_unit(x[start:start + batch_size]).to(device)
                values.append(float(simclr_batch_loss(encoder, projector, images, generator, temperature, crop_scale)))
    finally:
        for m, flag in modes:
            m.train(flag)
    return sum(values) / len(values)


def _integer(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: need an integer >= {minimum}")


def _check_images(x):
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) < 2:
        raise ValueError("x: need a tensor of at least two images [N, C, H, W] (contrast needs pairs)")
    check_pixels("x", x)


def validate_contrastive(encoder, x, *, eps, step_size, noise_steps, train_steps, rounds, batch_size, temperature, lr,
                         crop_scale, projector, seed):
    """Check the arguments of contrastive poisoning (and TUE's, which shares them) before any
    compute; returns ``crop_scale`` as a tuple."""
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"encoder: need an nn.Module (a models.Classifier, whose features are used), "
                         f"got {type(encoder).__name__}")
    if projector is not None and not isinstance(projector, nn.Module):
        raise ValueError(f"projector: need an nn.Module or None, got {type(projector).__name__}")
    check_budget(eps)
    _check_images(x)
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not 0 < step_size <= eps:
        raise ValueError(f"step_size={step_size!r}: need a PGD step in (0, eps={eps:.5g}]")
    _integer("noise_steps", noise_steps)
    _integer("train_steps", train_steps, 0)
    _integer("rounds", rounds)
    _integer("batch_size", batch_size, 2)
    _integer("seed", seed, 0)
    for name, value in (("temperature", temperature), ("lr", lr)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise ValueError(f"{name}={value!r}: need a finite number > 0")
    scale = tuple(crop_scale) if isinstance(crop_scale, (tuple, list)) else ()
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"crop_scale={crop_scale!r}: need (low, high) with 0 < low <= high <= 1")
    return scale


def contrastive_min_min(encoder: nn.Module, x: torch.Tensor, *, eps: float, step_size: float, noise_steps: int,
                        train_steps: int, rounds: int, batch_size: int, temperature: float, lr: float,
                        crop_scale: tuple, projector: nn.Module | None, seed: int, desc: str,
                        ssl_weight: float = 1.0, noise_term: Callable | None = None) -> dict:
    """The alternation of the module docstring (arguments checked by ``validate_contrastive``),
    written once for contrastive poisoning and TUE: the noise steps minimise ``ssl_weight`` times the
    batch's NT-Xent plus ``noise_term(delta, idx)`` (a scalar of the batch's perturbations and their
    indices into ``x``; TUE's class-wise separability discriminant). Returns the sample-wise
    ``noise_artifact`` fields: ``delta``, ``loss_history``, ``train_loss``, ``loss_clean``,
    ``loss_poisoned``."""
    n, device = len(x), device_of(encoder)
    if projector is None:
        from ..learners.contrastive import mlp  # here: learners import evaluation, which imports every attack
        with seeded(seed):
            projector = mlp([feature_dim(encoder, x), 512, 128])
    projector = projector.to(device)
    networks = nn.ModuleList([encoder, projector])
    modes = [(m, m.training) for m in networks.modules()]
    optimizer = torch.optim.SGD(networks.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    batches = torch.Generator().manual_seed(seed)
    views = torch.Generator().manual_seed(seed + 1)  # the crafting loop draws from its own generator
    order, cursor = torch.randperm(n, generator=batches), 0
    train_loss = []

    def train(perturbed_of):
        """``train_steps`` SGD steps on two views of the next mini-batches of the perturbed set."""
        nonlocal order, cursor
        networks.train()
        losses = []
        for _ in range(train_steps):
            if cursor + min(batch_size, n) > n:  # a new epoch: full batches only (batch norm, negatives)
                order, cursor = torch.randperm(n, generator=batches), 0
            idx = order[cursor:cursor + batch_size]
            cursor += batch_size
            loss = simclr_batch_loss(encoder, projector, perturbed_of(idx).to(device), views, temperature, crop_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        train_loss.append(sum(losses) / len(losses) if losses else math.nan)
        networks.eval()

    def model_update(state: CraftState) -> bool:
        train(state.perturbed)
        return False

    def objective(net, x_perturbed, idx):  # minimised: one value per batch, spread over its samples
        loss = x_perturbed.new_zeros(())
        if ssl_weight:
            loss = loss + ssl_weight * simclr_batch_loss(net, projector, x_perturbed, views, temperature, crop_scale)
        if noise_term is not None:
            loss = loss + noise_term(x_perturbed - _as_unit(x[idx]).to(x_perturbed.device), idx)
        return loss.expand(len(idx)) / len(idx)

    try:
        train(lambda idx: _as_unit(x[idx]))
        result = craft_perturbations(x, objective, models=encoder, eps=eps, norm="linf", steps=rounds * noise_steps,
                                     step_rule="pgd", lr=step_size, init="uniform", model_update=model_update,
                                     update_every=noise_steps, batch_size=batch_size, shuffle=True, seed=seed,
                                     desc=desc)
        clean = contrastive_loss(encoder, projector, x, temperature=temperature, batch_size=batch_size,
                                 crop_scale=crop_scale, seed=seed)
        poisoned = contrastive_loss(encoder, projector, result.perturbed(x), temperature=temperature,
                                    batch_size=batch_size, crop_scale=crop_scale, seed=seed)
    finally:
        for m, flag in modes:
            m.training = flag
    batches_per_pass = -(-n // batch_size)
    return {"delta": result.delta, "loss_history": result.loss_history[0] * n / batches_per_pass,
            "train_loss": torch.tensor(train_loss), "loss_clean": clean, "loss_poisoned": poisoned}


@register_attack("contrastive_poisoning", paper="He et al. 2023, Contrastive Poisoning (UCL baseline of Ren et al. "
                                               "2023)", notebook="14_tue",
                 summary="sample-wise contrastive poisoning (CP-S): min-min error-minimising noise with SimCLR's "
                         "NT-Xent loss instead of cross-entropy, no labels",
                 timing="poisoning", goal="untargeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_contrastive_poisoning(encoder: nn.Module, x: torch.Tensor, *, eps: float = 8 / 255,
                                step_size: float = 0.8 / 255, noise_steps: int = 5, train_steps: int = 100,
                                rounds: int = 50, batch_size: int = 512, temperature: float = 0.5, lr: float = 0.06,
                                crop_scale: tuple = (0.2, 1.0), projector: nn.Module | None = None,
                                seed: int = 0, desc: str = "contrastive poisoning") -> dict:
    """Sample-wise contrastive-poisoning noise for the images ``x`` (uint8 or floats in [0, 1]; no
    labels), by the alternation of the module docstring. ``encoder`` (a ``models.Classifier``,
    whose ``features`` are used, or any module mapping images to features) and ``projector``
    (default: a new two-layer MLP to 128 dimensions, drawn from ``seed``) are trained in place
    (they may live on a GPU); their modes are restored.

    Returns ``availability.noise_artifact`` (sample-wise) with ``loss_history`` (the mean over
    batches of the NT-Xent of every noise step), ``train_loss`` [rounds] (the mean NT-Xent of
    each round's training steps; NaN without them), and ``loss_clean`` and ``loss_poisoned``
    (``contrastive_loss`` with the final networks, on x and on x + delta, the same draws)."""
    crop_scale = validate_contrastive(encoder, x, eps=eps, step_size=step_size, noise_steps=noise_steps,
                                      train_steps=train_steps, rounds=rounds, batch_size=batch_size,
                                      temperature=temperature, lr=lr, crop_scale=crop_scale, projector=projector,
                                      seed=seed)
    out = contrastive_min_min(encoder, x, eps=eps, step_size=step_size, noise_steps=noise_steps,
                              train_steps=train_steps, rounds=rounds, batch_size=batch_size, temperature=temperature,
                              lr=lr, crop_scale=crop_scale, projector=projector, seed=seed, desc=desc)
    delta = out.pop("delta")
    return noise_artifact(delta, eps=eps, by_class=False, groups=torch.arange(len(x)), **out)
