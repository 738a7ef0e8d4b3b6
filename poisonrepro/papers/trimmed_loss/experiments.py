"""Notebook 09, iterative trimmed loss minimisation (Shen and Sanghavi, ICML 2019): the experiments
of TL-1.

The CIFAR-10 training set (``evaluation.DATASETS``) is spoiled by one of three kinds of bad data,
each drawn anew for every seed (``bad_set``, the producer of the poisoned training set):

- ``random``: a share of the labels redrawn uniformly from the ten classes (``label_flipping``'s
  "random" variant: a tenth of them keep their class, and only the changed ones count as bad);
- ``systematic``: a share of every class relabelled as the next class, y -> y + 1 mod 10 (the
  "flip" variant; the paper's example moves automobiles to airplanes);
- ``badnets``: a BadNets backdoor (``attacks.badnets``: a 3x3 grid in the corner, relabelled as the
  target class) on a share of the training set.

For every kind of ``cfg.kinds`` and seed, three victims with the same seed, each one trial of the
shared evaluation (``evaluation.evaluate_poisons``): ``clean`` (the true labels, no trigger: what
the bad data costs; one per seed, shared by the kinds), and on the same bad set ``plain``
(``TrackedLearner``: trained on the bad set, with the training-set loss and accuracy of clean and
bad samples after every epoch) and ``itlm`` (``ITLMLearner``, ``defenses.trimmed_loss``'s
Algorithm 1: ``rounds`` fits from scratch of ``round_epochs`` each, each followed by keeping the
alpha fraction of lowest loss, then the final fit of ``epochs`` on the kept set). The sweep
``alpha_sweep`` repeats ITLM on systematic noise for each alpha of ``alphas`` (the bad fraction
under- and over-estimated), on the first seed.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from ... import data as D
from ... import evaluation as EV
from ... import models as M
from ... import train as T
from ...attacks import badnets
from ...attacks.label_flipping import poison_labels
from ...defenses.trimmed_loss import trimmed_loss_minimization
from ...executor import Trial, run_trials

KINDS = ("random", "systematic", "badnets")
ARMS = ("clean", "plain", "itlm")
#: training recipes (``train.VictimRecipe`` fields): the project's fast victim, and the WRN recipe
#: of Zagoruyko and Komodakis (2016) for the paper profile (ITLM's own is UNCONFIRMED: no code)
RECIPES = {"fast": {},
           "wrn": {"batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, "label_smoothing": 0.0, "warmup": 0.0,
                   "schedule": "steps", "milestones": (0.3, 0.6, 0.8), "lr_decay": 0.2, "crop_pad": 4}}


# --------------------------------------------------------------------------- the bad training set
def bad_set(x: torch.Tensor, y: torch.Tensor, *, kind: str, rate: float, seed: int, target_class: int = 0,
            trigger_size: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training set with ``rate`` bad data of ``kind`` (new tensors: ``x`` and ``y`` stay
    clean): images, labels, and the mask of the samples whose image or label was changed."""
    if kind == "badnets":
        s = badnets.craft_poisons(x, y, rate=rate, target_class=target_class, size=trigger_size, seed=seed)
        bad = torch.zeros(len(y), dtype=torch.bool)
        bad[s.poisoned] = True
        return s.images, s.labels, bad
    variant = {"random": "random", "systematic": "flip"}.get(kind)
    if variant is None:
        raise ValueError(f"unknown bad-data kind {kind!r}; allowed: {', '.join(KINDS)}")
    noisy = torch.as_tensor(poison_labels(y.numpy(), rate, variant, 10, np.random.default_rng(seed))).long()
    return x, noisy, noisy != y


# --------------------------------------------------------------------------- the learners
def _fresh(arch: str) -> torch.nn.Module:
    return M.build_model(arch).to(T.default_device())


@dataclass(frozen=True)
class TrackedLearner(EV.SupervisedLearner):
    """Plain training on the bad set, recording after every epoch each training sample's loss
    and whether it is fitted at its given (possibly bad) label: ``epoch_loss`` and
    ``epoch_fitted`` [epochs, N] (TL-1b)."""

    def train(self, x, y, recipe, seed, *, score=None):
        model = _fresh(self.arch)
        per_epoch = max(1, len(y) // recipe.batch_size)
        losses, fitted = [], []

        def track(step, total):
            if step % per_epoch == 0 or step == total:
                loss, ok = T.per_sample_losses(model, x, y)
                losses.append(loss)
                fitted.append(ok)
        T.train_victim(model, x, y, recipe, seed=seed, desc="plain victim", on_step=track)
        return model, {"epoch_loss": torch.stack(losses), "epoch_fitted": torch.stack(fitted)}


@dataclass(frozen=True)
class ITLMLearner(EV.SupervisedLearner):
    """ITLM (``defenses.trimmed_loss``, Algorithm 1): ``rounds`` fits from scratch of
    ``round_epochs`` each (ModelUpdate, re-initialised: UNCONFIRMED, the paper has no code), each
    followed by keeping the ``alpha`` fraction of lowest loss; then the final fit of the
    recipe's epochs on the last kept set. Diagnostics: ``round_loss`` [rounds, N] (what each trim
    ranked) and ``kept`` [rounds + 1, N]."""
    alpha: float = 1.0
    rounds: int = 1
    round_epochs: float = 1.0

    def _fit(self, x, y, subset, recipe, seed, desc):
        model = _fresh(self.arch)
        return T.train_victim(model, x[subset], y[subset], recipe, seed=seed, desc=desc)

    def train(self, x, y, recipe, seed, *, score=None):
        n = len(y)
        short = replace(recipe, epochs=self.round_epochs)
        result = trimmed_loss_minimization(
            n, self.alpha, self.rounds, lambda _, subset: self._fit(x, y, subset, short, seed, "ITLM round"),
            lambda net: T.per_sample_losses(net, x, y)[0], final_update=False)
        model = self._fit(x, y, torch.as_tensor(result.subsets[-1]), recipe, seed, "ITLM final fit")
        kept = torch.zeros(len(result.subsets), n, dtype=torch.bool)
        for r, s in enumerate(result.subsets):
            kept[r, torch.as_tensor(s)] = True
        return model, {"round_loss": torch.as_tensor(np.stack(result.losses)).float(), "kept": kept}


LEARNER = {"clean": "supervised", "plain": f"{__name__}:TrackedLearner", "itlm": f"{__name__}:ITLMLearner"}


# --------------------------------------------------------------------------- trials
def victim_trial(cfg, arm: str, kind: str, seed: int, *, alpha: float | None = None, stage: str = "victims") -> Trial:
    """The evaluation trial of one victim of ``arm`` (clean / plain / itlm) for the bad data
    ``kind`` drawn with ``seed``. Its result has ``test_accuracy``, ``bad`` [N] (empty of bad
    samples for a clean victim), ``attack_success_rate`` where BadNets is among the kinds, and the
    learner's diagnostics."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
    learner = {"kind": LEARNER[arm], "arch": cfg.model}
    if arm == "itlm":
        learner.update(alpha=float(cfg.alpha_of(kind) if alpha is None else alpha), rounds=cfg.rounds,
                       round_epochs=float(cfg.round_epochs))
    poisons = None if arm == "clean" else {"producer": f"{__name__}:bad_set", "args": _bad_args(cfg, kind, seed)}
    probes = {"test_images": 10 * cfg.test_per_class}
    if "badnets" in cfg.kinds:  # every victim of the kinds' seeds scores the trigger (the clean ones: its base rate)
        probes["trigger"] = {"fn": "poisonrepro.attacks.badnets:apply_trigger", "args": {"size": cfg.trigger_size},
                             "target_class": D.class_index(cfg.target_class)}
    recipe = {**RECIPES[cfg.recipe], "epochs": float(cfg.epochs)}
    return EV.evaluate_poisons({"name": "cifar10", "per_class": cfg.train_per_class}, poisons, learner, recipe, seed,
                               probes, stage=stage)


def _bad_args(cfg, kind: str, seed: int) -> dict:
    args = {"kind": kind, "rate": _rate(cfg, kind), "seed": int(seed)}
    if kind == "badnets":
        args.update(target_class=D.class_index(cfg.target_class), trigger_size=cfg.trigger_size)
    return args


def _rate(cfg, kind: str) -> float:
    return {"random": cfg.random_rate, "systematic": cfg.systematic_rate, "badnets": cfg.backdoor_rate}[kind]


def seeds(cfg) -> list[int]:
    return [cfg.seed + 100 + j for j in range(cfg.victim_seeds)]


def victim_trials(cfg) -> list[Trial]:
    """The clean victims (one per seed: the same for every kind), then every (kind, seed) of
    ``cfg.kinds`` plainly and with ITLM at alpha = 1 - rate."""
    trials = [victim_trial(cfg, "clean", cfg.kinds[0], s) for s in seeds(cfg)]
    for kind in cfg.kinds:
        trials += [victim_trial(cfg, arm, kind, s) for arm in ("plain", "itlm") for s in seeds(cfg)]
    return trials


def sweep_trials(cfg) -> list[Trial]:
    """ITLM on systematic noise (the first seed) at every alpha of ``alphas``."""
    return [victim_trial(cfg, "itlm", "systematic", seeds(cfg)[0], alpha=float(a), stage="alpha_sweep")
            for a in cfg.alphas]


def victims(cfg, cache) -> dict:
    """{kind: {arm: [the result of each seed]}} for the kinds of ``cfg.kinds``, trained (or
    loaded from the cache)."""
    results = iter(run_trials(victim_trials(cfg), cache, desc="victims: clean, plain, ITLM"))
    clean = [next(results) for _ in seeds(cfg)]
    return {kind: {"clean": clean, **{arm: [next(results) for _ in seeds(cfg)] for arm in ("plain", "itlm")}}
            for kind in cfg.kinds}


def alpha_sweep(cfg, cache) -> dict:
    """{alpha: result} for the sweep; the main run's alpha comes from ``victims``."""
    return dict(zip(cfg.alphas, run_trials(sweep_trials(cfg), cache, desc="ITLM alpha sweep")))


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages at ``cfg`` for ``make plan``; runs nothing."""
    P = importlib.import_module("poisonrepro.plan")
    net, shape, n = M.build_model(cfg.model), (3, 32, 32), 10 * cfg.train_per_class
    one = lambda images: float(P.model_train_flops(net, shape, images))  # noqa: E731
    itlm = sum(one(n * cfg.round_epochs * (1 if r == 0 else cfg.alpha_of("systematic"))) for r in range(cfg.rounds)) \
        + one(n * cfg.alpha_of("systematic") * cfg.epochs)
    per_kind = len(seeds(cfg))
    return [{"stage": "clean and plain victims", "trials": (1 + len(cfg.kinds)) * per_kind, "flops_per_trial": one(n * cfg.epochs),
             "basis": f"{n} images x {cfg.epochs} epochs"},
            {"stage": "ITLM victims", "trials": len(cfg.kinds) * per_kind, "flops_per_trial": itlm,
             "basis": f"{cfg.rounds} rounds x {cfg.round_epochs} epochs + the final fit"},
            {"stage": "alpha sweep", "trials": len(cfg.alphas), "flops_per_trial": itlm, "basis": "as an ITLM victim"}]
