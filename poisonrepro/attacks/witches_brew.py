"""Witches' Brew, poisoning by gradient matching: J. Geiping, L. Fowl, W. R. Huang, W. Czaja,
G. Taylor, M. Moeller, T. Goldstein, "Witches' Brew: Industrial Scale Data Poisoning via
Gradient Matching", ICLR 2021, Eq. (3) and Algorithm 1.

A clean-label targeted attack: poisons x_i + delta_i keep their labels y_i, but are crafted so
that training on them moves the network the way a step towards the *adversarial* label y_adv
on the target x_t would. For a surrogate network with parameters theta, the poisons minimise
the cosine distance between the two parameter gradients,

    B(delta) = 1 - < grad_theta L(x_t, y_adv), grad_theta L(x + delta, y) >
                   / ( ||grad_theta L(x_t, y_adv)|| * ||grad_theta L(x + delta, y)|| )         (Eq. 3)

    s.t. ||delta_i||_inf <= eps and x_i + delta_i in [0, 1],

where the inner product and both norms run over *all* parameter tensors at once (one cosine of
the flattened gradients, not a sum of per-layer cosines), and L is the cross-entropy (the mean
over the poisons; the paper writes a sum, which the cosine does not see). It runs on the shared
crafting loop (``crafting.craft_perturbations``), which supplies the steps, the projection, the
restarts and the augmentation; this module supplies the objective and forest's settings.

Settings of the authors' code (JonasGeiping/poisoning-gradient-matching, "forest"):

- the cosine (``witchcoven/witch_matching.py``, ``_passenger_loss`` with the default
  ``--loss similarity``): 1 - sum_k <t_k, p_k> / (||t|| ||p||) over the parameter tensors k,
  ||.|| the norm of all tensors together;
- the target gradient (``witchcoven/witch_base.py``, ``_initialize_brew``, and
  ``victims/victim_single.py``/``victim_ensemble.py``, ``gradient``): computed once before
  crafting, for each ensemble member, of the *mean* cross-entropy of the targets at their
  intended (adversarial) classes, un-augmented, with the networks in eval mode;
- eval mode throughout crafting (``victim.eval(dropout=True)``): batch norm uses its running
  statistics (and is not updated), dropout stays active -- ``craft_poisons`` does the same and
  restores every module's mode afterwards;
- the poison gradient (``_batched_step``): the mean cross-entropy of one batch of ``--pbatch``
  (512) poisons, in a fixed order (``poisonloader``, not shuffled), so that the cosine is taken
  *per batch*; the gradients w.r.t. the deltas are accumulated over all batches of a pass, then
  one signed-Adam step is taken for all poisons (``_run_trial``). This is exactly the shared
  loop's pass: the objective spreads each batch's 1 - cos_b evenly over the batch's samples
  (``loss.expand(B) / B``), so the accumulated gradient is that of sum_b (1 - cos_b). With the
  paper's 500 poisons and pbatch 512 there is one batch: one cosine over the whole poison set;
- ensembles (``victim_ensemble.py``, ``compute``): every member in every step, each with its own
  target gradient; forest sums the members' gradients (each closure calls ``backward``) and
  averages their losses. The loop averages both; the *signed* step does not see the factor.
  Heterogeneous ensembles cycle through ``--net``: member k is ``net[k % len(net)]``;
- the step (``attackoptim signAdam``): Adam on the sign of the accumulated gradient, then the
  projection; the step size is forest's "rule 2", ``tau0 = tau * (pbatch / 512) / ensemble``;
- the schedule (``--scheduling``): x0.1 at ``attackiter // 2.667, // 1.6, // 1.142`` (93, 156 and
  218 of 250 steps): the loop's ``decay="multistep"``;
- restarts (``_brew``): 8; the restart with the lowest "target loss" is kept for *all* poisons
  (the loop's ``keep_best="all"``);
- augmentation (``data/diff_data_augmentation.py``, ``RandomTransform(shift=8, fliplr=True,
  mode="bilinear")``, ``--paugment``): per image a continuous translation, uniform in [-4, 4]
  pixels in x and y (a grid offset of up to ``linspace(0, 1, 32)[8] = 8/31``, i.e. 4 pixels at
  align_corners=True), by bilinear ``grid_sample`` with zero padding, then a horizontal flip with
  probability 1/2 (``forest_augment``). Forest trains its victims with the same transform.

Pixel scale. Forest's deltas live on normalised pixels (x - mean) / std, ours on [0, 1]. The
budget is the same (forest projects onto eps / 255 / std). The step size is not: Adam fed
sign(grad) moves every coordinate by about its learning rate per step (exactly, at the first
step), whatever the scale of the gradient, so a step of tau0 in normalised units is a step of
tau0 * std_c on [0, 1]. ``forest_step_size`` returns tau0 times forest's CIFAR-10 std averaged
over the channels (0.2507; the channels' own, 0.2470, 0.2435 and 0.2616, differ from it by at
most 4.4%, the loop having one scalar step size): 0.0251 at tau 0.1, pbatch 512, one network.

Threat model. In forest's "single-class" setting (the paper's and the benchmark's), the
poisons are drawn *from the adversarial class* (``data/kettle.py``: ``poison_class =
intended_class[0]``, and ``intended_class=[poison_class]`` for the benchmark), so the poisons'
labels equal the adversarial label by design; what is ill-posed is a target whose own class is
the adversarial label, which ``craft_poisons`` refuses when given ``target_labels``.

Departures: forest's start is ``randn * eps`` clipped to the budget (``kettle.initialize_poison``,
``--init randn``), the loop's is uniform in the budget; forest scores a restart by the mean over
batches of the objective during its last pass, the loop at the final deltas (the sum over
batches, the same ranking up to that last step), with the same augmentation draws for every
restart.

Benchmark ensembles (``ENSEMBLES``; ``benchmark_poison_brewing.sh``, all at ``--eps 8``): K=1
one ResNet-18; K=4 four ResNet-18 (``--ensemble 4 --net ResNet18``); K=6 heterogeneous
(``--ensemble 6 --net ResNet18,VGG11,MobileNetV2 --pbatch 128 --tau 0.5``: two of each).
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import models as M
from ..registry import register_attack
from ..train import check_pixels
from .crafting import DECAYS, CraftResult, craft_perturbations

#: forest's CIFAR-10 channel std (``forest/consts.py``), the unit of its normalised deltas
FOREST_CIFAR10_STD = (0.24703224003314972, 0.24348513782024384, 0.26158785820007324)
FOREST_REFERENCE_PBATCH = 512  # rule 2 scales tau by pbatch / 512

#: the benchmark's crafting ensembles, as architecture names of ``poisonrepro.models``
ENSEMBLES = {
    "K1": ("resnet18",),
    "K4": ("resnet18",) * 4,
    "K6het": tuple(("resnet18", "vgg11", "mobilenet_v2")[k % 3] for k in range(6)),  # net[k % 3]
}
#: forest's crafting settings in the benchmark rows (``benchmark_poison_brewing.sh``): its defaults
#: (pbatch 512, tau 0.1), except that the heterogeneous ensemble crafts in batches of 128 with tau 0.5
ENSEMBLE_SETTINGS = {
    "K1": {"batch_size": 512, "tau": 0.1},
    "K4": {"batch_size": 512, "tau": 0.1},
    "K6het": {"batch_size": 128, "tau": 0.5},
}
_STANDIN_FOR = {real: standin for standin, real in M.STANDIN_OF.items()}


# --------------------------------------------------------------------------- ensembles
def ensemble_architectures(kind: str, standin: bool) -> list[str]:
    """The architecture names (``poisonrepro.models``) of a benchmark ensemble: ``kind`` one of
    ``ENSEMBLES`` ("K1", "K4", "K6het"); ``standin`` picks the narrowed, shortened stand-ins."""
    if kind not in ENSEMBLES:
        raise ValueError(f"kind={kind!r}: unknown ensemble; allowed: {', '.join(map(repr, ENSEMBLES))}")
    return [_STANDIN_FOR[name] if standin else name for name in ENSEMBLES[kind]]


def build_ensemble(architectures: Sequence[str], *, num_classes: int = 10, seed: int = 0) -> list[nn.Module]:
    """Untrained networks, member k of ``architectures[k]`` initialised from ``seed + k``
    (the global random state is left as it was). Every name is checked before any is built."""
    if isinstance(architectures, str):
        raise ValueError(f"architectures={architectures!r}: need a list of names (e.g. "
                         f"ensemble_architectures('K4', standin=True))")
    names = list(architectures)
    if not names:
        raise ValueError("architectures: an ensemble of size 0; need at least one architecture")
    unknown = [name for name in names if name not in M.MODELS]
    if unknown:
        raise ValueError(f"architectures: unknown {', '.join(map(repr, unknown))}; allowed: {', '.join(M.MODELS)}")
    members = []
    for k, name in enumerate(names):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + k)
            members.append(M.build_model(name, num_classes=num_classes))
    return members


# --------------------------------------------------------------------------- the objective
def _parameters(model: nn.Module) -> list[torch.Tensor]:
    """The parameters a victim trains (frozen ones, e.g. a whitening stem, are left out)."""
    return [p for p in model.parameters() if p.requires_grad]


def _as_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255 if x.dtype == torch.uint8 else x


def target_gradient(model: nn.Module, targets: torch.Tensor, adversarial_labels: torch.Tensor) -> list[torch.Tensor]:
    """grad_theta of the mean cross-entropy of ``targets`` (floats in [0, 1] or uint8, [T, C, H, W])
    at ``adversarial_labels`` [T], over the parameters that require grad; detached. Call it in
    the mode the poisons are crafted in (eval, as forest)."""
    params = _parameters(model)
    device = params[0].device
    logits = model(_as_unit(targets).to(device))
    loss = F.cross_entropy(logits, torch.as_tensor(adversarial_labels, device=device).long())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, params)]


def gradient_matching_loss(model: nn.Module, poisons: torch.Tensor, poison_labels: torch.Tensor,
                           target_grad: Sequence[torch.Tensor], *, create_graph: bool = True) -> torch.Tensor:
    """Eq. 3: 1 - cos(target_grad, grad_theta mean CE(model(poisons), poison_labels)), the inner
    product and the norms over all parameter tensors together. A scalar, differentiable w.r.t.
    ``poisons`` (a double backward) when ``create_graph``."""
    params = _parameters(model)
    if len(target_grad) != len(params):
        raise ValueError(f"target_grad: {len(target_grad)} tensors for a model with {len(params)} trainable "
                         "parameter tensors; compute it with target_gradient(model, ...)")
    device = params[0].device
    loss = F.cross_entropy(model(poisons.to(device)), torch.as_tensor(poison_labels, device=device).long())
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    dot = sum((g * t).sum() for g, t in zip(grads, target_grad))
    poison_norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    target_norm = torch.sqrt(sum(t.pow(2).sum() for t in target_grad))
    # the floor only guards a vanishing poison gradient (a perfectly fitted batch) against 0/0
    return 1 - dot / (poison_norm * target_norm).clamp_min(torch.finfo(dot.dtype).tiny)


def forest_step_size(tau: float = 0.1, batch_size: int = FOREST_REFERENCE_PBATCH, ensemble_size: int = 1,
                     std: Sequence[float] = FOREST_CIFAR10_STD) -> float:
    """Forest's signed-Adam step size on the [0, 1] pixel scale: its rule 2, tau * (pbatch / 512)
    / ensemble in normalised units (``witch_base.py``, ``_initialize_brew``), times the mean
    channel std (see the module docstring)."""
    return tau * (batch_size / FOREST_REFERENCE_PBATCH) / ensemble_size * (sum(std) / len(std))


def forest_augment(x: torch.Tensor, generator: torch.Generator, max_shift: float = 4.0,
                   flip: bool = True) -> torch.Tensor:
    """Forest's differentiable augmentation (``RandomTransform(shift=8, fliplr=True)`` at 32x32):
    per image a translation uniform in [-max_shift, max_shift] pixels along each axis, bilinear
    with zero padding, and a horizontal flip with probability 1/2, drawn from ``generator``."""
    draws = torch.rand(len(x), 3, generator=generator)
    shift = (draws[:, :2] * 2 - 1) * max_shift
    mirror = draws[:, 2] > 0.5 if flip else torch.zeros(len(x), dtype=torch.bool)
    return shift_and_flip(x, shift[:, 0], shift[:, 1], mirror)


def shift_and_flip(x: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """Output pixel (i, j) of image n samples the input at (i + shift_y[n], j + shift_x[n])
    (bilinear, zeros outside), then the row is mirrored where ``mirror[n]``: forest's sampling
    grid, shifted and then negated in x (``random_crop_grid``)."""
    n, _, h, w = x.shape
    sign = 1 - 2 * mirror.to(x.dtype)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = sign
    theta[:, 0, 2] = sign * shift_x.to(x.dtype) * 2 / (w - 1)  # pixels -> grid units at align_corners=True
    theta[:, 1, 1] = 1
    theta[:, 1, 2] = shift_y.to(x.dtype) * 2 / (h - 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


@contextlib.contextmanager
def _crafting_mode(members: Sequence[nn.Module]):
    """Forest's ``victim.eval(dropout=True)``: eval mode (batch norm on its running statistics,
    never updated) with dropout kept active; every module's own mode is restored on exit."""
    modes = [(module, module.training) for m in members for module in m.modules()]
    try:
        for m in members:
            m.eval()
            for module in m.modules():
                if isinstance(module, nn.modules.dropout._DropoutNd):
                    module.train()
        yield
    finally:
        for module, training in modes:
            module.training = training


# --------------------------------------------------------------------------- checks
def _num_classes(model) -> int | None:
    head = getattr(model, "head", None)
    return head.out_features if isinstance(head, nn.Linear) else None


def _labels(name: str, value, n: int | None) -> torch.Tensor:
    labels = torch.as_tensor(value)
    if labels.dim() == 0:
        labels = labels.reshape(1) if n is None else labels.expand(n)
    if labels.dtype in (torch.bool,) or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"{name}: need integer class labels, got dtype {labels.dtype}")
    if labels.dim() != 1 or (n is not None and len(labels) != n):
        raise ValueError(f"{name}: need {n if n is not None else 'one label per image'} labels, got shape "
                         f"{tuple(labels.shape)}")
    return labels.long()


def _images(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) == 0:
        raise ValueError(f"{name}: need a non-empty tensor [N, C, H, W] (uint8 or floats in [0, 1]); got "
                         f"{tuple(getattr(x, 'shape', ())) or type(x).__name__} (NHWC arrays: train.as_nchw)")
    check_pixels(name, x)
    return x


def _positive_int(name: str, value) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r}: need an integer >= 1")


def check_inputs(models, base_images, base_labels, target_images, adversarial_label, *, eps: float,
                 target_labels=None) -> tuple[list[nn.Module], torch.Tensor, torch.Tensor]:
    """Validate ``craft_poisons``'s data before any compute; returns (members, base labels [N],
    adversarial labels [T])."""
    members = list(models) if isinstance(models, (list, tuple)) else [models]
    if not members:
        raise ValueError("models: an ensemble of size 0; need at least one surrogate network")
    if not all(isinstance(m, nn.Module) for m in members):
        raise ValueError("models: need torch.nn.Module surrogates (build them with build_ensemble)")
    if not isinstance(eps, numbers.Real) or not 0 < eps <= 1:
        hint = f"; did you mean {eps:g}/255?" if isinstance(eps, numbers.Real) and eps > 1 else ""
        raise ValueError(f"eps={eps!r}: an L-inf budget on the [0, 1] pixel scale must lie in (0, 1]{hint}")
    bases = _images("base_images", base_images)
    targets = _images("target_images", target_images)
    if bases.shape[1:] != targets.shape[1:]:
        raise ValueError(f"target_images {tuple(targets.shape[1:])} and base_images {tuple(bases.shape[1:])}: "
                         "need images of the same shape")
    labels = _labels("base_labels", base_labels, len(bases))
    adversarial = _labels("adversarial_label", adversarial_label, len(targets))
    classes = {_num_classes(m) for m in members} - {None}
    if len(classes) > 1:
        raise ValueError(f"models: members with different numbers of classes {sorted(classes)}")
    if classes:
        (k,) = classes
        for name, values in (("base_labels", labels), ("adversarial_label", adversarial)):
            if int(values.min()) < 0 or int(values.max()) >= k:
                raise ValueError(f"{name}: classes must lie in [0, {k - 1}] (the surrogates have {k} classes)")
    if target_labels is not None:
        own = _labels("target_labels", target_labels, len(targets))
        clash = (own == adversarial).nonzero().flatten().tolist()
        if clash:
            raise ValueError(f"adversarial_label: equals the target's own class for target(s) {clash}; the attack "
                             "needs an adversarial class other than the target's (the poisons' class may equal it)")
    return members, labels, adversarial


# --------------------------------------------------------------------------- the attack
@register_attack("gradient_matching", paper="Geiping et al. 2021", notebook="04_witches_brew",
                 summary="clean-label poisons whose training gradient aligns with the target's gradient "
                         "towards the adversarial class (1 - cosine), signed Adam with restarts",
                 timing="poisoning", goal="targeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="integrity", specificity="targeted")
def craft_poisons(models, base_images: torch.Tensor, base_labels, target_images: torch.Tensor,
                  adversarial_label, *, eps: float = 16 / 255, steps: int = 250, tau: float = 0.1,
                  lr: float | None = None, restarts: int = 8, batch_size: int = FOREST_REFERENCE_PBATCH,
                  augment: bool | Callable = True, decay: str | Callable = "multistep", target_labels=None,
                  seed: int = 0, on_step=None, desc: str = "brew gradient-matching poisons") -> CraftResult:
    """Craft Witches' Brew poisons (defaults: the paper's settings, see the module docstring).

    - ``models``: a surrogate or a list (the ensemble; each member gets its own target gradient);
      they are put in eval mode (dropout kept on) while crafting and restored afterwards.
    - ``base_images`` [N, C, H, W] uint8 or floats in [0, 1], ``base_labels`` [N] (their own,
      kept), ``target_images`` [T, C, H, W], ``adversarial_label`` an int or [T] labels.
    - ``eps`` L-inf on the [0, 1] scale (16/255 paper, 8/255 benchmark); ``steps``, ``restarts``,
      ``batch_size`` (forest's pbatch: one cosine per batch of poisons), ``decay``.
    - ``tau``: forest's step size in normalised units, converted by ``forest_step_size`` (with
      pbatch = ``batch_size`` and the ensemble size); ``lr`` overrides it on the [0, 1] scale.
    - ``augment``: True for forest's transform (``forest_augment``), False, or a callable
      ``(x, generator) -> x`` (e.g. the victim recipe's ``train.crop_flip``).
    - ``target_labels``: the targets' own classes, to refuse an adversarial label equal to one.

    Returns the loop's ``CraftResult``: ``result.perturbed(base_images)`` are the poisons;
    ``loss_history`` is the mean over poisons of the spread objective (sum over batches of
    1 - cos_b, divided by N), ``restart_loss.sum(1)`` each restart's sum over batches of 1 - cos_b
    (mean over the ensemble), ``best_restart`` the kept restart (the same for all poisons).
    """
    members, labels, adversarial = check_inputs(models, base_images, base_labels, target_images,
                                                adversarial_label, eps=eps, target_labels=target_labels)
    for name, value in (("steps", steps), ("restarts", restarts), ("batch_size", batch_size)):
        _positive_int(name, value)
    if not tau > 0 or (lr is not None and not lr > 0):
        raise ValueError(f"tau={tau!r}, lr={lr!r}: step sizes must be > 0")
    if not callable(decay) and decay not in DECAYS:
        raise ValueError(f"decay={decay!r}: unknown; allowed: {', '.join(map(repr, DECAYS))} or a callable")
    if not (isinstance(augment, bool) or callable(augment)):
        raise ValueError(f"augment={augment!r}: need True, False or a callable (x, generator) -> x")
    step = lr if lr is not None else forest_step_size(tau, batch_size, len(members))
    with _crafting_mode(members):
        target_grads = {id(m): target_gradient(m, target_images, adversarial) for m in members}

        def matching(model, x, idx):
            # the batch's one cosine, spread evenly over its samples (the loop sums per-sample losses)
            loss = gradient_matching_loss(model, x, labels[idx], target_grads[id(model)])
            return loss.expand(len(idx)) / len(idx)

        return craft_perturbations(base_images, matching, eps=eps, norm="linf", steps=steps,
                                   step_rule="signadam", lr=step, decay=decay, restarts=restarts,
                                   init="uniform", augment=forest_augment if augment is True else augment,
                                   models=members, batch_size=batch_size, shuffle=False, keep_best="all",
                                   seed=seed, on_step=on_step, desc=desc)


def poison_alignment(models, poisons: torch.Tensor, poison_labels, target_images: torch.Tensor,
                     adversarial_label, *, batch_size: int = FOREST_REFERENCE_PBATCH) -> float:
    """The cosine between the poisons' and the target's parameter gradients, per batch of
    ``batch_size`` poisons (in order, un-augmented, eval mode), averaged over the batches and
    the ensemble: 1 minus forest's "target loss" (1 is perfect alignment); to compare poisons
    with their clean bases."""
    members, labels, adversarial = check_inputs(models, poisons, poison_labels, target_images, adversarial_label,
                                                eps=1.0)
    _positive_int("batch_size", batch_size)
    cosines = []
    with _crafting_mode(members):
        for m in members:
            grad = target_gradient(m, target_images, adversarial)
            for start in range(0, len(poisons), batch_size):
                batch = _as_unit(poisons[start:start + batch_size])
                loss = gradient_matching_loss(m, batch, labels[start:start + batch_size], grad, create_graph=False)
                cosines.append(1 - float(loss))
    return sum(cosines) / len(cosines)
