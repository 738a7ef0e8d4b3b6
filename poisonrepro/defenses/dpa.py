"""Deep Partition Aggregation: A. Levine and S. Feizi, "Deep Partition Aggregation: Provable
Defense against General Poisoning Attacks", ICLR 2021 (arXiv:2006.14768), Sec. 3 and Theorem 1,
following their code (alevine0/DPA: ``partition_data_norm_hash.py``, ``certify.py``).

- **Partition** (Sec. 3): the training set T is split by a deterministic hash of each sample,
  P_i = {t in T : h(t) = i (mod k)}, with h(t) the sum of the image's integer pixel values
  (0-255). One sample's insertion or removal changes exactly one partition.
- **Base classifiers** f_i, one trained on each P_i; within a partition the samples are put in a
  deterministic order (here: lexicographic on the image bytes, then the label; the code's order
  is UNCONFIRMED), so that f_i depends on the set P_i alone.
- **Aggregation**: n_c(x) = |{i : f_i(x) = c}|, g(x) = argmax_c n_c(x), ties to the smaller class
  index.
- **Certificate** (Theorem 1): g(x) cannot change under any insertion or removal of at most

      rho(x) = floor((n_top - n_second - 1[second < top]) / 2)

  training samples, where ``second`` is the runner-up class (ties again to the smaller index).
  ``certify.py`` reports -1 for a misclassified test point, and certified accuracy at r is the
  share of test points with rho >= r.

The base classifiers are the caller's (``train_partitions`` takes any ``fit(x, y) -> predict``),
or ``train_base_classifiers``: many partitions' networks in one batched pass (``torch.func.vmap``
over stacked weights, which runs each convolution as one grouped convolution), each network a
function of its own partition and seed alone, as the certificate requires: its initialisation, its
per-partition input normalisation (the code's), its sample order and augmentation come from its
own partition index and data, every network takes exactly its own number of steps (a network whose
partition is used up sits the step out: no update, no weight decay, no momentum), and its SGD
update is its own. Nothing about a pass may depend on the other partitions in it either, down to
the rounding: each partition is padded to whole steps of its own ``step_width`` (masked padding,
no gradient; the networks have no batch norm, whose statistics would mix the partitions), and
``plan_passes`` puts it in a pass of partitions of that width holding exactly
``min(images_per_pass // width, k)`` networks, filled up with idle placeholders (a grouped convolution
rounds differently for different numbers of groups: a 3-channel first layer on the CPU). A network
so trained is bitwise the same in any pass it is put in; trained alone (one network, a dense
convolution), it may differ in the last bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import train as T
from ..models import Normalize

from ..registry import register_defense


def _uint8(images) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ValueError(f"DPA hashes integer pixel values: images must be uint8 (0-255), got {x.dtype} "
                         "(convert [0, 1] floats with (x * 255).round().astype(np.uint8))")
    return x


def check_k(k: int, n_train: int) -> int:
    """``k`` partitions of ``n_train`` samples: an integer in [1, n_train]."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_train:
        raise ValueError(f"k={k!r}: the number of partitions must be an integer in [1, {n_train}] "
                         f"(the training set has {n_train} samples)")
    return int(k)


def partition_ids(images, k: int) -> np.ndarray:
    """h(t) mod k for every image: the sum of its integer pixel values, modulo ``k``."""
    x = _uint8(images)
    k = check_k(k, len(x))
    return (x.reshape(len(x), -1).astype(np.int64).sum(1) % k).astype(np.int64)


def partitions(images, labels, k: int) -> list[np.ndarray]:
    """The training-set indices of each of the ``k`` partitions, each in a deterministic order
    that depends on the samples alone (not on their position in the training set)."""
    x = _uint8(images)
    y = np.asarray(labels)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    ids = partition_ids(x, k)
    # lexicographic on the bytes, then the label: each image as one opaque byte string ranked
    # once (one sort, rather than lexsort's one pass per pixel)
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    _, rank = np.unique(flat.view(np.dtype((np.void, flat.shape[1]))).ravel(), return_inverse=True)
    order = np.lexsort((y, rank.ravel()))
    return [order[ids[order] == i] for i in range(k)]


def train_partitions(images, labels, k: int, fit: Callable, parts: Sequence[np.ndarray] | None = None) -> list:
    """``fit(x, y)`` on each partition, in order; returns the base classifiers (whatever ``fit``
    returns). A partition may be empty: its classifier is then ``fit`` on no samples."""
    x, y = _uint8(images), np.asarray(labels)
    parts = partitions(x, y, k) if parts is None else parts
    return [fit(x[p], y[p]) for p in parts]


# --------------------------------------------------------------------------- batched base classifiers
@dataclass(frozen=True)
class BaseRecipe:
    """SGD for the base classifiers (the code: SGD 0.1, Nesterov momentum 0.9, weight decay 5e-4,
    batch 128, x0.2 at 30/60/80% of the epochs; random crop and flip on CIFAR-10)."""
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple = (0.3, 0.6, 0.8)
    lr_decay: float = 0.2
    crop_pad: int = 0
    flip: bool = False

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"BaseRecipe: epochs and batch_size >= 1 and lr > 0 (got {self.epochs}, "
                             f"{self.batch_size}, {self.lr})")

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.lr_decay ** sum(epoch >= round(m * self.epochs) for m in self.milestones)


def _generator(seed: int, partition: int, epoch: int = -1) -> torch.Generator:
    """A partition's own random stream (the code seeds each base classifier with its index)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + partition) * 100_003 + epoch + 1)


def init_base_classifier(make_model: Callable, images: torch.Tensor, partition: int, seed: int = 0):
    """Base classifier ``partition``: ``make_model()`` initialised from the partition's own seed,
    its input normalisation set to the mean and standard deviation of its partition's images
    (per channel, as the code's per-partition normalisation; an empty partition keeps the default)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_generator(seed, partition).initial_seed())
        model = make_model()
    norm = getattr(model, "normalize", None)
    if isinstance(norm, Normalize) and len(images):
        x = images.float() / 255
        norm.mean.copy_(x.mean((0, 2, 3)).view_as(norm.mean))
        norm.std.copy_(x.std((0, 2, 3)).nan_to_num(1.0).clamp(min=1e-3).view_as(norm.std))
    return model


#: the narrowest step: smaller partitions are padded up to it, so that a few widths cover every size
MIN_STEP_WIDTH = 16


def step_width(n: int, batch_size: int) -> int:
    """The images per step, padding included, of a partition of ``n`` samples: the batch size,
    or for a partition smaller than one batch the next power of two at least ``n`` and
    ``MIN_STEP_WIDTH``. A function of the partition's own size, so that its padding never depends
    on the partitions trained beside it; the power of two keeps the padding under half a step."""
    if n >= batch_size:
        return batch_size
    return min(batch_size, max(MIN_STEP_WIDTH, 1 << max(0, int(n) - 1).bit_length()))


def plan_passes(parts: Sequence, ids: Sequence[int], batch_size: int, images_per_pass: int) -> list[list]:
    """``ids`` in batched passes for ``train_base_classifiers``: partitions of one ``step_width``
    w per pass, exactly ``max(1, min(images_per_pass // w, k))`` networks in each (k = len(parts),
    the number of partitions), the last pass of each width filled up with ``None`` (an idle
    placeholder: an empty partition, its network thrown away). Every partition is thus trained in
    a pass of the same shape whichever partitions are beside it, so that its weights are the
    same to the bit (grouped convolutions round differently for different numbers of groups)."""
    by_width: dict[int, list[int]] = {}
    for i in ids:
        by_width.setdefault(step_width(len(parts[i]), batch_size), []).append(int(i))
    passes = []
    for width, members in by_width.items():
        per_pass = max(1, min(images_per_pass // width, len(parts)))
        for c in range(0, len(members), per_pass):
            chunk = members[c:c + per_pass]
            passes.append(chunk + [None] * (per_pass - len(chunk)))
    return passes


def _epoch_batches(images, labels, parts, ids, epoch, recipe: BaseRecipe, seed: int):
    """Every partition of ``ids`` (``None``: an empty placeholder) in its own order and
    augmentation for ``epoch``, each padded to whole steps of the pass's step width (the widest
    ``step_width`` of its partitions: ``plan_passes`` gives a pass one): images [K, L, ...],
    labels [K, L], mask [K, L] (real samples), the step width and the number of steps. A
    partition's slice of every step holds its own samples and padding alone."""
    sizes = [0 if i is None else len(parts[i]) for i in ids]
    width = max(step_width(n, recipe.batch_size) for n in sizes)
    steps = max(1, max(math.ceil(n / width) for n in sizes))
    x = torch.zeros(len(ids), steps * width, *images.shape[1:], dtype=images.dtype)
    y = torch.zeros(len(ids), steps * width, dtype=torch.long)
    mask = torch.zeros(len(ids), steps * width, dtype=torch.bool)
    for j, (i, n) in enumerate(zip(ids, sizes)):
        if not n:
            continue
        g = _generator(seed, i, epoch)
        idx = torch.as_tensor(parts[i])[torch.randperm(n, generator=g)]
        xi = images[idx]
        if recipe.crop_pad or recipe.flip:
            xi = T.crop_flip(xi, g, pad=recipe.crop_pad, flip=recipe.flip)
        # step s takes samples [s * batch_size, (s + 1) * batch_size): a width below the batch
        # size means a single step, so the samples sit in order from position 0 either way
        x[j, :n], y[j, :n], mask[j, :n] = xi, labels[idx], True
    return x, y, mask, width, steps


def train_base_classifiers(make_model: Callable, images, labels, parts: Sequence, recipe: BaseRecipe, *,
                           seed: int = 0, ids: Sequence[int | None] | None = None, desc: str = "base classifiers"):
    """The base classifiers of partitions ``ids`` (default: all), trained together in one batched
    pass: a ``train.ModelStack``, model j trained on ``parts[ids[j]]`` (``None``: an idle
    placeholder on no data, to be thrown away). Model j is bitwise the same in any pass of the
    same size and step width (``plan_passes`` makes such passes), and equal up to rounding to the
    same network trained alone. ``make_model()`` must build a network without batch norm (its
    statistics would mix the partitions under ``vmap``); the networks train where it puts them
    (every random draw stays on the CPU, the batches go there)."""
    images = torch.as_tensor(_uint8(images))
    labels = torch.as_tensor(np.asarray(labels)).long()
    ids = list(range(len(parts))) if ids is None else list(ids)
    if all(i is None for i in ids):
        raise ValueError("train_base_classifiers: ids holds no partition, only placeholders")
    nothing = torch.zeros(0, dtype=torch.long)
    models = [init_base_classifier(make_model, images[nothing if i is None else torch.as_tensor(parts[i], dtype=torch.long)],
                                   0 if i is None else i, seed) for i in ids]
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in models[0].modules()):
        raise ValueError("train_base_classifiers: the base network must not use batch norm")
    stack = T.ModelStack(models)
    params = list(stack.params.values())
    device = params[0].device  # where ``make_model`` put the networks (a GPU, say)
    momentum = [torch.zeros_like(p) for p in params]
    bar = T.progress(total=recipe.epochs, desc=desc, leave=False)
    for epoch in range(recipe.epochs):
        x, y, mask, width, steps = _epoch_batches(images, labels, parts, ids, epoch, recipe, seed)
        # the epoch's orders and augmentations are drawn on the CPU; its batches go to the networks
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        lr = recipe.lr_at(epoch)
        for s in range(steps):
            xb, yb, mb = x[:, s * width:(s + 1) * width], y[:, s * width:(s + 1) * width], mask[:, s * width:(s + 1) * width]
            active = mb.any(1)
            if not active.any():
                continue
            logits = stack.forward(T.to_unit(xb.reshape(-1, *xb.shape[2:])).reshape(*xb.shape[:2], *xb.shape[2:]))
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none").view_as(mb)
            # each network's mean over its own real samples (padding weighs exactly 0); summed,
            # so each gradient is its own
            loss = ((ce * mb).sum(1) / mb.sum(1).clamp(min=1)).sum()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g, buf in zip(params, grads, momentum):
                    on = active.view(-1, *[1] * (p.dim() - 1))
                    d = g + recipe.weight_decay * p
                    new = recipe.momentum * buf + d
                    step = d + recipe.momentum * new if recipe.nesterov else new
                    buf.copy_(torch.where(on, new, buf))
                    p.sub_(torch.where(on, lr * step, torch.zeros_like(step)))
        bar.update(1)
    bar.close()
    return stack


@torch.no_grad()
def predict_base_classifiers(stack, images, batch_size: int = 250) -> torch.Tensor:
    """Every base classifier's class for every image: [K, N] (int64), computed where the
    classifiers are, returned on the CPU."""
    x = torch.as_tensor(_uint8(images))
    device = next(iter(stack.params.values())).device
    return torch.cat([stack.forward(T.to_unit(x[i:i + batch_size].to(device)), shared_input=True).argmax(-1).cpu()
                      for i in range(0, len(x), batch_size)], dim=1)


def vote_counts(predictions, num_classes: int) -> torch.Tensor:
    """n_c(x): ``predictions`` [k, n] (each base classifier's class for each test point) ->
    counts [n, num_classes]."""
    p = torch.as_tensor(np.asarray(predictions)).long()
    if p.ndim != 2:
        raise ValueError(f"predictions must be [k base classifiers, n test points], got shape {tuple(p.shape)}")
    if p.numel() and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predictions must be classes in [0, {num_classes})")
    counts = torch.zeros(p.shape[1], num_classes, dtype=torch.long)
    counts.scatter_add_(1, p.T, torch.ones_like(p.T))
    return counts


def aggregate(counts) -> tuple[torch.Tensor, torch.Tensor]:
    """The plurality vote g(x) and its certificate rho(x) (Theorem 1), ties to the smaller
    class index, from vote counts [n, C]."""
    counts = torch.as_tensor(counts).long()
    classes = torch.arange(counts.shape[1])
    # argmax with ties to the smallest index: the largest count, then the smallest class
    top = (counts * counts.shape[1] - classes).argmax(1)
    rest = counts.clone()
    rest[torch.arange(len(counts)), top] = -1
    second = (rest * counts.shape[1] - classes).argmax(1)
    n_top = counts.gather(1, top[:, None])[:, 0]
    n_second = counts.gather(1, second[:, None])[:, 0]
    rho = torch.div(n_top - n_second - (second < top).long(), 2, rounding_mode="floor")
    return top, rho


@register_defense("deep_partition_aggregation", paper="Levine and Feizi 2021", notebook="10_dpa",
                  summary="train one classifier per hash partition; the plurality vote's margin certifies "
                          "against any insertion or removal of up to rho training samples",
                  defends=[("causative", "integrity", "targeted"), ("causative", "integrity", "indiscriminate"),
                           ("causative", "availability", "targeted"),
                           ("causative", "availability", "indiscriminate")])
def certified_radius(counts, labels) -> torch.Tensor:
    """rho(x) where g(x) is the true label, -1 where it is not (``certify.py``)."""
    pred, rho = aggregate(counts)
    return torch.where(pred == torch.as_tensor(np.asarray(labels)).long(), rho, torch.full_like(rho, -1))


def certified_accuracy(radius, attack_sizes) -> np.ndarray:
    """The share of test points certified correct against each number of poisoned samples."""
    r = np.asarray(radius)
    return np.array([(r >= s).mean() for s in np.atleast_1d(attack_sizes)])


def median_certified_robustness(radius) -> int:
    """The largest attack size at which at least half of the test points stay certified correct
    (-1: fewer than half are classified correctly at all). ``certify.py`` prints this plus one
    (its count of radii with certified accuracy >= 50%, from 0); the paper's Table 1 is said to
    be that value (UNCONFIRMED which)."""
    r = np.sort(np.asarray(radius))[::-1]
    return int(r[(len(r) + 1) // 2 - 1]) if len(r) else -1
