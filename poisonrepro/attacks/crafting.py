"""The one crafting loop for bounded perturbations, shared by every deep-net attack.

It follows the brewing loop of forest's ``_Witch`` base class (``witchcoven/witch_base.py``
of J. Geiping, L. Fowl, W. R. Huang, W. Czaja, G. Taylor, M. Moeller, T. Goldstein,
"Witches' Brew: Industrial Scale Data Poisoning via Gradient Matching", ICLR 2021): restarts
that keep the best, a step rule, a step decay, differentiable augmentation, an ensemble of
surrogates and an optional model step between perturbation steps. Each attack supplies only
its objective. It will serve Convex Polytope (Zhu et al. 2019), MetaPoison (Huang et al.
2020), Witches' Brew (Geiping et al. 2021), the clean-label backdoor (Turner et al. 2019) and
the hidden-trigger backdoor (Saha et al. 2020), Unlearnable Examples (Huang et al. 2021),
Unlearnable Clusters (Zhang et al. 2023) and TUE (Ren et al. 2023); the evasion PGD of
``evasion_pgd`` runs on it already.

The problem, for inputs x_i (pixels in [0, 1]), groups g(i) and one delta per group:

    min_{delta}  sum_i  mean_{f in ensemble}  L(f, A(clip(x_i + delta_{g(i)})), i)
    s.t.         ||delta_g|| <= eps  and  x_i + delta_{g(i)} in [0, 1]

with ``L`` the attack's ``objective`` (lower is better for the attacker) and ``A`` a random
flip-and-crop (``augment``). One *step* is one pass over all samples in mini-batches: the
gradient of the summed objective w.r.t. each delta is accumulated over the pass (so a delta
shared by a class sees every member's gradient), then every delta takes one step and is
projected:

- ``step_rule="pgd"``, projected gradient descent (Madry et al., ICLR 2018, Eq. 2):
  ``delta <- Proj(delta - lr * sign(grad))`` for L-inf, ``delta <- Proj(delta - lr * grad / ||grad||)``
  for L2;
- ``step_rule="signadam"``, forest's ``signAdam``: Adam (Kingma & Ba 2015) fed the *sign* of
  the accumulated gradient, ``delta <- Proj(Adam(delta, sign(grad)))`` -- the Adam step first,
  then the projection, as forest does for its Adam variants;
- ``step_rule="adam"``: plain Adam on the accumulated gradient, then the projection (Convex
  Polytope's poison step: Zhu et al. 2019, Algorithm 1, Adam with lr 0.04);
- ``step_rule="gd"``: plain projected gradient descent, ``delta <- Proj(delta - lr * grad)``, the
  raw gradient unnormalised (the hidden-trigger backdoor's step, Saha et al. 2020, as the
  "Just How Toxic" benchmark runs it).

``decay="multistep"`` multiplies the step size by 0.1 at forest's milestones, ``steps // 2.667``,
``steps // 1.6`` and ``steps // 1.142`` (about 3/8, 5/8 and 7/8 of the steps); ``decay`` may
also be a callable ``(step, steps) -> factor`` for an attack's own schedule (MetaPoison's
quadratic warm-up and x0.1 at steps 20 and 40).

``Proj`` is the Euclidean projection onto {||delta|| <= eps} intersected with the pixel box:

- L-inf: a clamp onto [max(-eps, -x), min(eps, 1 - x)];
- L2: exact by the KKT conditions, ``delta = clamp(t * z, -x, 1 - x)`` with the largest
  t in (0, 1] for which the norm is within eps (found by bisection; the norm grows with t);
- per sample, the perturbed input x + delta itself is stored, so the pixel range holds
  exactly and an L-inf PGD reproduces the classic loop on the adversarial image bit for bit;
- for a delta shared by a group (per class, per cluster) the pixel box of one member is not
  the box of another: ``group_range="clip"`` (default, as Unlearnable Examples and TUE apply
  class-wise noise) keeps ||delta_g|| <= eps and clips every perturbed input into [0, 1], so
  the perturbation each sample really receives, clip(x_i + delta_g) - x_i, is in the budget
  too (clipping only shrinks it); ``group_range="intersect"`` confines delta_g to the box of
  every member (delta_g in [max_i -x_i, min_i 1 - x_i]), so that no clipping is needed.

Restarts (forest's ``restarts``) run the loop again from the seed ``seed + r``; after each,
the objective is evaluated at the final deltas (the augmentation drawn from ``seed`` itself,
the same draws for every restart), summed over each group's members, and every group keeps
the delta of its best restart (``keep_best="group"``), or every group that of the restart with
the lowest total (``keep_best="all"``, for objectives coupling the samples of a batch, such
as gradient matching).

Ensembles: ``models`` as a list makes the objective the mean over its members, each called
on the same augmented batch. MetaPoison's staggered ensemble (members at different training
epochs) and the min-min of error-minimising noise (Unlearnable Examples: a few model steps,
then a few noise steps) use ``model_update``: a callback run after every ``update_every``
perturbation steps (never after the last), which may train, advance or re-initialise the
members in place and may stop crafting by returning True.

A transform before the delta (``transform``, per-sample deltas only): an ``InputTransform``
T with one parameter tensor theta_i per sample and its own bound, applied to the clean input
before the additive delta (MetaPoison's colour shift, Huang et al. 2020, Sec. 3):

    x_perturbed_i = clip(b_i + delta_i, 0, 1),   b_i = clip(T(x_i; theta_i), 0, 1),
    s.t.  theta_i in Theta (T.project)  and  ||delta_i|| <= eps

so the budget ``eps`` bounds the additive part relative to the *transformed* image b_i, and
Theta bounds the transform. Both are optimised jointly: the loop differentiates the objective
(plus the transform's optional per-sample ``penalty(theta)``) w.r.t. delta and theta, steps
both with the same rule and decay (theta's step size is ``lr * T.lr_scale``; under "pgd" theta
takes signed steps whatever the norm), then projects theta onto Theta and delta onto the
budget intersected with the box [-b_i, 1 - b_i] of the new b_i. ``CraftResult.delta`` is then
the additive part, ``CraftResult.transform_params`` the thetas, ``CraftResult.transformed`` the
b_i, and ``CraftResult.perturbed`` composes them; callbacks see the current thetas through
``CraftState.transform_params()`` and the composed inputs through ``CraftState.perturbed``.
Without a transform nothing changes.

Determinism: all randomness (random start, batch order with ``shuffle``, augmentation) comes
from one ``torch.Generator`` per restart; results depend on ``batch_size`` only through the
augmentation draws and batch-coupled objectives. The loop never changes a model's train/eval
mode: the objective and the callbacks own it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ..precision import autocast
from ..train import augment_batch, check_pixels, progress

NORMS = ("linf", "l2")
STEP_RULES = ("pgd", "signadam", "adam", "gd")
DECAYS = ("none", "multistep")
INITS = ("zeros", "uniform")
GROUP_RANGES = ("clip", "intersect")
KEEP_BEST = ("group", "all")
FOREST_MILESTONE_DIVISORS = (2.667, 1.6, 1.142)  # forest's MultiStepLR milestones: steps // d

Objective = Callable[[object, torch.Tensor, torch.Tensor], torch.Tensor]


class InputTransform:
    """A bounded, parametrised transform T(x; theta) applied to each clean input before the
    additive delta (see the module docstring); one parameter tensor of ``param_shape`` per
    sample. Subclasses implement ``apply`` and ``project`` and may override ``initial``
    (default: zeros, which should be the identity) and ``penalty`` (default: none)."""
    param_shape: tuple = ()
    lr_scale: float = 1.0  # theta's step size relative to the loop's ``lr``

    def initial(self, n: int, dtype) -> torch.Tensor:
        return torch.zeros((n, *self.param_shape), dtype=dtype)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """T(x; params) for a batch [B, C, H, W] and its parameters [B, *param_shape];
        differentiable in ``params`` (the loop clips the result into [0, 1])."""
        raise NotImplementedError

    def project(self, params: torch.Tensor) -> torch.Tensor:
        """The parameters projected onto their bound (returns a new tensor or ``params``)."""
        raise NotImplementedError

    def penalty(self, params: torch.Tensor) -> torch.Tensor | None:
        """An optional per-sample penalty [B] added to the objective (e.g. smoothness)."""
        return None


@dataclass
class CraftResult:
    """The crafted perturbations: ``delta[g]`` is group g's, ``groups[i]`` sample i's group
    (``arange(N)`` when crafted per sample)."""
    delta: torch.Tensor          # [G, C, H, W]
    groups: torch.Tensor         # [N] long
    loss_history: torch.Tensor   # [restarts, steps]: mean per-sample objective during each step (NaN after a stop)
    best_loss: torch.Tensor      # [G]: the kept restart's final objective, summed over the group
    restart_loss: torch.Tensor   # [restarts, G]: every restart's final objective, summed over the group
    best_restart: torch.Tensor   # [G] long: which restart each group's delta comes from
    # with a ``transform``: its parameters per sample [N, *param_shape] (delta is then the additive part)
    transform_params: torch.Tensor | None = None
    transform: InputTransform | None = field(default=None, repr=False)

    def per_sample(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The delta of every sample (or of ``indices``): ``delta[groups[i]]``."""
        groups = self.groups if indices is None else self.groups[indices]
        return self.delta[groups]

    def transformed(self, inputs: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The inputs before the additive delta: clip(T(x_i; theta_i), 0, 1) with a transform,
        else x_i itself (floats); ``inputs`` and ``indices`` as for ``perturbed``."""
        x = _as_float(inputs)
        if self.transform is None:
            return x
        params = self.transform_params if indices is None else self.transform_params[indices]
        with torch.no_grad():
            return self.transform.apply(x, params.to(x.dtype)).clamp(0, 1)

    def perturbed(self, inputs: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The perturbed inputs clip(x_i + delta_{g(i)}, 0, 1) as floats (with a transform,
        clip(clip(T(x_i; theta_i), 0, 1) + delta_i, 0, 1)). ``inputs`` (uint8 or floats in
        [0, 1]) are all N samples, or, with ``indices``, ``inputs[j]`` is sample ``indices[j]``."""
        x = self.transformed(inputs, indices)
        return (x + self.per_sample(indices).to(x.dtype)).clamp(0, 1)


@dataclass
class CraftState:
    """What the callbacks see after a step: the restart, how many steps it has completed, the
    step size used, the models (the caller's list or object, modifiable in place) and
    read-only views of the current perturbations."""
    restart: int
    step: int
    lr: float
    models: object
    _deltas: "_Deltas" = field(repr=False)

    def delta(self) -> torch.Tensor:
        """The current deltas per group, [G, C, H, W] (a copy)."""
        return self._deltas.deltas()

    def perturbed(self, indices: torch.Tensor) -> torch.Tensor:
        """The current perturbed inputs of ``indices`` (floats in [0, 1]), e.g. to train on."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        with torch.no_grad():
            return self._deltas.perturbed(indices, self._deltas.load(indices)).detach()

    def transform_params(self) -> torch.Tensor | None:
        """The current transform parameters [N, ...] (a copy), or None without a transform."""
        tparam = getattr(self._deltas, "tparam", None)
        return None if tparam is None else tparam.clone()


# --------------------------------------------------------------------------- projections
def project_l2_box(z: torch.Tensor, eps: float, low: torch.Tensor | None = None,
                   high: torch.Tensor | None = None, iters: int = 40) -> torch.Tensor:
    """Euclidean projection of each row of ``z`` onto {d : ||d||_2 <= eps, low <= d <= high},
    where low <= 0 <= high (the box contains the centre of the ball).

    Minimising ||d - z||^2 + mu (||d||^2 - eps^2) coordinate-wise over the box gives
    d(mu) = clamp(z / (1 + mu), low, high); the norm of clamp(t z) grows with t = 1 / (1 + mu),
    so bisection on t in [0, 1] finds the multiplier. The lower end of the bracket is
    returned, so the norm never exceeds eps.
    """
    shape = z.shape
    flat = z.flatten(1)
    if low is None:
        norms = flat.norm(dim=1, keepdim=True)
        return (flat * (eps / norms.clamp_min(eps))).view(shape)
    low, high = low.flatten(1), high.flatten(1)
    d = torch.maximum(torch.minimum(flat, high), low)
    outside = d.norm(dim=1) > eps
    if outside.any():
        zo, lo, hi = flat[outside], low[outside], high[outside]
        t_low = torch.zeros(len(zo), 1, dtype=z.dtype, device=z.device)
        t_high = torch.ones_like(t_low)
        for _ in range(iters):
            t = (t_low + t_high) / 2
            over = torch.maximum(torch.minimum(zo * t, hi), lo).norm(dim=1, keepdim=True) > eps
            t_high = torch.where(over, t, t_high)
            t_low = torch.where(over, t_low, t)
        d[outside] = torch.maximum(torch.minimum(zo * t_low, hi), lo)
    return d.view(shape)


def _project_linf(delta: torch.Tensor, eps: float, low=None, high=None) -> torch.Tensor:
    if low is None:
        return delta.clamp(-eps, eps)
    return torch.minimum(torch.maximum(delta, low.clamp(min=-eps)), high.clamp(max=eps))


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1]; floats unchanged."""
    return x.to(torch.float32) / 255 if x.dtype == torch.uint8 else x


def _random_start(shape, eps: float, norm: str, generator: torch.Generator, dtype) -> torch.Tensor:
    """L-inf: uniform in the eps-box. L2: a uniformly random direction at a radius uniform in [0, eps]."""
    if norm == "linf":
        return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * eps
    direction = torch.randn(shape, generator=generator, dtype=dtype).flatten(1)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    radius = torch.rand(shape[0], 1, generator=generator, dtype=dtype) * eps
    return (direction * radius).view(shape)


def _decay_factor(step: int, steps: int, decay) -> float:
    if callable(decay):  # the attack's own schedule
        return float(decay(step, steps))
    if decay == "none":
        return 1.0
    # forest's MultiStepLR(milestones=[steps // 2.667, steps // 1.6, steps // 1.142], gamma=0.1);
    # never before the first step
    milestones = [max(1, int(steps // d)) for d in FOREST_MILESTONE_DIVISORS]
    return 0.1 ** sum(step >= m for m in milestones)


# --------------------------------------------------------------------------- the perturbations
class _Deltas:
    """The optimised tensor ``param``, its accumulated gradient and its projection; two kinds:
    one perturbation per sample (``_SampleDeltas``) or one per group (``_GroupDeltas``)."""

    def __init__(self, inputs, eps, norm, batch_size, dtype):
        self.inputs, self.eps, self.norm, self.batch_size, self.dtype = inputs, eps, norm, batch_size, dtype
        self.n = len(inputs)

    def load(self, idx) -> torch.Tensor:
        return _as_float(self.inputs[idx]).to(self.dtype)

    def chunks(self, n):
        return [slice(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]

    def zero_grad(self):
        self.grad.zero_()


class _SampleDeltas(_Deltas):
    """Per sample; ``param`` holds the perturbed inputs x + delta (see the module docstring)."""

    def __init__(self, inputs, eps, norm, batch_size, dtype):
        super().__init__(inputs, eps, norm, batch_size, dtype)
        self.param = torch.empty(inputs.shape, dtype=dtype)
        self.groups = torch.arange(self.n)

    def reset(self, init: str, generator: torch.Generator):
        for sl in self.chunks(self.n):
            self.param[sl] = self.load(sl)
        if init == "uniform":
            self.param += _random_start(self.param.shape, self.eps, self.norm, generator, self.dtype)
            self.project()
        self.grad = torch.zeros_like(self.param)

    def batch(self, idx, x, requires_grad):
        leaf = self.param[idx].requires_grad_(requires_grad)  # advanced indexing copies: a fresh leaf
        return leaf, leaf

    def accumulate(self, idx, leaf_grad):
        self.grad[idx] = leaf_grad  # each sample is in exactly one batch of a pass

    @torch.no_grad()
    def project(self):
        for sl in self.chunks(self.n):
            x, adv = self.load(sl), self.param[sl]
            if self.norm == "linf":  # the classic PGD clamp, onto the eps-box and then [0, 1]
                self.param[sl] = torch.min(torch.max(adv, x - self.eps), x + self.eps).clamp(0, 1)
            else:
                delta = project_l2_box(adv - x, self.eps, -x, 1 - x)
                self.param[sl] = (x + delta).clamp(0, 1)

    def perturbed(self, idx, x):
        return self.param[idx]

    def deltas(self):
        out = torch.empty_like(self.param)
        for sl in self.chunks(self.n):
            out[sl] = self.param[sl] - self.load(sl)
        return out


class _GroupDeltas(_Deltas):
    """One delta per group, shared by its members; ``param`` holds the deltas [G, ...]."""

    def __init__(self, inputs, eps, norm, batch_size, dtype, groups, group_range):
        super().__init__(inputs, eps, norm, batch_size, dtype)
        self.groups = groups
        self.num_groups = int(groups.max()) + 1
        self.param = torch.empty((self.num_groups, *inputs.shape[1:]), dtype=dtype)
        self.low = self.high = None
        if group_range == "intersect":  # the box that keeps every member's pixels in [0, 1]
            lowest = torch.full_like(self.param, math.inf)
            highest = torch.full_like(self.param, -math.inf)
            for sl in self.chunks(self.n):
                x = self.load(sl)
                index = groups[sl].view(-1, *[1] * (x.dim() - 1)).expand_as(x)
                lowest.scatter_reduce_(0, index, x, "amin")
                highest.scatter_reduce_(0, index, x, "amax")
            self.low, self.high = -lowest, 1 - highest

    def reset(self, init: str, generator: torch.Generator):
        self.param.zero_()
        if init == "uniform":
            self.param += _random_start(self.param.shape, self.eps, self.norm, generator, self.dtype)
            self.project()
        self.grad = torch.zeros_like(self.param)

    def batch(self, idx, x, requires_grad):
        present, position = torch.unique(self.groups[idx], return_inverse=True)
        self._present = present
        leaf = self.param[present].requires_grad_(requires_grad)
        raw = x + leaf[position]
        # clip into [0, 1], but let the gradient through on the closed interval: torch.clamp's
        # is zero at the bounds, so a member with a pixel at exactly 0 or 1 (common in uint8
        # images) would never move its group's delta at that pixel
        inside = (raw >= 0) & (raw <= 1)
        return leaf, torch.where(inside, raw, raw.clamp(0, 1))

    def accumulate(self, idx, leaf_grad):
        self.grad.index_add_(0, self._present, leaf_grad)

    @torch.no_grad()
    def project(self):
        if self.norm == "linf":
            self.param.copy_(_project_linf(self.param, self.eps, self.low, self.high))
        else:
            self.param.copy_(project_l2_box(self.param, self.eps, self.low, self.high))

    def perturbed(self, idx, x):
        return (x + self.param[self.groups[idx]]).clamp(0, 1)

    def deltas(self):
        return self.param.clone()


class _TransformedSampleDeltas(_Deltas):
    """Per sample, after an ``InputTransform``: ``param`` holds the additive deltas, ``tparam``
    the transform's parameters; the input is clip(T(x; theta), 0, 1) + delta (module docstring)."""

    def __init__(self, inputs, eps, norm, batch_size, dtype, transform):
        super().__init__(inputs, eps, norm, batch_size, dtype)
        self.transform = transform
        self.param = torch.zeros(inputs.shape, dtype=dtype)
        self.tparam = transform.initial(self.n, dtype).clone()
        self.groups = torch.arange(self.n)

    def base(self, x, tparams):
        return self.transform.apply(x, tparams).clamp(0, 1)

    def reset(self, init: str, generator: torch.Generator):
        self.tparam.copy_(self.transform.initial(self.n, self.dtype))
        self.param.zero_()
        if init == "uniform":
            self.param += _random_start(self.param.shape, self.eps, self.norm, generator, self.dtype)
        self.project()
        self.grad = torch.zeros_like(self.param)
        self.tgrad = torch.zeros_like(self.tparam)

    def zero_grad(self):
        self.grad.zero_()
        self.tgrad.zero_()

    def batch(self, idx, x, requires_grad):
        delta = self.param[idx].requires_grad_(requires_grad)
        tparams = self.tparam[idx].requires_grad_(requires_grad)
        raw = self.base(x, tparams) + delta
        # in [0, 1] after the projection up to rounding; clip the values, keep the gradient
        inside = (raw >= 0) & (raw <= 1)
        return (delta, tparams), torch.where(inside, raw, raw.clamp(0, 1))

    def accumulate(self, idx, leaf_grads):
        self.grad[idx] = leaf_grads[0]
        self.tgrad[idx] = leaf_grads[1]

    @torch.no_grad()
    def project(self):
        # theta first: delta's box depends on the transformed image b = clip(T(x; theta), 0, 1)
        self.tparam.copy_(self.transform.project(self.tparam))
        for sl in self.chunks(self.n):
            base = self.base(self.load(sl), self.tparam[sl])
            if self.norm == "linf":
                self.param[sl] = _project_linf(self.param[sl], self.eps, -base, 1 - base)
            else:
                self.param[sl] = project_l2_box(self.param[sl], self.eps, -base, 1 - base)

    def perturbed(self, idx, x):
        return (self.base(x, self.tparam[idx]) + self.param[idx]).clamp(0, 1)

    def deltas(self):
        return self.param.clone()


# --------------------------------------------------------------------------- checks
def _check_arguments(inputs, objective, eps, norm, steps, step_rule, lr, decay, restarts, init, groups,
                     group_range, augment, models, model_update, update_every, batch_size, keep_best,
                     transform=None):
    def choice(name, value, allowed):
        if value not in allowed:
            raise ValueError(f"{name}={value!r}: unknown; allowed: {', '.join(map(repr, allowed))}")
    choice("norm", norm, NORMS)
    choice("step_rule", step_rule, STEP_RULES)
    if not callable(decay):
        choice("decay", decay, DECAYS)
    choice("init", init, INITS)
    choice("group_range", group_range, GROUP_RANGES)
    choice("keep_best", keep_best, KEEP_BEST)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2 or len(inputs) == 0:
        raise ValueError("inputs: need a non-empty tensor [N, C, H, W] (or [N, D])")
    check_pixels("inputs", inputs)
    dim = inputs[0].numel()
    if norm == "linf" and not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: an L-inf budget must lie in (0, 1] on the [0, 1] pixel scale "
                         f"(8/255, not 8)")
    if norm == "l2" and not 0 < eps <= math.sqrt(dim):
        raise ValueError(f"eps={eps}: an L2 budget must lie in (0, sqrt({dim})] on the [0, 1] pixel "
                         f"scale (a budget of 300 on the 0-255 scale is 300/255)")
    if not callable(objective):
        raise ValueError("objective: need a callable objective(model, x_perturbed, batch_indices) -> [B]")
    for name, value, minimum in (("steps", steps, 0), ("restarts", restarts, 1),
                                 ("update_every", update_every, 1), ("batch_size", batch_size, 1)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name}={value!r}: need an integer >= {minimum}")
    if not lr > 0:
        raise ValueError(f"lr={lr}: need a step size > 0")
    if groups is not None:
        if not isinstance(groups, torch.Tensor) or groups.dtype != torch.long or groups.shape != (len(inputs),):
            raise ValueError(f"groups: need a LongTensor of shape [{len(inputs)}] (one group per sample), got "
                             f"{getattr(groups, 'dtype', type(groups).__name__)} "
                             f"{tuple(getattr(groups, 'shape', ()))}")
        if int(groups.min()) < 0:
            raise ValueError("groups: group indices must be >= 0")
    if augment and not callable(augment) and inputs.dim() != 4:
        raise ValueError("augment=True: flip-and-crop needs images [N, C, H, W]")
    if isinstance(models, (list, tuple)) and len(models) == 0:
        raise ValueError("models: an empty ensemble")
    if model_update is not None and not callable(model_update):
        raise ValueError("model_update: need a callable model_update(state) -> bool | None")
    if transform is not None:
        if not isinstance(transform, InputTransform):
            raise ValueError(f"transform: need an InputTransform, got {type(transform).__name__}")
        if groups is not None:
            raise ValueError("transform: only for per-sample deltas (groups=None)")
    if model_update is not None and restarts > 1:
        raise ValueError("restarts > 1 with a model_update callback: the restarts would craft against "
                         "different models; craft once per restart instead")


# --------------------------------------------------------------------------- the loop
def device_of(models) -> torch.device:
    """The device of the first parameter of the first module among ``models`` (CPU if none)."""
    for model in models if isinstance(models, (list, tuple)) else [models]:
        for p in model.parameters() if isinstance(model, nn.Module) else ():
            return p.device
    return torch.device("cpu")


def craft_perturbations(inputs: torch.Tensor, objective: Objective, *, eps: float, norm: str = "linf",
                        steps: int, step_rule: str = "pgd", lr: float, decay: str = "none",
                        restarts: int = 1, init: str = "zeros", groups: torch.Tensor | None = None,
                        group_range: str = "clip", augment: bool | Callable = False,
                        models: nn.Module | Sequence[nn.Module] | object | None = None,
                        model_update: Callable[[CraftState], bool | None] | None = None,
                        update_every: int = 1, on_step: Callable[[CraftState], None] | None = None,
                        batch_size: int = 256, shuffle: bool = False, keep_best: str = "group",
                        seed: int = 0, desc: str = "crafting",
                        transform: InputTransform | None = None, precision: str = "fp32") -> CraftResult:
    """Minimise ``objective`` over bounded perturbations of ``inputs`` (see the module docstring).

    - ``inputs``: [N, C, H, W] uint8 pixels or floats in [0, 1]; converted batch by batch.
    - ``objective(model, x_perturbed, batch_indices) -> [B]``: the per-sample loss (lower is
      better for the attacker) of the perturbed (and augmented) batch, differentiable w.r.t.
      ``x_perturbed``; ``batch_indices`` index ``inputs`` (for targets, labels, ...). An
      objective of a whole batch (gradient matching) spreads it evenly: ``loss.expand(B) / B``.
    - ``models``: a list is an ensemble (objective called per member, averaged); anything else
      (a module, a ``ModelStack``, None) is passed to the objective as is.
    - ``eps`` on the [0, 1] scale; ``norm`` "linf" | "l2"; ``step_rule`` "pgd" | "signadam" | "adam" | "gd";
      ``lr`` the step size; ``decay`` "none" | "multistep" (forest's x0.1 at 3/8, 5/8, 7/8) or a
      callable ``(step, steps) -> factor``.
    - ``init`` "zeros" | "uniform" (random start in the budget); ``restarts`` from seeds
      ``seed + r``, ``keep_best`` "group" | "all".
    - ``groups``: LongTensor [N] of group indices (one shared delta per group: per class, per
      cluster) or None (per sample); ``group_range`` "clip" | "intersect".
    - ``augment``: True for a random flip and 4-pixel crop (``train.augment_batch``,
      differentiable), or a callable ``(x, generator) -> x``.
    - ``model_update(state)``: run after every ``update_every`` steps but the last; may change
      the models in place; returning True stops crafting. ``on_step(state)``: after every step.
    - ``transform``: an ``InputTransform`` applied before the delta, optimised jointly with it
      (per-sample deltas only; see the module docstring).
    - ``precision``: ``"fp32"`` (default) or ``"bf16"``: the objective's forward pass under bf16
      autocast (``poisonrepro.precision``). An attack opts in only where the bench shows it
      faster at an equal objective: bf16 gradients flip the sign of small entries, so PGD's
      trajectory is not fp32's.
    """
    _check_arguments(inputs, objective, eps, norm, steps, step_rule, lr, decay, restarts, init, groups,
                     group_range, augment, models, model_update, update_every, batch_size, keep_best, transform)
    dtype = torch.float32 if inputs.dtype == torch.uint8 else inputs.dtype
    if transform is not None:
        deltas: _Deltas = _TransformedSampleDeltas(inputs, eps, norm, batch_size, dtype, transform)
    elif groups is None:
        deltas: _Deltas = _SampleDeltas(inputs, eps, norm, batch_size, dtype)
    else:
        deltas = _GroupDeltas(inputs, eps, norm, batch_size, dtype, groups, group_range)
    augmentation = augment if callable(augment) else (augment_batch if augment else None)
    # the caller's list itself, so that a callback replacing a member in place is seen
    members = models if isinstance(models, list) else list(models) if isinstance(models, tuple) else None
    n = len(inputs)
    num_groups = int(deltas.groups.max()) + 1
    # deltas, their optimiser and every random draw stay on the CPU; each batch goes to the
    # models' device (a GPU in the paper profile) and the gradient comes back through autograd
    device = device_of(members if members is not None else models)

    def evaluate(idx, x, generator, need_grad):
        """Per-sample objective (mean over the ensemble) of one batch, and its gradient
        w.r.t. the batch's deltas."""
        leaf, x_in = deltas.batch(idx, x, need_grad)
        # a transform adds its parameters as a second leaf, and maybe a penalty on them
        leaves = leaf if isinstance(leaf, tuple) else (leaf,)
        penalty = transform.penalty(leaves[1]) if transform is not None else None
        if augmentation is not None:
            x_in = augmentation(x_in, generator)
        x_in = x_in.to(device)
        callees = members if members is not None else [models]
        total, grads = 0.0, None
        for k, member in enumerate(callees):
            with autocast(device, precision):
                loss = objective(member, x_in, idx)
            loss = loss.float() if isinstance(loss, torch.Tensor) else loss
            if not isinstance(loss, torch.Tensor) or loss.shape != (len(idx),):
                raise ValueError(f"objective must return a per-sample loss of shape [{len(idx)}], got "
                                 f"{tuple(getattr(loss, 'shape', ())) or type(loss).__name__}")
            if need_grad:
                scaled = loss.sum() if members is None else loss.sum() / len(callees)
                gs = torch.autograd.grad(scaled, leaves, retain_graph=k < len(callees) - 1, allow_unused=True)
                gs = [torch.zeros_like(lf) if g is None else g for lf, g in zip(leaves, gs)]
                grads = gs if grads is None else [a + b for a, b in zip(grads, gs)]
            total = total + loss.detach().cpu()
        total = total if members is None else total / len(callees)
        if penalty is not None:
            if need_grad:
                gs = torch.autograd.grad(penalty.sum(), leaves, allow_unused=True)
                grads = [a if g is None else a + g for a, g in zip(grads, gs)]
            total = total + penalty.detach()
        grad = None if grads is None else (tuple(grads) if isinstance(leaf, tuple) else grads[0])
        return total, grad

    history = torch.full((restarts, steps), math.nan)
    restart_loss = torch.full((restarts, num_groups), math.nan)
    best_delta = best_loss = best_restart = None
    for restart in range(restarts):
        generator = torch.Generator().manual_seed(seed + restart)
        deltas.reset(init, generator)
        tparam = getattr(deltas, "tparam", None)
        optimizer = None
        if step_rule in ("signadam", "adam"):
            optimizer = torch.optim.Adam([deltas.param] if tparam is None else
                                         [{"params": [deltas.param]}, {"params": [tparam]}], lr=lr)
        label = desc if restarts == 1 else f"{desc} (restart {restart + 1}/{restarts})"
        for step in progress(range(steps), desc=label, leave=False):
            step_lr = lr * _decay_factor(step, steps, decay)
            order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
            deltas.zero_grad()
            summed = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                loss, grad = evaluate(idx, deltas.load(idx), generator, need_grad=True)
                deltas.accumulate(idx, grad)
                summed += float(loss.sum())
            history[restart, step] = summed / n
            with torch.no_grad():
                if optimizer is not None:  # (signed) Adam: Adam on (the sign of) grad, then the projection
                    optimizer.param_groups[0]["lr"] = step_lr
                    deltas.param.grad = deltas.grad.sign() if step_rule == "signadam" else deltas.grad.clone()
                    if tparam is not None:
                        optimizer.param_groups[1]["lr"] = step_lr * transform.lr_scale
                        tparam.grad = deltas.tgrad.sign() if step_rule == "signadam" else deltas.tgrad.clone()
                    optimizer.step()
                elif step_rule == "gd":
                    deltas.param.sub_(step_lr * deltas.grad)
                elif norm == "linf":
                    deltas.param.sub_(step_lr * deltas.grad.sign())
                else:
                    grad_norm = deltas.grad.flatten(1).norm(dim=1).clamp_min(1e-12)
                    deltas.param.sub_(step_lr * deltas.grad / grad_norm.view(-1, *[1] * (deltas.grad.dim() - 1)))
                if optimizer is None and tparam is not None:  # a box-bounded transform: signed steps
                    tparam.sub_(step_lr * transform.lr_scale * deltas.tgrad.sign())
                deltas.project()
            state = CraftState(restart, step + 1, step_lr, models, deltas)
            if on_step is not None:
                on_step(state)
            if model_update is not None and (step + 1) % update_every == 0 and step + 1 < steps:
                if model_update(state):
                    break
        deltas.param.grad = None
        if tparam is not None:
            tparam.grad = None

        # the final objective of this restart, on the same augmentation draws for every restart
        eval_generator = torch.Generator().manual_seed(seed)
        final = torch.empty(n)
        with torch.enable_grad():
            for start in range(0, n, batch_size):
                idx = torch.arange(start, min(start + batch_size, n))
                final[idx] = evaluate(idx, deltas.load(idx), eval_generator, need_grad=False)[0].float()
        per_group = torch.zeros(num_groups).index_add_(0, deltas.groups, final)
        restart_loss[restart] = per_group
        if best_delta is None:
            best_delta, best_loss = deltas.deltas(), per_group.clone()
            best_restart = torch.zeros(num_groups, dtype=torch.long)
            best_tparam = None if tparam is None else tparam.clone()
            continue
        if keep_best == "group":
            better = per_group < best_loss
        else:
            better = torch.full((num_groups,), bool(per_group.sum() < best_loss.sum()))
        if better.any():
            best_delta[better] = deltas.deltas()[better]
            best_loss[better] = per_group[better]
            best_restart[better] = restart
            if best_tparam is not None:
                best_tparam[better] = tparam[better]
    return CraftResult(best_delta, deltas.groups.clone(), history, best_loss, restart_loss, best_restart,
                       best_tparam, transform)
