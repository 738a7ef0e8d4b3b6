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

The base classifiers are the caller's (``train_partitions`` takes any ``fit(x, y) -> predict``);
notebook 10 trains them in batched passes.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

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
