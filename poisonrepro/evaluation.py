"""One evaluation trial for a poisoned training set: splice, train a learner, score it.

Every attack notebook ends the same way: it takes an attack's poisons from the artifact cache,
puts them into the training set, trains a network from scratch with a recipe and a seed, and
scores that network on clean test images and on the attack's targets. This module is that step,
written once. As in BackdoorBench (Wu et al., NeurIPS 2022 Datasets and Benchmarks) and APBench
(Qin et al., 2023), the poisoned training set is the artifact that an attack hands to its
evaluation. A paper supplies its poisons and its grid of trials, never its own training loop.

    evaluate_poisons(dataset, poisons, learner, recipe, seed, probes, stage="victims") -> executor.Trial

- ``dataset``: a name in ``DATASETS`` and its arguments, e.g. ``{"name": "cifar10", "per_class": 5000}``;
- ``poisons``: ``None`` (a clean victim) or a reference to a cached poison artifact,
  ``{"stage": "craft", "key": ..., "field": "poisons", "setup": t, "positions": [...]}``: the
  uint8 images ``artifact[field][setup]`` replace the training images at ``positions`` and keep
  their labels (clean-label poisoning, the threat model of 01-04);
- ``learner``: a name in ``LEARNERS`` and its arguments, e.g. ``{"kind": "supervised", "arch": "convnet_bn"}``.
  A learner has ``train(x, y, recipe, seed) -> model`` and ``predict(model, images) -> classes``;
  notebooks 12-14 register adversarial and contrastive learners here (``register_learner``);
- ``recipe``: the fields of ``train.VictimRecipe``;
- ``probes``: what to score: ``test_images`` (clean accuracy on that fixed draw of the test set),
  ``targets`` (test indices whose classes are returned), ``patch_seed`` and ``locations`` (the
  targets' classes again with the trigger pasted at each location), ``fit`` (the accuracy on the
  training set and on the poisons themselves).

The trial is a pure function of this JSON-able spec, so ``executor.run_trials`` caches it under a
key of the spec and this module's code, resumes an interrupted grid, and can run it on any worker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from . import data as D
from . import models as M
from . import train as T
from . import triggers
from .cache import ArtifactCache
from .executor import Trial

TRIAL_FN = f"{__name__}:evaluation_trial"


# --------------------------------------------------------------------------- datasets
@lru_cache(maxsize=2)
def cifar10_training_set(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` CIFAR-10 training images of every class (uint8 NCHW) and labels;
    ``per_class=5000`` is the whole training set, in its own order."""
    if not 1 <= per_class <= 5000:
        raise ValueError(f"per_class={per_class!r}: CIFAR-10 has 1 to 5000 training images per class")
    train = D.load_cifar10("train")
    idx = np.sort(np.concatenate([np.flatnonzero(train.y == c)[:per_class] for c in range(10)]))
    return T.as_nchw(train.x[idx]), torch.as_tensor(train.y[idx]).long()


def test_indices(n: int, count: int) -> np.ndarray:
    """A fixed draw of ``count`` of the ``n`` test images for clean accuracy (the same for every seed)."""
    if not 1 <= count <= n:
        raise ValueError(f"test_images={count!r}: the test set has 1 to {n} images")
    return np.sort(np.random.default_rng(0).choice(n, count, replace=False))


@lru_cache(maxsize=2)
def cifar10_test_set(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    test = D.load_cifar10("test")
    idx = test_indices(len(test.y), count)
    return T.as_nchw(test.x[idx]), torch.as_tensor(test.y[idx]).long()


def cifar10_test_images(indices) -> torch.Tensor:
    return T.as_nchw(D.load_cifar10("test").x[np.asarray(indices)])


@dataclass(frozen=True)
class Dataset:
    training_set: Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (**args) -> uint8 NCHW images, labels
    test_set: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # (count) -> the fixed clean-accuracy draw
    test_images: Callable[[list], torch.Tensor]  # (indices) -> uint8 NCHW test images (the targets)


DATASETS = {"cifar10": Dataset(cifar10_training_set, cifar10_test_set, cifar10_test_images)}


# --------------------------------------------------------------------------- learners
class Learner(Protocol):
    def train(self, x: torch.Tensor, y: torch.Tensor, recipe: T.VictimRecipe, seed: int) -> nn.Module: ...

    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class SupervisedLearner:
    """A network of ``arch`` trained from scratch by ``train.train_victim`` (adversarially where
    the recipe's ``adversarial_eps`` > 0), on ``train.default_device()``."""
    arch: str

    def train(self, x, y, recipe, seed):
        model = M.build_model(self.arch).to(T.default_device())
        return T.train_victim(model, x, y, recipe, seed=seed, desc=f"victim {self.arch}")

    def predict(self, model, images):
        device = next(model.parameters()).device
        return T.predict_logits(model, T.to_unit(images).to(device)).argmax(1).cpu()


LEARNERS: dict[str, Callable[..., Learner]] = {"supervised": SupervisedLearner}


def register_learner(kind: str, factory: Callable[..., Learner]) -> None:
    """Make ``{"kind": kind, **args}`` a learner spec: ``factory(**args)`` builds the learner."""
    if kind in LEARNERS and LEARNERS[kind] is not factory:
        raise ValueError(f"learner kind {kind!r} is already registered")
    LEARNERS[kind] = factory


def build_learner(spec: dict) -> Learner:
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in LEARNERS:
        raise ValueError(f"learner kind={kind!r}: unknown; allowed: {', '.join(LEARNERS)}")
    return LEARNERS[kind](**spec)


def recipe_from(fields: dict) -> T.VictimRecipe:
    """``train.VictimRecipe`` from JSON fields (lists back to tuples)."""
    fields = dict(fields)
    if "milestones" in fields:
        fields["milestones"] = tuple(fields["milestones"])
    return T.VictimRecipe(**fields)


# --------------------------------------------------------------------------- the trial
def _missing_poisons():
    raise FileNotFoundError("the victim's poisons are not in the artifact cache: run the attack's crafting stage "
                            "first, with the same POISONREPRO_ARTIFACTS")


def poisoned_training_set(dataset: dict, poisons: dict | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training set of ``dataset`` with ``poisons`` spliced in: images, labels, and the
    positions of the poisons (empty for a clean set)."""
    args = {k: v for k, v in dataset.items() if k != "name"}
    x, y = DATASETS[dataset["name"]].training_set(**args)
    if poisons is None:
        return x, y, torch.zeros(0, dtype=torch.long)
    positions = torch.as_tensor(poisons["positions"], dtype=torch.long)
    images = ArtifactCache().tensors(poisons["stage"], poisons["key"], _missing_poisons)[poisons.get("field", "poisons")]
    images = images[poisons["setup"]] if "setup" in poisons else images
    if images.shape[0] != len(positions) or images.shape[1:] != x.shape[1:] or images.dtype != x.dtype:
        raise ValueError(f"poisons {tuple(images.shape)} {images.dtype} do not fit {len(positions)} positions of a "
                         f"training set of {tuple(x.shape[1:])} {x.dtype} images")
    x = x.clone()
    x[positions] = images
    return x, y, positions


def evaluation_trial(*, dataset: dict, poisons: dict | None, learner: dict, recipe: dict, seed: int,
                     probes: dict) -> dict:
    """Train ``learner`` with ``recipe`` and ``seed`` on ``dataset`` with ``poisons`` spliced in,
    and score it on ``probes`` (module docstring). Returns ``test_accuracy``, ``prediction``
    [targets] and ``patched_prediction`` [locations, targets]; with ``probes["fit"]`` also
    ``train_accuracy`` and ``poison_fit`` (NaN for a clean set)."""
    ds = DATASETS[dataset["name"]]
    x, y, positions = poisoned_training_set(dataset, poisons)
    net = build_learner(learner)
    model = net.train(x, y, recipe_from(recipe), seed)
    test_x, test_y = ds.test_set(probes["test_images"])
    out = {"test_accuracy": torch.tensor((net.predict(model, test_x) == test_y).float().mean().item())}
    targets = ds.test_images(probes.get("targets", []))
    out["prediction"] = net.predict(model, targets) if len(targets) else torch.zeros(0, dtype=torch.long)
    locations = [tuple(loc) for loc in probes.get("locations", [])]
    if locations:
        patch = triggers.make_patch(seed=probes["patch_seed"])
        out["patched_prediction"] = torch.stack([net.predict(model, triggers.paste_patch(targets, patch, *loc))
                                                 for loc in locations])
    else:
        out["patched_prediction"] = torch.zeros(0, len(targets), dtype=torch.long)
    if probes.get("fit"):
        out["train_accuracy"] = torch.tensor((net.predict(model, x) == y).float().mean().item())
        out["poison_fit"] = torch.tensor((net.predict(model, x[positions]) == y[positions]).float().mean().item()
                                         if len(positions) else math.nan)
    return out


def evaluate_poisons(dataset: dict, poisons: dict | None, learner: dict, recipe: dict, seed: int, probes: dict,
                     stage: str = "victims") -> Trial:
    """The trial (for ``executor.run_trials``) that evaluates one poisoned training set; checks
    the spec before any compute."""
    if dataset.get("name") not in DATASETS:
        raise ValueError(f"dataset name={dataset.get('name')!r}: unknown; allowed: {', '.join(DATASETS)}")
    build_learner(learner)
    recipe_from(recipe)
    if poisons is not None:
        missing = {"stage", "key", "positions"} - set(poisons)
        if missing:
            raise ValueError(f"poisons: missing {', '.join(sorted(missing))}")
    if probes.get("locations") and "patch_seed" not in probes:
        raise ValueError("probes: trigger locations need a patch_seed")
    return Trial(stage, TRIAL_FN, {"dataset": dataset, "poisons": poisons, "learner": learner, "recipe": recipe,
                                   "seed": int(seed), "probes": probes})
