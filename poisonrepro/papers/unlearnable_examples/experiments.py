"""Notebook 12, Unlearnable Examples (H. Huang, X. Ma, S. M. Erfani, J. Bailey, Y. Wang, ICLR 2021):
the experiments of UE-1 to UE-5.

The noises (each a module of ``poisonrepro.attacks``, L-inf ``eps`` = 8/255 on the [0, 1] scale):

- ``error_min``: sample-wise error-minimising noise, Eq. 2's min-min
  argmin_theta E min_{||delta_i|| <= eps} CE(f_theta(x_i + delta_i), y_i), Sec. 4.1's alternation
  (``attacks.error_minimizing``);
- ``error_min_class``: the same with one delta per class (Delta_c), crafted on a stratified 20%;
- ``random``: uniform noise in the ball, one draw per sample (Fig. 1's baseline, ``attacks.random_noise``);
- ``error_max``: PGD adversarial examples of a network trained on the clean set (Fig. 1's baseline,
  ``attacks.error_maximizing``).

Stages (each trial through ``poisonrepro.executor``, cached):

1. ``attacker``: the network of error-maximising noise, trained on the clean set;
2. ``noise``: each noise, crafted once on the victims' own training set (the first ``train_per_class``
   images of each class: at cpu all 50,000), as ``attacks.availability``'s artifact, with the
   L-inf distance of every spoiled image from its original (the budget's precondition);
3. ``victims``: evaluation trials (``evaluation.evaluate_poisons``): the producer
   ``availability:poison_training_set`` adds a cached noise to a seeded share of the set (all of it,
   a fraction: UE-4, or one class: UE-5); the learner is ``CurveLearner``, supervised training with an
   augmentation of ``learners.augmented`` (UE-3) that records the test accuracy after every epoch
   (UE-2's learning curves) and the prediction of every test image (UE-5's per-class accuracy).

The surrogate and the attacker's network craft under the precision in force (bf16 autocast where
the processor has it, as the victims train: ``Autocast``), since the crafting loop's own default
is fp32 and crafting over 50,000 images is this notebook's costliest step.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

import torch
from torch import nn

from ... import data as D
from ... import evaluation as EV
from ... import models as M
from ... import precision as PR
from ... import train as T
from ...attacks import availability as AV
from ...attacks import error_maximizing as EMAX
from ...attacks import error_minimizing as EMIN
from ...attacks import random_noise as RN
from ...cache import ArtifactCache
from ...config.unlearnable_examples import NOISES
from ...executor import Trial, run_trials, trial_key
from ...learners.augmented import AugmentedLearner, AugmentedNetwork
from ...rng import seeded

DATASET = "cifar10"
PRODUCER = "poisonrepro.attacks.availability:poison_training_set"
NOISE_NAME = {"error_min": "error-minimising, sample-wise", "error_min_class": "error-minimising, class-wise",
              "random": "random, sample-wise", "error_max": "error-maximising, sample-wise"}
#: victim recipes (``train.VictimRecipe`` fields): the project's fast victim, and the authors' evaluation
#: (the authors' HanxunH/Unlearnable-Examples: SGD 0.1, 60 epochs, cosine; momentum 0.9, weight decay 5e-4, batch 128 UNCONFIRMED;
#: a linear decay stands in for the cosine schedule, crop 4 and flip as their transforms)
RECIPES = {"fast": {},
           "ue": {"batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, "label_smoothing": 0.0, "warmup": 0.0,
                  "crop_pad": 4}}


def recipe_fields(cfg, epochs: float | None = None) -> dict:
    return {**RECIPES[cfg.recipe], "epochs": float(cfg.epochs if epochs is None else epochs)}


def training_set(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The victims' training set (the shared evaluation's), on which every noise is crafted."""
    return EV.cifar10_training_set(per_class)


class Autocast(nn.Module):
    """``net`` run under the precision in force (``poisonrepro.precision``: bf16 autocast where the
    processor computes it natively), its logits returned in fp32, so that the crafting loop's
    forward and backward passes cost what a victim's training step costs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        with PR.autocast(x.device):
            return self.net(x).float()


def _build(arch: str, seed: int) -> nn.Module:
    with seeded(seed):  # initial weights from the seed alone; the caller's generators untouched
        return M.build_model(arch).to(T.default_device())


# --------------------------------------------------------------------------- the attacker's network
def attacker_trial(*, model: str, recipe: dict, per_class: int, test_per_class: int, seed: int) -> dict:
    """The network of error-maximising noise, trained on the clean training set: its weights and
    clean test accuracy."""
    x, y = training_set(per_class)
    net = _build(model, seed)
    T.train_victim(net, x, y, EV.recipe_from(recipe), seed=seed, desc="error-maximising noise's network")
    test_x, test_y = EV.cifar10_test_set(10 * test_per_class)
    acc = T.victim_accuracy(net, test_x, test_y, flip_tta=False)
    net = net.cpu().to(memory_format=torch.contiguous_format)
    return {**{f"state.{k}": v.contiguous() for k, v in net.state_dict().items()}, "test_accuracy": torch.tensor(acc)}


def attacker_trials(cfg) -> list[Trial]:
    return [Trial("attacker", f"{__name__}:attacker_trial",
                  {"model": cfg.model, "recipe": recipe_fields(cfg, cfg.attacker_epochs), "per_class": cfg.train_per_class,
                   "test_per_class": cfg.test_per_class, "seed": cfg.seed + 50})]


def load_attacker(model: str, key: str) -> nn.Module:
    def missing():
        raise FileNotFoundError("the attacker's network is not in the artifact cache: run experiments.attacker "
                                "first, with the same POISONREPRO_ARTIFACTS")
    state = ArtifactCache().tensors("attacker", key, missing)
    net = _build(model, 0)
    net.load_state_dict({k[len("state."):]: v for k, v in state.items() if k.startswith("state.")})
    return net.eval()


def attacker(cfg, cache) -> tuple[dict, str]:
    """The attacker's network (trained or loaded) and its cache key."""
    trials = attacker_trials(cfg)
    return run_trials(trials, cache, desc="error-maximising noise's network")[0], trial_key(trials[0])


# --------------------------------------------------------------------------- the noises
def noise_trial(*, kind: str, per_class: int, seed: int, eps: float, surrogate: str = "", step_size: float = 0.0,
                noise_steps: int = 1, train_steps: int = 10, max_rounds: int = 1, stop_error: float = 0.01,
                class_subset: float = 0.2, batch_size: int = 512, emax_steps: int = 1, emax_step_size: float = 0.0,
                model: str = "", attacker_key: str = "") -> dict:
    """One noise of ``NOISES`` for the training set of ``per_class`` images per class, as
    ``availability.noise_artifact`` with its diagnostics, and ``linf_255``: the L-inf distance of
    every spoiled training image from its original, in pixel levels (after clipping)."""
    if kind not in NOISES:
        raise ValueError(f"noise kind={kind!r}: unknown; allowed: {', '.join(NOISES)}")
    x, y = training_set(per_class)
    if kind == "random":
        art = RN.random_noise(x, y, eps=eps, seed=seed)
    elif kind == "error_max":
        art = EMAX.craft_error_maximizing(Autocast(load_attacker(model, attacker_key)), x, y, eps=eps,
                                          steps=emax_steps, step_size=emax_step_size, batch_size=batch_size, seed=seed)
    else:  # error_min, error_min_class
        net = Autocast(_build(surrogate, seed))
        common = dict(eps=eps, step_size=step_size, train_steps=train_steps, max_rounds=max_rounds,
                      stop_error=stop_error, batch_size=batch_size, seed=seed)
        if kind == "error_min":
            art = EMIN.craft_error_minimizing(net, x, y, noise_steps=noise_steps, **common)
        else:
            art = EMIN.craft_error_minimizing_classwise(net, x, y, subset=class_subset,
                                                        noise_steps=noise_steps or None, **common)
    spoiled = AV.apply_noise(x, y, art)[0]
    art["linf_255"] = (spoiled.short() - x.short()).abs().flatten(1).amax(1).to(torch.uint8)
    return art


def noise_trials(cfg, attacker_key: str) -> list[Trial]:
    """One trial per noise of ``cfg.noises``; each gets only the settings it uses, so that a change
    to another noise's settings keeps its key."""
    trials = []
    for j, kind in enumerate(cfg.noises):
        spec = {"kind": kind, "per_class": cfg.train_per_class, "seed": cfg.seed + 10 + j, "eps": cfg.eps}
        if kind.startswith("error_min"):
            spec.update(surrogate=cfg.surrogate, step_size=cfg.step_size, train_steps=cfg.train_steps,
                        max_rounds=cfg.max_rounds, stop_error=cfg.stop_error, batch_size=cfg.craft_batch,
                        noise_steps=cfg.noise_steps if kind == "error_min" else cfg.class_noise_steps)
            if kind == "error_min_class":
                spec["class_subset"] = cfg.class_subset
        elif kind == "error_max":
            spec.update(emax_steps=cfg.emax_steps, emax_step_size=cfg.emax_step_size, batch_size=cfg.craft_batch,
                        model=cfg.model, attacker_key=attacker_key)
        trials.append(Trial("noise", f"{__name__}:noise_trial", spec))
    return trials


def noises(cfg, cache, attacker_key: str) -> tuple[dict, dict]:
    """{kind: artifact} and {kind: its cache key}, crafted or loaded."""
    trials = noise_trials(cfg, attacker_key)
    results = run_trials(trials, cache, desc="the noises")
    return dict(zip(cfg.noises, results)), {k: trial_key(t) for k, t in zip(cfg.noises, trials)}


# --------------------------------------------------------------------------- the learner
def curve_draw(test_x: torch.Tensor, test_y: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random ``count`` of the test draw's images (``evaluation.test_indices``), the same for
    every victim: the test set is stored class by class, so its first images are all one class."""
    pick = torch.as_tensor(EV.test_indices(len(test_y), count))
    return test_x[pick], test_y[pick]


@dataclass(frozen=True)
class CurveLearner(AugmentedLearner):
    """``learners.augmented.AugmentedLearner`` (the recipe's flip-and-crop and one augmentation) that
    also records, after every epoch, the accuracy on a fixed random ``curve_images`` of the trial's
    test draw (``curve_draw``; ``curve``: [epochs], UE-2), and at the end the class it predicts for each of the
    ``test_images`` of that draw (``test_prediction``, UE-5's per-class accuracy)."""
    curve_images: int = 1000
    test_images: int = 10_000

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.curve_images <= self.test_images:
            raise ValueError(f"curve_images={self.curve_images!r}: between 1 and test_images={self.test_images}")

    def train(self, x, y, recipe, seed, *, score=None):
        # AugmentedLearner.train, with an epoch callback (it passes none to train_victim)
        if self.augmentation == "none":
            recipe = replace(recipe, crop_pad=0, flip=False)
        net = _build(self.arch, seed)
        model = AugmentedNetwork(net, self.augmentation, torch.Generator().manual_seed(seed + 1), self.params)
        test_x, test_y = EV.cifar10_test_set(self.test_images)
        curve_x, curve_y = curve_draw(test_x, test_y, self.curve_images)
        per_epoch, curve = max(1, len(y) // recipe.batch_size), []

        def on_step(step, total):
            if step % per_epoch == 0 or step == total:
                curve.append((self.predict(net, curve_x) == curve_y).float().mean().item())
                net.train()  # predict switched it to eval mode mid-training
        T.train_victim(model, x, y, recipe, seed=seed, desc=f"victim {self.arch} + {self.augmentation}",
                       on_step=on_step, loss_fn=lambda logits, labels: model.loss(logits, labels, recipe.label_smoothing))
        return net, {"curve": torch.tensor(curve), "test_prediction": self.predict(net, test_x)}


LEARNER = f"{__name__}:CurveLearner"


# --------------------------------------------------------------------------- victims
def seeds(cfg, count: int | None = None) -> list[int]:
    """The victim seeds (the claims' unit); the first ``count`` of them."""
    return [cfg.seed + 100 + j for j in range(cfg.victim_seeds if count is None else count)]


def victim_trial(cfg, seed: int, *, noise_key: str | None = None, fraction: float = 1.0, classes=None,
                 arch: str | None = None, augmentation: str = "crop_flip") -> Trial:
    """One victim trained from scratch with ``seed`` on the training set spoiled by the cached noise
    ``noise_key`` (None: clean) on ``fraction`` of it (or of ``classes``), the poisoned share drawn
    with the same seed."""
    poisons = None
    if noise_key is not None:
        args = {"stage": "noise", "key": noise_key, "fraction": float(fraction), "seed": int(seed)}
        if classes is not None:
            args["classes"] = list(classes)
        poisons = {"producer": PRODUCER, "args": args}
    learner = {"kind": LEARNER, "arch": arch or cfg.model, "augmentation": augmentation,
               "curve_images": cfg.curve_images, "test_images": 10 * cfg.test_per_class}
    return EV.evaluate_poisons({"name": DATASET, "per_class": cfg.train_per_class}, poisons, learner,
                               recipe_fields(cfg), seed, {"test_images": 10 * cfg.test_per_class})


def arms(cfg, keys: dict) -> dict[str, list[Trial]]:
    """Every arm's victims, one per seed: ``clean`` and each noise on the whole set (UE-2), the
    sample-wise noise on each share of ``fractions`` (``fraction:<f>``, UE-4), with each
    augmentation (``augment:<name>``) and on each other architecture (``arch:<name>``, UE-3), and the
    class ``protect_class`` alone made unlearnable (``protect:<noise>``, UE-5)."""
    emin = keys["error_min"]
    out = {"clean": [victim_trial(cfg, s) for s in seeds(cfg)]}
    for kind in cfg.noises:
        count = cfg.victim_seeds if kind.startswith("error_min") else cfg.control_seeds
        out[kind] = [victim_trial(cfg, s, noise_key=keys[kind]) for s in seeds(cfg, count)]
    for f in cfg.fractions:
        out[f"fraction:{f:g}"] = [victim_trial(cfg, s, noise_key=emin, fraction=f) for s in seeds(cfg)]
    grid = seeds(cfg, cfg.grid_seeds)
    for aug in cfg.augmentations:
        out[f"augment:{aug}"] = [victim_trial(cfg, s, noise_key=emin, augmentation=aug) for s in grid]
    for arch in cfg.transfer_archs:
        out[f"arch:{arch}"] = [victim_trial(cfg, s, noise_key=emin, arch=arch) for s in grid]
    protect = [D.class_index(cfg.protect_class)]
    for kind in ("error_min", "error_min_class"):
        if kind in keys:
            out[f"protect:{kind}"] = [victim_trial(cfg, s, noise_key=keys[kind], classes=protect) for s in grid]
    return out


def run(cfg, cache) -> dict:
    """Everything the report needs: ``attacker`` (its result), ``noises`` ({kind: artifact}),
    ``victims`` ({arm: [the result of each seed]}), trained or loaded from the cache."""
    needs_attacker = "error_max" in cfg.noises
    att, key = attacker(cfg, cache) if needs_attacker else ({}, "")
    made, keys = noises(cfg, cache, key)
    grid = arms(cfg, keys)
    flat = [t for trials in grid.values() for t in trials]
    results = iter(run_trials(flat, cache, desc="victims"))
    return {"attacker": att, "noises": made,
            "victims": {arm: [next(results) for _ in trials] for arm, trials in grid.items()}}


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages at ``cfg`` for ``make plan``; runs nothing. Crafting counts every round up to the cap."""
    P = importlib.import_module("poisonrepro.plan")
    n = 10 * cfg.train_per_class
    flops = lambda arch, images: float(P.model_train_flops(M.build_model(arch), (3, 32, 32), images))  # noqa: E731
    victims = sum(len(v) for v in arms(cfg, {k: "" for k in cfg.noises}).values())
    rows = []
    if "error_max" in cfg.noises:
        rows.append({"stage": "attacker's network", "trials": 1, "flops_per_trial": flops(cfg.model, n * cfg.attacker_epochs),
                     "basis": f"{n} images x {cfg.attacker_epochs} epochs"})
    class_steps = cfg.class_noise_steps or -(-round(cfg.class_subset * n) // cfg.craft_batch)
    passes = {"error_min": (n * cfg.noise_steps, cfg.max_rounds),
              "error_min_class": (round(cfg.class_subset * n) * class_steps, cfg.max_rounds),
              "error_max": (n * cfg.emax_steps, 1)}
    for kind in cfg.noises:
        if kind in passes:
            images, rounds = passes[kind]
            rows.append({"stage": f"noise: {NOISE_NAME[kind]}", "trials": 1,
                         "flops_per_trial": flops(cfg.surrogate if kind.startswith("error_min") else cfg.model,
                                                  images * rounds),
                         "basis": f"at most {rounds} round(s) of {images:,} image passes"})
    rows.append({"stage": "victims", "trials": victims, "flops_per_trial": flops(cfg.model, n * cfg.epochs),
                 "basis": f"{n} images x {cfg.epochs} epochs (the other architectures of UE-3 counted as the victim)"})
    return rows
