"""Transferable Unlearnable Examples (TUE): J. Ren, H. Xu, Y. Wan, X. Ma, L. Sun, J. Tang,
"Transferable Unlearnable Examples", ICLR 2023 (Sec. 4; the authors' code renjie3/TUE).

Unlearnable noise that survives both supervised and unsupervised (contrastive) training, made
linearly separable by class. The **class-wise separability discriminant** (CSD) of perturbations
delta_i with labels y_i, over the M classes present:

    c_k = mean_{i: y_i = k} delta_i,        sigma_k = mean_{i: y_i = k} || delta_i - c_k ||_2,
    d_kl = || c_k - c_l ||_2,
    L_CSD = 1/M sum_k 1/(M - 1) sum_{l != k} (sigma_k + sigma_l) / d_kl

(``csd_loss``; small when each class's perturbations are tight around a centre far from the others'),
and the TUE objective, over a contrastive learner f_theta and two augmentations T1, T2:

    min_theta min_{||delta_i||_inf <= eps}  sum_i L_CL( f(T1(x_i + delta_i)), f(T2(x_i + delta_i)) )
                                            + lambda L_CSD({delta_i, y_i}),

solved by the alternation S1 (train theta on the perturbed data) and S2 (PGD on delta with theta
fixed). L_CL here is SimCLR's NT-Xent (Chen et al. 2020); the authors also run MoCo and SimSiam
backbones (not here: the ``cpu`` profile's backbone is SimCLR).

As the authors' ``get_linear_noise_csd_loss`` does, the CSD is computed on each mini-batch's
perturbations (flattened, Euclidean), and the noise step minimises ``ssl_weight * L_CL +
csd_weight * L_CSD``: their SimCLR and SimSiam scripts set ssl_weight 0 and lambda 0.1 (the noise
then follows the CSD alone while the encoder still trains on the perturbed data), their MoCo
script ssl_weight 1 and lambda 1. Both are parameters here.

Written once with contrastive poisoning (TUE without the CSD term is its CP-S):
``contrastive_poisoning.contrastive_min_min`` runs the alternation on the crafting loop
(``crafting.craft_perturbations``; S2 its steps, S1 its ``model_update``, as ``error_minimizing``
does) with its differentiable SimCLR augmentation and loss; TUE adds the CSD term. Departures (UNCONFIRMED against the code): the schedule (``rounds``,
``train_steps``, ``noise_steps``) is this module's; the augmentation is the torch-ops stand-in of
``contrastive_poisoning.differentiable_view``; the authors' expectation over augmentations
(``eot_size``) is one draw.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import register_attack
from .availability import check_training_set, noise_artifact
from .contrastive_poisoning import contrastive_min_min, validate_contrastive


def csd_loss(delta: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_CSD of the module docstring for perturbations ``delta`` [N, ...] with ``labels`` [N]; zero
    (no gradient) with fewer than two classes present."""
    flat = delta.flatten(1).float()
    labels = torch.as_tensor(labels, device=flat.device).long()
    if labels.shape != (len(flat),):
        raise ValueError(f"labels of shape {tuple(labels.shape)}: need one per perturbation ({len(flat)})")
    classes = labels.unique()
    if len(classes) < 2:
        return flat.sum() * 0.0
    onehot = (labels[:, None] == classes[None]).float()  # [N, M]
    counts = onehot.sum(0)
    centres = onehot.T @ flat / counts[:, None]  # [M, D]
    position = torch.searchsorted(classes, labels)  # each sample's row of centres
    spread = onehot.T @ (flat - centres[position]).norm(dim=1) / counts  # sigma_k
    distance = torch.cdist(centres, centres)
    m = len(classes)
    off = ~torch.eye(m, dtype=torch.bool, device=flat.device)
    ratio = (spread[:, None] + spread[None, :])[off] / distance[off].clamp_min(1e-12)
    return ratio.sum() / (m * (m - 1))


@register_attack("tue", paper="Ren et al. 2023, Transferable Unlearnable Examples", notebook="14_tue",
                 summary="contrastive error-minimising noise made linearly separable by class (the class-wise "
                         "separability discriminant)",
                 timing="poisoning", goal="untargeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_tue(encoder: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 8 / 255,
              step_size: float = 0.8 / 255, noise_steps: int = 20, train_steps: int = 20, rounds: int = 40,
              batch_size: int = 512, temperature: float = 0.5, lr: float = 0.06, ssl_weight: float = 0.0,
              csd_weight: float = 0.1, crop_scale: tuple = (0.2, 1.0), projector: nn.Module | None = None,
              seed: int = 0, desc: str = "TUE") -> dict:
    """Sample-wise TUE noise for the images ``x`` (uint8 or floats in [0, 1]) with labels ``y``, by
    the alternation of the module docstring; ``encoder`` and ``projector`` as in
    ``contrastive_poisoning.craft_contrastive_poisoning`` (trained in place, modes restored).

    Returns ``availability.noise_artifact`` (sample-wise) with ``loss_history`` (the mean objective
    of every noise step), ``train_loss`` [rounds], ``csd_clean`` (the CSD of a uniform random start,
    for scale) and ``csd_final`` (of the final noise, over the whole set), and ``loss_clean`` /
    ``loss_poisoned`` (the NT-Xent with the final networks on x and x + delta)."""
    crop_scale = validate_contrastive(encoder, x, eps=eps, step_size=step_size, noise_steps=noise_steps,
                                      train_steps=train_steps, rounds=rounds, batch_size=batch_size,
                                      temperature=temperature, lr=lr, crop_scale=crop_scale, projector=projector,
                                      seed=seed)
    y = check_training_set(x, y)
    for name, value in (("ssl_weight", ssl_weight), ("csd_weight", csd_weight)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"{name}={value!r}: need a finite weight >= 0")
    if ssl_weight == 0 and csd_weight == 0:
        raise ValueError("ssl_weight=0 and csd_weight=0: the noise step would have no objective")
    labels = y

    def separability(delta, idx):  # the CSD of the batch's perturbations (the authors' per-batch CSD)
        return csd_weight * csd_loss(delta, labels[idx].to(delta.device))

    start = (torch.rand(x.shape, generator=torch.Generator().manual_seed(seed + 2)) * 2 - 1) * eps
    out = contrastive_min_min(encoder, x, eps=eps, step_size=step_size, noise_steps=noise_steps,
                              train_steps=train_steps, rounds=rounds, batch_size=batch_size, temperature=temperature,
                              lr=lr, crop_scale=crop_scale, projector=projector, seed=seed, desc=desc,
                              ssl_weight=ssl_weight, noise_term=separability if csd_weight else None)
    delta = out.pop("delta")
    with torch.no_grad():
        csd_start, csd_final = float(csd_loss(start, y)), float(csd_loss(delta, y))
    return noise_artifact(delta, eps=eps, by_class=False, groups=torch.arange(len(x)), csd_clean=csd_start,
                          csd_final=csd_final, **out)
