"""One evaluation trial for a poisoned training set: splice, train a learner, score it.

Every attack notebook ends the same way: it takes an attack's poisons from the artifact cache,
puts them into the training set, trains a network from scratch with a recipe and a seed, and
scores that network on clean test images and on the attack's targets. This module is that step,
written once. As in BackdoorBench (Wu et al., NeurIPS 2022 Datasets and Benchmarks) and APBench
(Qin et al., 2023), the poisoned training set is the artifact that an attack hands to its
evaluation. A paper supplies its poisons and its grid of trials, never its own training loop.

    evaluate_poisons(dataset, poisons, learner, recipe, seed, probes, stage="victims") -> executor.Trial

- ``dataset``: a name in ``DATASETS`` (or the import path of a ``Dataset``, "package.module:NAME")
  and its arguments, e.g. ``{"name": "cifar10", "per_class": 5000}``;
- ``poisons``: what spoils the training set:
  - ``None``: a clean victim;
  - a reference to a cached poison artifact,
    ``{"stage": "craft", "key": ..., "field": "poisons", "setup": t, "positions": [...]}``: the
    uint8 images ``artifact[field][setup]`` replace the training images at ``positions`` and keep
    their labels (clean-label poisoning, the threat model of 01-04);
  - a producer, ``{"producer": "package.module:function", "args": {...}}``: ``function(x, y,
    **args) -> (x, y, bad)`` returns the spoiled set (images and labels may both change: label
    noise, dirty-label backdoors drawn per seed) and the bool mask of the samples it changed;
- ``learner``: ``{"kind": ..., **args}``, where ``kind`` is ``"supervised"`` (a network of ``arch``
  trained by ``train.train_victim``) or the import path of a learner factory,
  ``"package.module:Factory"`` (a defence such as ITLM or ABL; notebooks 12-14's adversarial
  and contrastive learners). A learner has ``train(x, y, recipe, seed, score=...)``, which returns
  the model, or the model and a dict of diagnostics (what a defence kept or isolated, per training
  sample; ``score(model)``, the trial's clean accuracy and attack success rate, after each of its
  phases), and ``predict(model, images) -> classes``;
- ``recipe``: the fields of ``train.VictimRecipe``;
- ``probes``: what to score: ``test_images`` (clean accuracy on that fixed draw of the test set),
  ``targets`` (test indices whose classes are returned), ``patch_seed`` and ``locations`` (the
  targets' classes again with the trigger pasted at each location), ``trigger``
  (``{"fn": "package.module:apply", "args": {...}, "target_class": c}``: the attack success rate
  of ``apply(images, generator, **args)`` on the test draw's images of the other classes),
  ``fit`` (the accuracy on the training set and on the poisons themselves).

Every import path in a spec is resolved before any compute, and the code hash of its module (with
what it imports) is added to the spec, so that a change to a learner or a producer retrains.
The trial is a pure function of this JSON-able spec, so ``executor.run_trials`` caches it under a
key of the spec and this module's code, resumes an interrupted grid, and can run it on any worker.
"""
from __future__ import annotations

import importlib
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
from .attacks import backdoor_poisoning as BP
from .cache import ArtifactCache
from .executor import Trial, module_code_hash, resolve

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
    return T.as_nchw(D.load_cifar10("test").x[np.asarray(indices, dtype=np.int64)])


@dataclass(frozen=True)
class Dataset:
    training_set: Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (**args) -> uint8 NCHW images, labels
    test_set: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # (count) -> the fixed clean-accuracy draw
    test_images: Callable[[list], torch.Tensor]  # (indices) -> uint8 NCHW test images (the targets)


DATASETS = {"cifar10": Dataset(cifar10_training_set, cifar10_test_set, cifar10_test_images)}


def dataset_of(name) -> Dataset:
    """A dataset by its name in ``DATASETS``, or by the import path of a ``Dataset`` object
    ("package.module:NAME"), so that a paper brings its own without changing this module."""
    if name in DATASETS:
        return DATASETS[name]
    if isinstance(name, str) and ":" in name:
        module, _, attr = name.partition(":")
        try:
            ds = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"dataset name={name!r}: cannot be imported ({e})") from None
        if isinstance(ds, Dataset):
            return ds
    raise ValueError(f"dataset name={name!r}: unknown; allowed: {', '.join(DATASETS)}, "
                     "or the import path of an evaluation.Dataset ('package.module:NAME')")


# --------------------------------------------------------------------------- learners
class Learner(Protocol):
    def train(self, x: torch.Tensor, y: torch.Tensor, recipe: T.VictimRecipe, seed: int, *,
              score: Callable[[nn.Module], dict]) -> nn.Module | tuple[nn.Module, dict]: ...

    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class SupervisedLearner:
    """A network of ``arch`` trained from scratch by ``train.train_victim`` (adversarially where
    the recipe's ``adversarial_eps`` > 0), on ``train.default_device()``."""
    arch: str

    def train(self, x, y, recipe, seed, *, score=None):
        model = M.build_model(self.arch).to(T.default_device())
        return T.train_victim(model, x, y, recipe, seed=seed, desc=f"victim {self.arch}")

    def predict(self, model, images):
        device = next(model.parameters()).device
        return T.predict_logits(model, T.to_unit(images).to(device)).argmax(1).cpu()


LEARNERS: dict[str, Callable[..., Learner]] = {"supervised": SupervisedLearner}


def _import_path(value, what: str) -> str:
    """Check that ``value`` names an importable object ("package.module:name")."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"{what}={value!r}: not an import path 'package.module:name'")
    try:
        resolve(value)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"{what}={value!r}: cannot be imported ({e})") from None
    return value


def learner_factory(kind) -> Callable[..., Learner]:
    if kind in LEARNERS:
        return LEARNERS[kind]
    if isinstance(kind, str) and ":" in kind:
        return resolve(_import_path(kind, "learner kind"))
    raise ValueError(f"learner kind={kind!r}: unknown; allowed: {', '.join(LEARNERS)}, "
                     "or the import path of a learner factory ('package.module:Factory')")


def build_learner(spec: dict) -> Learner:
    spec = dict(spec)
    return learner_factory(spec.pop("kind", None))(**spec)


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
    """The training set of ``dataset`` spoiled by ``poisons``: images, labels, and the positions
    of the changed samples (empty for a clean set)."""
    args = {k: v for k, v in dataset.items() if k != "name"}
    x, y = dataset_of(dataset["name"]).training_set(**args)
    if poisons is None:
        return x, y, torch.zeros(0, dtype=torch.long)
    if "producer" in poisons:
        px, py, bad = resolve(poisons["producer"])(x, y, **poisons.get("args", {}))
        bad = torch.as_tensor(bad, dtype=torch.bool)
        if px.shape != x.shape or px.dtype != x.dtype or py.shape != y.shape or bad.shape != y.shape:
            raise ValueError(f"producer {poisons['producer']} returned {tuple(px.shape)} {px.dtype} images, "
                             f"{tuple(py.shape)} labels and a {tuple(bad.shape)} mask for a training set of "
                             f"{tuple(x.shape)} {x.dtype} images")
        return px, torch.as_tensor(py).long(), torch.nonzero(bad).flatten()
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
                     probes: dict, code: dict | None = None) -> dict:
    """Train ``learner`` with ``recipe`` and ``seed`` on ``dataset`` spoiled by ``poisons``, and
    score it on ``probes`` (module docstring). Returns ``test_accuracy``, ``prediction``
    [targets], ``patched_prediction`` [locations, targets] and ``bad`` (the mask of the changed
    training samples); with a trigger probe ``attack_success_rate``; with ``probes["fit"]`` also
    ``train_accuracy`` and ``poison_fit`` (NaN for a clean set); and the learner's diagnostics.
    ``code`` (the code hashes of the spec's import paths) only keys the cache."""
    ds = dataset_of(dataset["name"])
    x, y, positions = poisoned_training_set(dataset, poisons)
    net = build_learner(learner)
    test_x, test_y = ds.test_set(probes["test_images"])
    trigger = probes.get("trigger")
    if trigger:
        apply = resolve(trigger["fn"])
        triggered, _ = BP.triggered_test_set(test_x, test_y, lambda im, g: apply(im, g, **trigger.get("args", {})),
                                             trigger["target_class"])

    def score(model) -> dict:
        """The clean accuracy (and the attack success rate) of ``model``: the trial's final scores,
        and what a learner may record between its phases."""
        scores = {"test_accuracy": torch.tensor((net.predict(model, test_x) == test_y).float().mean().item())}
        if trigger:
            scores["attack_success_rate"] = torch.tensor(BP.attack_success_rate(net.predict(model, triggered),
                                                                                 trigger["target_class"]))
        return scores

    model = net.train(x, y, recipe_from(recipe), seed, score=score)
    model, diagnostics = model if isinstance(model, tuple) else (model, {})
    out = score(model)
    bad = torch.zeros(len(y), dtype=torch.bool)
    bad[positions] = True
    out["bad"] = bad
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
    clash = set(diagnostics) & set(out)
    if clash:
        raise ValueError(f"the learner's diagnostics {sorted(clash)} clash with the trial's own results")
    return {**out, **diagnostics}


def evaluate_poisons(dataset: dict, poisons: dict | None, learner: dict, recipe: dict, seed: int, probes: dict,
                     stage: str = "victims") -> Trial:
    """The trial (for ``executor.run_trials``) that evaluates one poisoned training set; checks
    the spec before any compute."""
    dataset_of(dataset.get("name"))
    paths = [dataset["name"]] if dataset["name"] not in DATASETS else []
    if learner.get("kind") not in LEARNERS:
        paths.append(_import_path(learner.get("kind"), "learner kind"))
    build_learner(learner)
    recipe_from(recipe)
    if poisons is not None and "producer" in poisons:
        paths.append(_import_path(poisons["producer"], "poisons producer"))
    elif poisons is not None:
        missing = {"stage", "key", "positions"} - set(poisons)
        if missing:
            raise ValueError(f"poisons: missing {', '.join(sorted(missing))}")
    if probes.get("locations") and "patch_seed" not in probes:
        raise ValueError("probes: trigger locations need a patch_seed")
    if probes.get("trigger"):
        trigger = probes["trigger"]
        paths.append(_import_path(trigger.get("fn"), "probes trigger fn"))
        if not isinstance(trigger.get("target_class"), int) or not 0 <= trigger["target_class"]:
            raise ValueError(f"probes trigger target_class={trigger.get('target_class')!r}: a class index >= 0")
    spec = {"dataset": dataset, "poisons": poisons, "learner": learner, "recipe": recipe, "seed": int(seed),
            "probes": probes}
    if paths:  # a change to the learner's or the producer's code must retrain
        spec["code"] = {p.split(":")[0]: module_code_hash(p.split(":")[0]) for p in paths}
    return Trial(stage, TRIAL_FN, spec)
