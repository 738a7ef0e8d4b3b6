"""The target dataset of Table 6 (transfer of CIFAR-10 perturbations to SVHN-small) at this
machine: a labelled STAND-IN. SVHN is not on this machine; MNIST's digits, resized to 32x32 RGB
(``registration.mnist_as_svhn``: the mirror's 5,000 real training digits and 10,000 test digits),
stand in for SVHN's ten digit classes. ``SVHN_SMALL_STANDIN`` is an ``evaluation.Dataset``, named in
an evaluation spec by its import path (``DATASET``)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ... import train as T
from ...evaluation import Dataset, test_indices
from ...registration import mnist_as_svhn

LABEL = "STAND-IN: MNIST digits resized to 32x32 RGB, for SVHN-small"
DATASET = f"{__name__}:SVHN_SMALL_STANDIN"


@lru_cache(maxsize=2)
def _split(split: str):
    ds = mnist_as_svhn(split)
    return T.as_nchw(np.asarray(ds.x)), torch.as_tensor(np.asarray(ds.y)).long()


def training_set(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` training digits of each class (all of a class where it has fewer)."""
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class={per_class!r}: an integer >= 1")
    x, y = _split("train")
    idx = np.sort(np.concatenate([np.flatnonzero(y.numpy() == c)[:per_class] for c in range(10)]))
    return x[idx], y[idx]


def test_set(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _split("test")
    idx = test_indices(len(y), count)
    return x[idx], y[idx]


def test_images(indices) -> torch.Tensor:
    return _split("test")[0][np.asarray(indices, dtype=np.int64)]


SVHN_SMALL_STANDIN = Dataset(training_set, test_set, test_images)
