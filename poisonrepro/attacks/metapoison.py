"""MetaPoison: W. R. Huang, J. Geiping, L. Fowl, G. Taylor, T. Goldstein, "MetaPoison: Practical
General-purpose Clean-label Data Poisoning", NeurIPS 2020 (Algorithm 1).

Clean-label targeted poisoning by meta-learning: poisons X_p (training images of the poison
class, labels kept) are optimised so that a network trained on them classifies one target
image x_t as the adversarial class y_adv (by default the poison class). The bilevel problem
is approximated by unrolling K SGD steps of the training loss from the weights theta_m of each
of M surrogate models:

    theta^0 = theta_m,  theta^{k+1} = theta^k - alpha_m grad_theta L_train(B_k(X_p), theta^k)     (Alg. 1, l. 8-9)
    L_adv(X_p) = (1/M) sum_m (1/K) sum_{k=1..K} CW(f(x_t; theta^k), y_adv)                       (l. 10, 14)
    CW(z, y) = max( max_{j != y} z_j - z_y, -kappa )

with B_k a training batch that holds the poisons and clean training images, and the gradient
of L_adv w.r.t. the poisons taken through the unrolled steps (second order, ``create_graph``).
The surrogates are *staggered* (l. 3): model m starts at epoch floor(m T / M); after every
crafting step each trains one epoch and a model that reaches epoch T is re-initialised
(l. 11-13), so the ensemble always covers every stage of training.

Settings of the authors' code (wronnyhuang/metapoison, TF1; read for facts only):

- threat model (``parse.py``): additive L-inf ``eps`` 8 on the 0-255 scale (8/255 here) plus
  a ReColorAdv colour perturbation (Laidlaw & Feizi 2019): ``epscolor`` 0.04 per channel,
  ``gridshape`` 10x10x10, ``smoothcoef`` 1.0; poisons are the first ``npoison`` training images
  of ``poisonclass``; ``ytargetadv`` -1 means the poison class; pairs in the README: poison dog
  (5) -> target bird (2), and frog (6) -> plane (0) in the paper;
- crafting (``parse.py``, ``main.py``, ``utils.py``): K = ``nadapt`` = 2; M = number of MPI
  processes x ``nreplay`` = 24 (README quick start: 3 x 8); ``stagger`` 1 epoch, so T =
  ``maxepoch`` = M x stagger = 24 epochs and model m is at epoch (m + craftstep) mod 24, freshly
  initialised at epoch 0 (``main.py``, ``dock_weights_and_buffers``); the meta-gradient is
  averaged over *all* M models every step (``mpi.Allreduce`` / ``nmeta``), not a random subset;
  60 crafting steps (the victims use the poisons saved at ``craftstep`` 60; ``ncraftstep`` 61);
  Adam (``meta.py``, ``tf.train.AdamOptimizer``) on the additive perturbation and the colour grid
  jointly, ``craftrate`` 200 on the 0-255 pixel scale -- 200/255 here -- and 200 for the
  colour grid (unit-free, the same number): ``lr_scale`` 255 relative to the pixel step on
  [0, 1]; ``cr_schedule`` (``utils.py``): a quadratic warm-up ((step + 1) / 5)^2 over the first
  5 steps and x0.1 at steps 20 and 40 (``crdropperiod`` 20); the additive part starts uniform
  in the eps-box (``restart_poison``), the colour grid at zero;
- objective (``meta.py``, ``utils.carlini``): ``cwT``, the CW loss with ``clamp=-100`` (kappa
  100), averaged over the targets and over the unrolled steps 1..K (``cwTs[1:]``), plus
  ``smoothcoef`` x the colour grid's smoothness loss (``recolor.smoothloss``: the mean of the
  squared grid differences along each colour axis, each scaled by that axis' resolution);
- unrolled batches (``meta.py``, ``data.py``): each batch of ``batchsize`` 125 that contains
  poisons is used: its poisons replace their clean versions, the target is appended to the
  batch (so its logits come from the same batch-norm statistics, BN always in training mode),
  the poisons enter later unrolled steps with ``stop_gradient`` (the meta-gradient flows only
  through the first step's inputs) next to the clean images of the next K batches;
  ``trajectory`` "clean" by default: the surrogates themselves train on the clean data;
- surrogate and victim training (``parse.py``, ``utils.lr_schedule``, ``victim.py``): SGD
  without momentum (``optimizer`` sgd), ``lrnrate`` 0.1, ``batchsize`` 125, a linear warm-up
  (epoch + 1) / 5 over 5 epochs, x0.1 at epochs 100/150/200 (``schedule``), no weight decay, no
  augmentation; victims 200 epochs (``nvictimepoch``); architectures ``ConvNetBN`` (default, a
  5-layer conv net 16-32-32-64-64 with BN) and ``ResNet`` (ResNet-20: 3x3 basic blocks, 16 filters).

Colour perturbation (a ReColorAdv-style colour-space grid, ``ColorGridShift``): each poison
has a grid of 3 x 10 x 10 x 10 offsets over YUV space (``tf.image.rgb_to_yuv``'s matrix;
the code names it LUV); a pixel's colour is mapped through the trilinear interpolation of
identity + offsets, offsets in [-0.04, 0.04] per channel and identity + offsets inside the
YUV range. The poison is then

    p = clip(b + delta, 0, 1),   b = clip(C_theta(x), 0, 1),   |theta| <= 0.04,  ||delta||_inf <= 8/255,

on the shared crafting loop (``crafting.craft_perturbations`` with ``transform``): the
"budget" is |theta| <= eps_color elementwise and ||p - b||_inf <= eps (the additive part
relative to the recoloured image), with every image in [0, 1].

Deviations (and why):

- pixels on [0, 1] and every poison clipped into [0, 1] (the code clips the additive part to
  +-eps only, not the sum, which may leave [0, 255]);
- the colour grid spans the whole YUV range of the RGB cube (U +-0.436, V +-0.615), so that a
  zero offset is exactly the identity; the code's grid spans U, V in [-0.5, 0.5] with constant
  extension, which clips |V| > 0.5 (saturated reds and blues) even at zero offset;
- CW uses the largest *other* logit; the code's ``reduce_max(logits - logits * onehot)``
  takes max(0, largest other logit) (different only when all other logits are negative);
- all meta-gradients of one crafting step are taken at the surrogates' weights at the start
  of their epoch (the code interleaves them with the epoch's training steps);
- the clean images of the unrolled batches are drawn at random from the clean training images
  (the code takes the next K batches of the epoch), and the poisons per unrolled batch are
  ``poisons_per_batch`` (default ``poisons_per_unrolled_batch``: the expected number in a random
  batch of 125, at least 1, so that the unrolled batch holds the poisons at the share a victim's
  batch does), with the crafting loop's batches reshuffled every step;
- the smoothness penalty enters per poison with weight ``smooth_coef * (#poison batches) /
  #poisons``, which is the weight the code's gradient accumulation gives it (it adds the
  penalty of all poisons to the loss of every batch that holds poisons).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..models import convnet_bn
from ..registry import register_attack
from ..train import as_nchw
from .crafting import CraftResult, InputTransform, craft_perturbations

# tf.image.rgb_to_yuv's matrix (BT.601 YUV), rows Y, U, V: yuv = RGB_TO_YUV @ rgb
RGB_TO_YUV = torch.tensor([[0.299, 0.587, 0.114],
                           [-0.14714119, -0.28886916, 0.43601035],
                           [0.61497538, -0.51496512, -0.10001026]], dtype=torch.float64)
TRAJECTORIES = ("clean", "poison")


# --------------------------------------------------------------------------- schedules and loss
def surrogate_learning_rate(epoch: int, lr: float = 0.1, warmup_epochs: int = 5,
                            milestones: Sequence[int] = (100, 150, 200)) -> float:
    """The authors' ``lr_schedule``: a linear warm-up (epoch + 1) / warmup, x0.1 at each milestone."""
    warmup = min(1.0, (epoch + 1) / warmup_epochs) if warmup_epochs > 0 else 1.0
    return lr * warmup * 0.1 ** sum(epoch >= m for m in milestones)


def craft_rate_factor(step: int, warmup_steps: int = 5, milestones: Sequence[int] = (20, 40)) -> float:
    """The authors' ``cr_schedule`` as a factor: ((step + 1) / warmup)^2 up to 1, x0.1 at each milestone."""
    warmup = min(((step + 1) / warmup_steps) ** 2, 1.0) if warmup_steps > 0 else 1.0
    return warmup * 0.1 ** sum(step >= m for m in milestones)


def carlini_wagner_loss(logits: torch.Tensor, adversarial_class: int, kappa: float = 100.0) -> torch.Tensor:
    """max(max_{j != y} z_j - z_y, -kappa) per row: negative once class y wins by a margin."""
    target_logit = logits[:, adversarial_class]
    others = logits.clone()
    others[:, adversarial_class] = -math.inf
    return (others.max(dim=1).values - target_logit).clamp(min=-kappa)


def unrolled_adversarial_loss(model: nn.Module, poisons: torch.Tensor, poison_labels: torch.Tensor,
                              clean_batches: Sequence[tuple[torch.Tensor, torch.Tensor]], target: torch.Tensor,
                              adversarial_class: int, lr: float, kappa: float = 100.0,
                              later_poisons: torch.Tensor | None = None) -> torch.Tensor:
    """The meta-loss of one surrogate: K = len(clean_batches) - 1 SGD steps (lr ``lr``) on the
    training loss of [poisons, clean batch k] from the model's weights, with the target appended
    to every batch (batch norm in training mode, statistics of the whole batch, the model's
    running statistics left untouched), and the CW loss of the target averaged over the weights
    after steps 1..K. Differentiable w.r.t. ``poisons`` through every step (``create_graph``).
    The poisons enter the forward passes after the first as ``later_poisons``, by default their
    own values as constants (the authors' ``stop_gradient``): the meta-gradient flows through
    the first step's inputs and, via the weights, through every later step."""
    params = dict(model.named_parameters())
    buffers = {name: b.clone() for name, b in model.named_buffers()}  # BN updates them in place
    n_target = len(target)
    losses = []
    for step, (clean_x, clean_y) in enumerate(clean_batches):
        x_poison = poisons if step == 0 else poisons.detach() if later_poisons is None else later_poisons
        logits = functional_call(model, (params, buffers), (torch.cat([x_poison, clean_x, target]),))
        if step > 0:
            losses.append(carlini_wagner_loss(logits[-n_target:], adversarial_class, kappa).mean())
        if step == len(clean_batches) - 1:
            break
        train_loss = F.cross_entropy(logits[:-n_target], torch.cat([poison_labels, clean_y]))
        grads = torch.autograd.grad(train_loss, list(params.values()), create_graph=True)
        params = {name: p - lr * g for (name, p), g in zip(params.items(), grads)}
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------- the colour shift
class ColorGridShift(InputTransform):
    """A per-image colour-space grid (ReColorAdv, Laidlaw & Feizi 2019, as MetaPoison's
    ``recolor.py`` uses it): offsets theta [3, nY, nU, nV] on a regular grid over YUV space; a
    pixel of colour c is mapped to the trilinear interpolation of (identity + theta) at c.

    Bound: |theta| <= eps per channel and identity + theta inside the YUV range (``project``).
    ``penalty``: ``smooth_weight`` x the mean squared grid difference along each colour axis,
    scaled by that axis' resolution (``recolor.smoothloss``), per image."""

    def __init__(self, eps: float | Sequence[float] = 0.04, grid: Sequence[int] = (10, 10, 10),
                 smooth_weight: float = 0.0, lr_scale: float = 255.0):
        if len(grid) != 3 or min(grid) < 2:
            raise ValueError(f"grid={tuple(grid)}: need three resolutions >= 2 (Y, U, V)")
        self.grid = tuple(int(g) for g in grid)
        self.param_shape = (3, *self.grid)
        self.eps = torch.as_tensor(eps, dtype=torch.float64).expand(3).clone()
        self.smooth_weight = float(smooth_weight)
        self.lr_scale = float(lr_scale)
        # the YUV range of the RGB cube: each row's negative and positive coefficients summed
        self.low = RGB_TO_YUV.clamp(max=0).sum(1)
        self.high = RGB_TO_YUV.clamp(min=0).sum(1)
        axes = [torch.linspace(float(lo), float(hi), n, dtype=torch.float64)
                for lo, hi, n in zip(self.low, self.high, self.grid)]
        self.identity = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # [3, nY, nU, nV]

    def _like(self, t: torch.Tensor, ref: torch.Tensor, shape=(1, 3, 1, 1, 1)) -> torch.Tensor:
        return t.to(dtype=ref.dtype, device=ref.device).view(shape)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        matrix = RGB_TO_YUV.to(dtype=x.dtype, device=x.device)
        yuv = torch.einsum("ij,bjhw->bihw", matrix, x)
        low, high = (self._like(t, x, (1, 3, 1, 1)) for t in (self.low, self.high))
        coords = 2 * (yuv - low) / (high - low) - 1  # [-1, 1] over the grid
        # grid_sample reads (x, y, z) = (W, H, D) = (V, U, Y) of the [B, 3, nY, nU, nV] table
        sample_at = coords.flip(1).permute(0, 2, 3, 1).unsqueeze(1)  # [B, 1, H, W, 3]
        table = self.identity.to(dtype=params.dtype, device=params.device) + params
        shifted = F.grid_sample(table, sample_at.to(params.dtype), mode="bilinear", padding_mode="border",
                                align_corners=True).squeeze(2)  # trilinear on a 5-D input: [B, 3, H, W]
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(matrix.to(shifted.dtype)), shifted)

    def project(self, params: torch.Tensor) -> torch.Tensor:
        eps = self._like(self.eps, params)
        low, high = (self._like(t, params) for t in (self.low, self.high))
        identity = self.identity.to(dtype=params.dtype, device=params.device)
        bounded = torch.maximum(torch.minimum(params, eps), -eps)
        return torch.maximum(torch.minimum(identity + bounded, high), low) - identity

    def smoothness(self, params: torch.Tensor) -> torch.Tensor:
        """Per image: the mean over all grid differences of (difference x axis resolution)^2."""
        diffs = [(params.diff(dim=axis) * n).flatten(1) for axis, n in zip((2, 3, 4), self.grid)]
        return torch.cat(diffs, dim=1).pow(2).mean(1)

    def penalty(self, params: torch.Tensor) -> torch.Tensor | None:
        return self.smooth_weight * self.smoothness(params) if self.smooth_weight else None


# --------------------------------------------------------------------------- the staggered ensemble
WEIGHTS, DATA_ORDER, CLEAN_DRAWS = 0, 1, 2  # what a derived seed is for


def _derived_seed(seed: int, purpose: int, *keys: int) -> int:
    """Independent, reproducible seeds per purpose, member and generation (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, purpose, *keys]).generate_state(1)[0])


class StaggeredEnsemble:
    """M surrogate models spread evenly over T epochs of training (Algorithm 1, l. 3, 11-13).

    Member m starts at SGD step floor(m x total / M) of ``total = epochs x steps_per_epoch``
    (pre-trained there on the clean data when ``pretrain``); ``advance`` trains every member for
    ``steps_per_advance`` SGD steps (default: one epoch, as the code) and re-initialises a member
    the moment it reaches the end of training (fresh weights from the seed of (seed, member,
    generation)), so its next meta-gradient is taken at epoch 0. Training: plain SGD, batches
    of ``batch_size`` from a fresh permutation every epoch (the last partial batch dropped),
    ``surrogate_learning_rate`` of the member's epoch, batch norm in training mode, on the clean
    images or, with ``trajectory="poison"``, with the current poisons in place of their clean
    versions. ``members`` is the list of modules to pass to the crafting loop (updated in place);
    ``model_update`` is the loop's callback."""

    def __init__(self, make_model: Callable[[], nn.Module], images, labels, *, members: int = 24,
                 epochs: int | None = None, batch_size: int = 125, lr: float = 0.1, warmup_epochs: int = 5,
                 milestones: Sequence[int] = (100, 150, 200), steps_per_advance: int | None = None,
                 poison_indices=None, trajectory: str = "clean", seed: int = 0, device="cpu",
                 pretrain: bool = True):
        if not isinstance(members, int) or members < 1:
            raise ValueError(f"members={members!r}: an ensemble needs at least 1 surrogate (got an ensemble of size "
                             f"{members})")
        if trajectory not in TRAJECTORIES:
            raise ValueError(f"trajectory={trajectory!r}: unknown; allowed: {', '.join(map(repr, TRAJECTORIES))}")
        self.images = as_nchw(images)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if len(self.images) != len(self.labels):
            raise ValueError(f"images ({len(self.images)}) and labels ({len(self.labels)}) differ in length")
        if not 1 <= batch_size <= len(self.images):
            raise ValueError(f"batch_size={batch_size}: need 1 <= batch_size <= {len(self.images)} images")
        self.epochs = members if epochs is None else epochs  # the code's T = M x stagger (1 epoch)
        if not self.epochs >= 1:
            raise ValueError(f"epochs={epochs!r}: need at least 1 epoch of training")
        if trajectory == "poison" and poison_indices is None:
            raise ValueError('trajectory="poison" needs the poison_indices of the poisons in images')
        self.make_model, self.batch_size, self.seed, self.device = make_model, batch_size, seed, torch.device(device)
        self.lr, self.warmup_epochs, self.milestones = lr, warmup_epochs, tuple(milestones)
        self.trajectory = trajectory
        self.steps_per_epoch = len(self.images) // batch_size
        self.total_steps = self.epochs * self.steps_per_epoch
        self.steps_per_advance = self.steps_per_epoch if steps_per_advance is None else steps_per_advance
        if not 1 <= self.steps_per_advance:
            raise ValueError(f"steps_per_advance={steps_per_advance!r}: need at least 1 SGD step per crafting step")
        self.poison_indices = None if poison_indices is None else torch.as_tensor(poison_indices, dtype=torch.long)
        self._slot = torch.full((len(self.images),), -1, dtype=torch.long)
        if self.poison_indices is not None:
            self._slot[self.poison_indices] = torch.arange(len(self.poison_indices))
        self.start_positions = [m * self.total_steps // members for m in range(members)]
        self.positions = [0] * members
        self.generations = [0] * members
        self.reinitialised_at: list[tuple[int, int]] = []  # (advance count, member)
        self.advances = 0
        self.members = [self._fresh(m, 0) for m in range(members)]
        self._data_generators = [torch.Generator().manual_seed(_derived_seed(seed, DATA_ORDER, m))
                                 for m in range(members)]
        self._orders: list[torch.Tensor | None] = [None] * members
        if pretrain:
            for m, start in enumerate(self.start_positions):
                while self.positions[m] < start:
                    self._sgd_step(m)
        else:  # only the bookkeeping (tests): members at their positions, untrained
            self.positions = list(self.start_positions)

    def __len__(self):
        return len(self.members)

    def _fresh(self, member: int, generation: int) -> nn.Module:
        # the initialisation draws from torch's global generator: fork it, seeded per member and generation
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_derived_seed(self.seed, WEIGHTS, member, generation))
            return self.make_model().to(self.device)

    def index(self, model: nn.Module) -> int:
        for m, member in enumerate(self.members):
            if member is model:
                return m
        raise ValueError("model is not a member of this ensemble")

    def epoch(self, member: int) -> float:
        """Epochs of training done by ``member`` (fractional between epochs)."""
        return self.positions[member] / self.steps_per_epoch

    def learning_rate(self, model_or_member) -> float:
        """The SGD step size at the member's current epoch (also the unrolled steps')."""
        m = model_or_member if isinstance(model_or_member, int) else self.index(model_or_member)
        return surrogate_learning_rate(self.positions[m] // self.steps_per_epoch, self.lr, self.warmup_epochs,
                                       self.milestones)

    def batch(self, indices: torch.Tensor, poisons: torch.Tensor | None = None) -> torch.Tensor:
        """Training images ``indices`` as floats on the members' device, poisons substituted if given."""
        x = self.images[indices]
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if poisons is not None:
            slot = self._slot[indices]
            inside = slot >= 0
            x[inside] = poisons[slot[inside]].to(x.dtype)
        return x.to(self.device)

    def _sgd_step(self, m: int, poisons: torch.Tensor | None = None) -> None:
        within = self.positions[m] % self.steps_per_epoch
        if within == 0 or self._orders[m] is None:
            self._orders[m] = torch.randperm(len(self.images), generator=self._data_generators[m])
        idx = self._orders[m][within * self.batch_size:(within + 1) * self.batch_size]
        model = self.members[m]
        model.train()
        lr = self.learning_rate(m)
        loss = F.cross_entropy(model(self.batch(idx, poisons)), self.labels[idx].to(self.device))
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
        self.positions[m] += 1

    def reinitialise(self, m: int) -> None:
        """Fresh weights (and batch-norm statistics) for member m, in place, back at step 0."""
        self.generations[m] += 1
        self.members[m].load_state_dict(self._fresh(m, self.generations[m]).state_dict())
        self.positions[m] = 0
        self._orders[m] = None
        self.reinitialised_at.append((self.advances, m))

    def advance(self, poisons: torch.Tensor | None = None) -> None:
        """Every member trains ``steps_per_advance`` SGD steps (on the poisoned data if
        ``poisons`` is given); one that reaches the end of training is re-initialised there."""
        self.advances += 1
        for m in range(len(self.members)):
            for _ in range(self.steps_per_advance):
                self._sgd_step(m, poisons)
                if self.positions[m] >= self.total_steps:
                    self.reinitialise(m)
                    break

    def model_update(self, state) -> None:
        """The crafting loop's callback: advance every member, on the current poisons with
        ``trajectory="poison"`` (the loop's inputs are the poisons, in ``poison_indices`` order)."""
        poisons = None
        if self.trajectory == "poison":
            poisons = state.perturbed(torch.arange(len(self.poison_indices)))
        self.advance(poisons)


# --------------------------------------------------------------------------- the attack
def poisons_per_unrolled_batch(n_poisons: int, n_train: int, batch_size: int = 125) -> int:
    """The poisons of one unrolled batch of ``batch_size``: the expected number in a random batch
    of the training set (``batch_size x n_poisons / n_train``) rounded to whole poisons, at least
    one. The unrolled batch then holds the poisons at the share of the training set, as the
    victim's batches do (and as the code's, whose poisons sit in the batches of an epoch), within
    one image of the batch; all poisons in one batch would give them far more weight in the
    unrolled steps than any victim does (20 of 125 = 16% where the set holds 1%)."""
    if not 1 <= n_poisons <= n_train or batch_size < 1:
        raise ValueError(f"need 1 <= n_poisons <= n_train and batch_size >= 1 (got {n_poisons}, {n_train}, "
                         f"{batch_size})")
    return min(max(1, round(batch_size * n_poisons / n_train)), n_poisons)


@dataclass
class MetaPoisonResult:
    poisons: torch.Tensor             # [N, C, H, W] floats in [0, 1], in poison_indices order
    poison_indices: torch.Tensor      # [N] long: where they go in the training set
    craft: CraftResult                # delta: the additive part; transform_params: the colour grids
    adversarial_loss: torch.Tensor    # [steps]: the mean unrolled CW loss of each crafting step
    ensemble: StaggeredEnsemble

    def poisoned_images(self, images) -> torch.Tensor:
        """The training set (NCHW) as floats in [0, 1] with the poisons in place."""
        x = as_nchw(images)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float().clone()
        x[self.poison_indices] = self.poisons.to(x.dtype)
        return x


def _check(eps, color_eps, members, unroll_steps, steps, target_class, poison_class, adversarial_class,
           train_batch_size, poisons_per_batch, n_clean, trajectory, kappa):
    if not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: must lie in (0, 1] on the [0, 1] pixel scale (did you mean {eps:g}/255?)")
    if not 0 <= color_eps < 1:
        raise ValueError(f"color_eps={color_eps}: must lie in [0, 1) (a bound per YUV channel; 0 turns the "
                         "colour perturbation off; the paper's is 0.04)")
    if not isinstance(members, int) or members < 1:
        raise ValueError(f"members={members!r}: an ensemble of size {members}; need at least 1 surrogate")
    if not isinstance(unroll_steps, int) or unroll_steps < 1:
        raise ValueError(f"unroll_steps={unroll_steps!r}: need K >= 1 unrolled SGD steps")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: need at least 1 crafting step")
    if target_class == poison_class:
        raise ValueError(f"target_class={target_class} equals the poison class: a clean-label attack poisons "
                         "another class than the target's")
    if adversarial_class == target_class:
        raise ValueError(f"adversarial_class={adversarial_class} equals target_class: nothing to attack")
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"trajectory={trajectory!r}: unknown; allowed: {', '.join(map(repr, TRAJECTORIES))}")
    if not 1 <= poisons_per_batch <= train_batch_size:
        raise ValueError(f"poisons_per_batch={poisons_per_batch}: need 1 <= poisons_per_batch <= "
                         f"train_batch_size={train_batch_size}")
    if train_batch_size - 1 > n_clean:
        raise ValueError(f"train_batch_size={train_batch_size}: more than the {n_clean} clean training images "
                         "(+ poisons) available for the unrolled batches")
    if not kappa > 0:
        raise ValueError(f"kappa={kappa}: need a positive CW margin")


@register_attack("metapoison", paper="Huang et al. 2020", notebook="03_metapoison",
                 summary="meta-learned clean-label poisons: K unrolled SGD steps on a staggered surrogate "
                         "ensemble, additive L-inf + colour-grid perturbation",
                 timing="poisoning", goal="targeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="integrity", specificity="targeted")
def metapoison(images, labels, poison_indices, target_image, *, target_class: int,
               adversarial_class: int | None = None, make_model: Callable[[], nn.Module] | None = None,
               ensemble: StaggeredEnsemble | None = None, members: int = 24, epochs: int | None = None,
               unroll_steps: int = 2, steps: int = 60, eps: float = 8 / 255, color_eps: float = 0.04,
               color_grid: Sequence[int] = (10, 10, 10), smooth_coef: float = 1.0, lr: float = 200 / 255,
               color_lr_scale: float = 255.0, milestones: Sequence[int] = (20, 40), warmup_steps: int = 5,
               train_batch_size: int = 125, train_lr: float = 0.1, warmup_epochs: int = 5,
               steps_per_advance: int | None = None, poisons_per_batch: int | None = None,
               trajectory: str = "clean", kappa: float = 100.0, seed: int = 0, device="cpu",
               on_step: Callable | None = None) -> MetaPoisonResult:
    """Craft MetaPoison poisons from the training images ``poison_indices`` (all of one class)
    so that a network trained on the poisoned set classifies ``target_image`` (true class
    ``target_class``) as ``adversarial_class`` (default: the poison class).

    - ``images`` [N, C, H, W] or [N, H, W, C] (uint8 or floats in [0, 1]), ``labels`` [N]: the
      training set the surrogates train on (clean, poison bases included);
    - ``make_model``: a factory of fresh surrogates (default ``models.convnet_bn``), or
      ``ensemble`` an already staggered ``StaggeredEnsemble`` on the same images;
    - ``members`` M, ``epochs`` T (default M: the code's stagger of 1 epoch), ``unroll_steps`` K,
      ``steps`` crafting steps, ``eps`` / ``color_eps`` the budgets, ``lr`` the Adam step on
      the [0, 1] scale (200/255), ``color_lr_scale`` the colour grid's step relative to it;
    - ``steps_per_advance``: SGD steps each surrogate trains per crafting step (default one epoch);
    - ``poisons_per_batch``: poisons per unrolled batch of ``train_batch_size`` (default
      ``poisons_per_unrolled_batch``: as many as a random batch would hold, at least 1);
    - ``on_step(state)``: forwarded to the crafting loop.
    """
    x_all = as_nchw(images)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    poison_indices = torch.as_tensor(poison_indices, dtype=torch.long).flatten()
    if len(poison_indices) == 0 or len(torch.unique(poison_indices)) != len(poison_indices):
        raise ValueError("poison_indices: need distinct indices of at least one training image")
    poison_classes = torch.unique(y_all[poison_indices])
    if len(poison_classes) != 1:
        raise ValueError(f"poison_indices: the poisons must come from one class, got classes {poison_classes.tolist()}")
    poison_class = int(poison_classes)
    adversarial_class = poison_class if adversarial_class is None else int(adversarial_class)
    n_poisons, n_train = len(poison_indices), len(x_all)
    if poisons_per_batch is None:  # the poisons' share of the training set
        poisons_per_batch = poisons_per_unrolled_batch(n_poisons, n_train, train_batch_size)
    poisons_per_batch = min(poisons_per_batch, n_poisons)
    _check(eps, color_eps, members if ensemble is None else len(ensemble), unroll_steps, steps, target_class,
           poison_class, adversarial_class, train_batch_size, poisons_per_batch, n_train - n_poisons, trajectory,
           kappa)

    if ensemble is None:
        ensemble = StaggeredEnsemble(make_model or convnet_bn, x_all, y_all, members=members, epochs=epochs,
                                     batch_size=train_batch_size, lr=train_lr, warmup_epochs=warmup_epochs,
                                     steps_per_advance=steps_per_advance, poison_indices=poison_indices,
                                     trajectory=trajectory, seed=seed, device=device)
    device = ensemble.device
    target = as_nchw(torch.as_tensor(target_image).unsqueeze(0) if torch.as_tensor(target_image).dim() == 3
                     else target_image)
    target = (target.float() / 255 if target.dtype == torch.uint8 else target.float()).to(device)
    clean_pool = torch.ones(n_train, dtype=torch.bool)
    clean_pool[poison_indices] = False
    clean_pool = clean_pool.nonzero().flatten()
    poison_labels = y_all[poison_indices].to(device)
    generator = torch.Generator().manual_seed(_derived_seed(seed, CLEAN_DRAWS))
    recorded: list[float] = []

    def clean_batch(n):
        idx = clean_pool[torch.randperm(len(clean_pool), generator=generator)[:n]]
        return ensemble.batch(idx), y_all[idx].to(device)

    def objective(model, x, idx):
        model.train()  # the authors' batch norm: always batch statistics
        n_clean = train_batch_size - len(idx)
        batches = [clean_batch(n_clean) for _ in range(unroll_steps + 1)]
        loss = unrolled_adversarial_loss(model, x.to(device), poison_labels[idx], batches, target,
                                         adversarial_class, ensemble.learning_rate(model), kappa)
        recorded.append(float(loss.detach()))
        return loss.expand(len(idx)).to(x.device) / len(idx)  # the batch's meta-loss, spread over its poisons

    history: list[float] = []

    def record_step(state):
        history.append(sum(recorded) / len(recorded))
        recorded.clear()
        if on_step is not None:
            on_step(state)

    transform = None
    if color_eps > 0:
        n_batches = math.ceil(n_poisons / poisons_per_batch)
        transform = ColorGridShift(color_eps, color_grid, smooth_weight=smooth_coef * n_batches / n_poisons,
                                   lr_scale=color_lr_scale)
    result = craft_perturbations(x_all[poison_indices], objective, eps=eps, norm="linf", steps=steps,
                                 step_rule="adam", lr=lr,
                                 decay=lambda step, _: craft_rate_factor(step, warmup_steps, milestones),
                                 init="uniform", models=ensemble.members, model_update=ensemble.model_update,
                                 on_step=record_step, batch_size=poisons_per_batch, shuffle=True, seed=seed,
                                 desc="MetaPoison", transform=transform)
    poisons = result.perturbed(x_all[poison_indices])
    return MetaPoisonResult(poisons, poison_indices, result, torch.tensor(history), ensemble)
