"""Convex Polytope poisoning: C. Zhu, W. R. Huang, A. Shafahi, H. Li, G. Taylor, C. Studer,
T. Goldstein, "Transferable Clean-Label Poisoning Attacks on Deep Neural Nets", ICML 2019,
Eq. (3)-(4) and Algorithm 1.

For a target t, k poisons x_1..x_k (crafted from bases b_j of the poison class) and an ensemble
of substitute feature extractors phi^(1..m):

    min_{x, c}  1/2 sum_i ||phi^(i)(t) - sum_j c_j^(i) phi^(i)(x_j)||^2 / ||phi^(i)(t)||^2     (Eq. 3)
    s.t.        c^(i) in the simplex (c >= 0, sum_j c_j = 1),  ||x_j - b_j||_inf <= eps

so that the target's features lie inside (or near) the convex polytope spanned by the poisons'
features in every substitute: a linear classifier that puts all poisons on the poison side of its
boundary must then put the target there too (the 2-D toy of Fig. 1). Algorithm 1 alternates

- the coefficients (``simplex_least_squares``): for each network, the simplex-constrained least
  squares problem solved to convergence by forward-backward splitting (a gradient step of size
  1/L, L the largest eigenvalue of Phi^T Phi, then the Euclidean projection onto the simplex,
  ``project_simplex``), warm-started from the previous outer step's coefficients (1/k at first);
- the poisons: one Adam step on the loss with the coefficients held fixed, then the projection onto
  the eps-ball around the bases and the pixel box (the shared loop of ``attacks.crafting`` with
  ``step_rule="adam"``).

The end-to-end ("multi-layer") variant (Sec. 4.2, Fig. 7) adds the loss of a middle layer
(``models.MID_LAYERS``), each layer with its own coefficients, summed with weight 1.

Settings of the authors' code (zhuchen03/ConvexPolytopePosioning, ``trainer.py``,
``craft_poisons_transfer.py``): Adam lr 0.04 with betas (0.9, 0.999) on mean/std-normalised pixels
(about 0.04 x 0.2 = 0.008 on our [0, 1] scale), 4000 iterations, no decay; eps 0.1 on the [0, 1]
scale (25.5/255); poisons start at the bases; BatchNorm in eval mode and dropout forced on while
crafting; the target's features computed once, with one dropout draw; coefficients start at 1/k and
are warm-started. Four departures (the first three in notebook 02's deviations): the inner solve stops after 100
iterations (``simplex_least_squares``; the authors': 10,000); the ensemble's losses are averaged
(the loop's ensemble mean) where the code sums them (Adam's steps do not depend on that scale);
dropout acts on the penultimate features (``models.with_dropout``) where the authors' networks apply
it inside every block; and every coefficient is kept at least ``coefficient_floor`` (1%) of the
equal share 1/k (below).

Why the floor. The simplex-constrained least squares is sparse at its optimum: the target's
features are nearest a low-dimensional face of the poisons' polytope, and most coefficients are
exactly 0 after the projection. A poison with coefficient 0 gets no gradient from Eq. 3, and Adam
does not move a parameter whose gradient is 0. With the authors' ensembles of dropout networks the
coefficients are re-solved under fresh dropout draws at every step, so the set of poisons in use
changes; on one network without dropout (the "Just How Toxic" benchmark's setting, notebook 04) it
hardly ever does. Measured on a ResNet-18 stand-in trained like notebook 04's surrogate (10 poisons,
eps 8/255, 120 steps, 5 targets): 26 of 50 poisons never moved, exactly those whose coefficient was
0 at every step, and 11 of 50 still with dropout 0.2. With a floor of 1% of 1/k every poison moves
(all 50 to the full budget), and Eq. 3's loss at the exact, unfloored coefficients is the same to
three digits: the floor costs the objective nothing and spends the whole budget. The authors'
code has no floor (``coefficient_floor=0`` restores it exactly).

``feature_collision_objective`` is the baseline compared at the same budget: each poison's
features pulled onto the target's, 1/2 ||phi(x_j) - phi(t)||^2 / ||phi(t)||^2, in the same ensemble,
with dropout and under the same eps-ball (Poison Frogs' proximity penalty replaced by the budget).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..models import layer_outputs
from ..registry import register_attack
from .crafting import CraftResult, craft_perturbations, device_of

#: the authors' Adam step, 0.04 on normalised pixels, on the [0, 1] scale (x the CIFAR-10 std, about 0.2)
ADAM_LR_01 = 0.04 * 0.2
PENULTIMATE = ("penultimate",)
#: every coefficient at least this fraction of the equal share 1/k, so that every poison gets a
#: gradient (the module docstring: a departure from the authors' code, which has none)
COEFFICIENT_FLOOR = 0.01


# --------------------------------------------------------------------------- the coefficients
def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of every row of ``v`` onto the probability simplex (the sort-based
    algorithm of Held, Wolfe and Crowder 1974; Duchi et al. 2008, Fig. 1)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    cumulative = u.cumsum(-1) - 1
    ks = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = (u - cumulative / ks > 0).sum(-1, keepdim=True)  # the number of positive entries
    theta = cumulative.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp_min(0)


def project_floored_simplex(v: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """The Euclidean projection of every row of ``v`` onto {c : c_j >= floor, sum_j c_j = 1}: that
    set is floor + s * simplex with s = 1 - k * floor, so the projection is
    floor + s * project_simplex((v - floor) / s). ``floor`` 0 is ``project_simplex``."""
    k = v.shape[-1]
    if floor < 0 or floor * k >= 1:
        raise ValueError(f"floor={floor}: need 0 <= floor < 1/k = {1 / k:g}")
    if floor == 0:
        return project_simplex(v)
    scale = 1 - k * floor
    return floor + scale * project_simplex((v - floor) / scale)


@torch.no_grad()
def simplex_least_squares(poison_feats: torch.Tensor, target_feats: torch.Tensor, init: torch.Tensor, *,
                          tol: float = 1e-6, max_iters: int = 100, min_coefficient: float = 0.0) -> torch.Tensor:
    """argmin_{c in simplex} ||target - c^T poison||^2 for every row at once, by projected gradient
    (forward-backward splitting) with step 1/L, from ``init`` (the warm start).

    ``poison_feats`` [T, k, D], ``target_feats`` [T, D], ``init`` [T, k]; stops when the relative
    change of every row is below ``tol`` (the authors' tolerance) or after ``max_iters``. The
    authors allow 10,000 iterations per outer step; with dropout the features change at every
    step and the solve rarely meets the tolerance, so the default here is 100 (about 40x faster on
    2 cores), and the warm start carries the solve on across outer steps. ``min_coefficient``
    (below 1/k) restricts the simplex to coefficients at least that large (``project_floored_simplex``)."""
    gram = poison_feats @ poison_feats.transpose(1, 2)            # [T, k, k] = Phi^T Phi
    linear = (poison_feats @ target_feats.unsqueeze(-1)).squeeze(-1)  # [T, k] = Phi^T t
    lipschitz = torch.linalg.eigvalsh(gram)[:, -1].clamp_min(1e-12)
    # a warm start below the floor (solved without one) is made feasible first
    c = init.clone() if bool((init >= min_coefficient).all()) else project_floored_simplex(init, min_coefficient)
    for _ in range(max_iters):
        grad = (gram @ c.unsqueeze(-1)).squeeze(-1) - linear
        new = project_floored_simplex(c - grad / lipschitz[:, None], min_coefficient)
        change = (new - c).norm(dim=1) / c.norm(dim=1).clamp_min(1e-8)
        c = new
        if bool((change < tol).all()):
            break
    return c


def polytope_loss(target_feats: torch.Tensor, poison_feats: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Eq. 3 for one network and layer, per target: 1/2 ||t - c^T Phi||^2 / ||t||^2, shapes
    [T, D], [T, k, D], [T, k] -> [T]."""
    residual = target_feats - (coeffs.unsqueeze(-1) * poison_feats).sum(1)
    return 0.5 * residual.pow(2).sum(1) / target_feats.pow(2).sum(1)


# --------------------------------------------------------------------------- the objectives
class _TargetObjective:
    """Shared by both objectives: poisons laid out target-major (sample i belongs to target
    i // k), the target's features computed once per network and layer, with one dropout draw."""

    def __init__(self, targets: torch.Tensor, k: int, layers: Sequence[str] = PENULTIMATE,
                 dropout: float = 0.0, seed: int = 0, coefficient_floor: float = COEFFICIENT_FLOOR):
        if targets.dim() != 4:
            raise ValueError(f"targets: need images [T, C, H, W], got shape {tuple(targets.shape)}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout}: must lie in [0, 1)")
        if not 0 <= coefficient_floor < 1:
            raise ValueError(f"coefficient_floor={coefficient_floor}: a fraction of the equal share 1/k, in [0, 1)")
        self.targets, self.k, self.dropout = targets, int(k), float(dropout)
        self.min_coefficient = float(coefficient_floor) / self.k  # the floor of every coefficient
        self._layers = layers if callable(layers) else tuple(layers)
        self.generator = torch.Generator().manual_seed(seed)
        self._target_feats: dict = {}

    def layers(self, model) -> tuple:
        """The feature levels of ``model``: the same for every network, or ``layers(model)``."""
        return tuple(self._layers(model)) if callable(self._layers) else self._layers

    def features(self, model, x: torch.Tensor) -> list[torch.Tensor]:
        # dropout on the penultimate features only (models.with_dropout), at the network's own rate
        p = getattr(model, "dropout", self.dropout)
        layers = self.layers(model)
        return [self._dropout(f, p) if name == "penultimate" and p > 0 else f
                for f, name in zip(layer_outputs(model, x, layers), layers)]

    def _dropout(self, f: torch.Tensor, p: float) -> torch.Tensor:
        """Inverted dropout (as ``F.dropout`` in training mode) with masks drawn from the objective's
        own seeded generator: ``F.dropout`` draws from the global RNG, whose state depends on what
        ran before in the process (which stages came from the cache), so the poisons did too."""
        keep = torch.rand(f.shape, generator=self.generator) >= p
        return f * keep.to(f.device) / (1 - p)

    def target_features(self, model) -> list[torch.Tensor]:
        if id(model) not in self._target_feats:
            with torch.no_grad():
                device = device_of(model)  # the crafting loop sends batches there too
                self._target_feats[id(model)] = [f.detach() for f in self.features(model, self.targets.to(device))]
        return self._target_feats[id(model)]

    def _split(self, idx: torch.Tensor) -> torch.Tensor:
        which = idx // self.k
        if len(idx) % self.k or not bool((which.view(-1, self.k) == which.view(-1, self.k)[:, :1]).all()):
            raise ValueError(f"a crafting batch must hold whole groups of the {self.k} poisons of a target: "
                             f"use a batch size that is a multiple of {self.k} and no shuffling")
        return which.view(-1, self.k)[:, 0]


class ConvexPolytopeObjective(_TargetObjective):
    """Eq. 3 as an objective of the crafting loop: per network and layer, the coefficients are
    updated first (warm-started, poisons fixed, each at least ``coefficient_floor / k``), then the
    loss of each target is spread evenly over its k poisons. ``coefficients[(id(model), layer)]``
    holds the current ones [T, k]."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.coefficients: dict = {}

    def __call__(self, model, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        which = self._split(idx)
        feats = self.features(model, x)
        total = 0.0
        for layer, f, t in zip(self.layers(model), feats, self.target_features(model)):
            poison = f.view(len(which), self.k, -1)
            key = (id(model), layer)
            if key not in self.coefficients:
                self.coefficients[key] = torch.full((len(self.targets), self.k), 1.0 / self.k, device=f.device)
            c = simplex_least_squares(poison.detach(), t[which], self.coefficients[key][which],
                                      min_coefficient=self.min_coefficient)
            self.coefficients[key][which] = c
            total = total + polytope_loss(t[which], poison, c)
        return (total / self.k).repeat_interleave(self.k)


class FeatureCollisionObjective(_TargetObjective):
    """The baseline at the same budget: every poison's features onto the target's,
    1/2 ||phi(x_j) - phi(t)||^2 / ||phi(t)||^2 per poison, summed over layers."""

    def __call__(self, model, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        which = idx // self.k
        total = 0.0
        for f, t in zip(self.features(model, x), self.target_features(model)):
            total = total + 0.5 * (f - t[which]).pow(2).sum(1) / t[which].pow(2).sum(1)
        return total


OBJECTIVES = {"convex_polytope": ConvexPolytopeObjective, "feature_collision": FeatureCollisionObjective}


# --------------------------------------------------------------------------- the attack
def check_inputs(bases: torch.Tensor, targets: torch.Tensor, *, eps: float, models, base_labels=None,
                 target_labels=None) -> None:
    """The checks every entry point runs before any compute."""
    if not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: an L-inf budget on the [0, 1] pixel scale lies in (0, 1] "
                         f"(the paper's 0.1 = 25.5/255; did you mean {eps}/255?)")
    if isinstance(models, (list, tuple)) and len(models) == 0:
        raise ValueError("models: an ensemble of size 0; give at least one substitute network")
    if len(bases) == 0 or len(targets) == 0:
        raise ValueError("need at least one base and one target")
    if base_labels is not None and target_labels is not None:
        same = set(torch.as_tensor(base_labels).tolist()) & set(torch.as_tensor(target_labels).tolist())
        if same:
            raise ValueError(f"the target class must differ from the poison class (both {sorted(same)})")


@register_attack("convex_polytope", paper="Zhu et al. 2019", notebook="02_convex_polytope",
                 summary="poisons whose features enclose the target's in a convex polytope, in an "
                         "ensemble of substitutes, for transfer to unknown victims",
                 timing="poisoning", goal="targeted", knowledge="black-box", universality="individual",
                 influence="causative", violation="integrity", specificity="targeted")
def craft_poisons(models, bases: torch.Tensor, targets: torch.Tensor, *, eps: float = 0.1,
                  steps: int = 4000, lr: float = ADAM_LR_01, layers: Sequence[str] = PENULTIMATE,
                  objective: str = "convex_polytope", dropout: float = 0.0, seed: int = 0,
                  coefficient_floor: float = COEFFICIENT_FLOOR, base_labels=None, target_labels=None, on_step=None,
                  desc: str = "craft convex-polytope poisons") -> tuple[torch.Tensor, CraftResult, object]:
    """k poisons for every target, crafted jointly.

    ``models``: the substitute networks (BatchNorm in eval mode; dropout at each network's
    ``dropout`` attribute, else ``dropout``); ``bases`` [k, C, H, W] (the same for every target)
    or [T, k, C, H, W] (each target's own), and ``targets`` [T, C, H, W], as floats in [0, 1] or
    uint8; ``layers`` a tuple of layer names (``models.layer_outputs``) or a function of the
    network returning one; ``coefficient_floor``: every polytope coefficient at least this
    fraction of 1/k, so that every poison is moved (the module docstring; 0: the authors' code).
    Returns (poisons [T, k, C, H, W] in [0, 1], the loop's result, the objective with its final
    coefficients)."""
    check_inputs(bases, targets, eps=eps, models=models, base_labels=base_labels, target_labels=target_labels)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}: unknown; allowed: {', '.join(OBJECTIVES)}")
    members = list(models) if isinstance(models, (list, tuple)) else [models]
    for m in members:
        m.eval()  # BatchNorm's running statistics, as in the authors' code; dropout is forced on by the objective
    n_targets = len(targets)
    per_target = bases.dim() == targets.dim() + 1
    if per_target and len(bases) != n_targets:
        raise ValueError(f"bases [T, k, ...] for {len(bases)} targets, but {n_targets} targets")
    k = bases.shape[1] if per_target else len(bases)
    targets01 = targets.float() / 255 if targets.dtype == torch.uint8 else targets
    # target-major: target i owns rows ik..ik+k-1
    inputs = bases.flatten(0, 1) if per_target else bases.repeat(n_targets, *[1] * (bases.dim() - 1))
    obj = OBJECTIVES[objective](targets01, k, layers, dropout, seed, coefficient_floor)
    batch = k * max(1, 256 // k)
    result = craft_perturbations(inputs, obj, eps=eps, norm="linf", steps=steps, step_rule="adam", lr=lr,
                                 init="zeros", models=members, batch_size=batch, shuffle=False, seed=seed,
                                 on_step=on_step, desc=desc)
    return result.perturbed(inputs).view(n_targets, k, *inputs.shape[1:]), result, obj
