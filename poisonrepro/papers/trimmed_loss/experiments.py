"""Notebook 09, iterative trimmed loss minimisation (Shen and Sanghavi, ICML 2019): the experiments
of TL-1.

A CIFAR-10 training subset is spoiled by one of three kinds of bad data, each drawn anew for
every seed:

- ``random``: a share of the labels redrawn uniformly from the ten classes (``label_flipping``'s
  "random" variant: a tenth of them keep their class, and only the changed ones count as bad);
- ``systematic``: a share of every class relabelled as the next class, y -> y + 1 mod 10 (the
  "flip" variant; the paper's example moves automobiles to airplanes);
- ``badnets``: a BadNets backdoor (``attacks.badnets``: a 3x3 grid in the corner, relabelled as the
  target class) on a share of the training set.

For every kind and seed, three victims with the same seed: ``clean`` (the true labels, no trigger:
what the bad data costs; one per seed, shared by the kinds), and on the same bad set ``plain`` (trained on the bad set, with the
training-set loss and accuracy of clean and bad samples after every epoch) and ``itlm``
(``defenses.trimmed_loss``, Algorithm 1: ``rounds`` fits from scratch of ``round_epochs`` each,
each followed by keeping the alpha fraction of lowest loss, then the final fit of ``epochs`` on the
kept set). Each victim is one trial through ``poisonrepro.executor``. The sweep ``alpha_sweep``
repeats ITLM on systematic noise for each alpha of ``alphas`` (the bad fraction under- and
over-estimated), on the first seed.
"""
from __future__ import annotations

import importlib
import numpy as np
import torch

from ... import data as D
from ... import models as M
from ... import train as T
from ...attacks import backdoor_poisoning as BP
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


# --------------------------------------------------------------------------- data
split = D.cifar10_split  # the clean training and test subsets (uint8 NCHW), drawn by ``seed``


def bad_set(kind: str, rate: float, x: torch.Tensor, y: torch.Tensor, seed: int, *, target_class: int = 0,
            trigger_size: int = 3) -> dict:
    """The training set with ``rate`` bad data of ``kind`` (a copy: ``x`` and ``y`` stay clean);
    ``bad`` marks the samples whose image or label was changed."""
    if kind == "badnets":
        s = badnets.craft_poisons(x, y, rate=rate, target_class=target_class, size=trigger_size, seed=seed)
        bad = torch.zeros(len(y), dtype=torch.bool)
        bad[s.poisoned] = True
        return {"x": s.images, "y": s.labels, "bad": bad}
    variant = {"random": "random", "systematic": "flip"}.get(kind)
    if variant is None:
        raise ValueError(f"unknown bad-data kind {kind!r}; allowed: {', '.join(KINDS)}")
    noisy = torch.as_tensor(poison_labels(y.numpy(), rate, variant, 10, np.random.default_rng(seed))).long()
    return {"x": x, "y": noisy, "bad": noisy != y}


def _recipe(name: str, epochs: float) -> T.VictimRecipe:
    return T.VictimRecipe(epochs=epochs, **RECIPES[name])


def _fit(model_name: str, recipe: str, epochs: float, x, y, seed: int, on_epoch=None):
    """A victim trained from scratch; ``on_epoch(epoch, model)`` after every epoch."""
    model = M.build_model(model_name).to(T.default_device())
    r = _recipe(recipe, epochs)
    per_epoch = max(1, len(y) // r.batch_size)
    hook = None if on_epoch is None else \
        (lambda step, total: on_epoch(step // per_epoch, model) if step % per_epoch == 0 or step == total else None)
    return T.train_victim(model, x, y, r, seed=seed, desc="victim", on_step=hook)


def _scores(model, d: dict, kind: str, target_class: int, trigger_size: int) -> dict:
    """Test accuracy and, for the backdoor, the attack success rate on the triggered test images."""
    out = {"test_accuracy": torch.tensor(T.victim_accuracy(model, d["test_x"], d["test_y"], flip_tta=False))}
    if kind == "badnets":
        tx, _ = BP.triggered_test_set(d["test_x"], d["test_y"], lambda im, g: badnets.apply_trigger(im, size=trigger_size),
                                      target_class)
        pred = T.predict_logits(model, T.to_unit(tx.to(next(model.parameters()).device))).argmax(1).cpu()
        out["attack_success_rate"] = torch.tensor(BP.attack_success_rate(pred, target_class))
    return out


# --------------------------------------------------------------------------- trials
def victim_trial(*, arm: str, kind: str, rate: float, seed: int, data_seed: int, per_class: int, test_per_class: int,
                 model: str, recipe: str, epochs: float, rounds: int = 0, round_epochs: float = 0,
                 alpha: float = 1.0, target_class: int = 0, trigger_size: int = 3) -> dict:
    """One victim of ``arm`` (clean / plain / itlm) for the bad data ``kind`` drawn with ``seed``.

    Returns ``test_accuracy`` (and ``attack_success_rate`` for the backdoor), ``bad`` [N]; plain
    also ``epoch_loss`` [E, N] and ``epoch_fitted`` [E, N] (every training sample after every
    epoch, at its bad label); itlm ``round_loss`` [R, N] (what each trim ranked) and ``kept`` [R + 1, N]."""
    d = split(per_class, test_per_class, data_seed)
    b = bad_set(kind, rate, d["x"], d["y"], seed, target_class=target_class, trigger_size=trigger_size)
    out = {"bad": b["bad"]}
    if arm == "clean":
        net = _fit(model, recipe, epochs, d["x"], d["y"], seed)
    elif arm == "plain":
        losses, fitted = [], []

        def track(epoch, net):
            loss, ok = T.per_sample_losses(net, b["x"], b["y"])
            losses.append(loss)
            fitted.append(ok)
        net = _fit(model, recipe, epochs, b["x"], b["y"], seed, on_epoch=track)
        out.update(epoch_loss=torch.stack(losses), epoch_fitted=torch.stack(fitted))
    elif arm == "itlm":
        n = len(b["y"])

        def update(_, subset, epochs=round_epochs):  # Algorithm 1's ModelUpdate: a fit from scratch
            return _fit(model, recipe, epochs, b["x"][subset], b["y"][subset], seed)

        result = trimmed_loss_minimization(n, alpha, rounds, update, lambda net: T.per_sample_losses(net, b["x"], b["y"])[0],
                                           final_update=False)
        net = update(None, result.subsets[-1], epochs)  # the final fit, at the full schedule
        kept = torch.zeros(len(result.subsets), n, dtype=torch.bool)
        for r, s in enumerate(result.subsets):
            kept[r, torch.as_tensor(s)] = True
        out.update(round_loss=torch.as_tensor(np.stack(result.losses)).float(), kept=kept)
    else:
        raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
    out.update(_scores(net, d, kind, target_class, trigger_size))
    return out


def _rate(cfg, kind: str) -> float:
    return {"random": cfg.random_rate, "systematic": cfg.systematic_rate, "badnets": cfg.backdoor_rate}[kind]


def _common(cfg) -> dict:
    return {"data_seed": cfg.seed, "per_class": cfg.train_per_class, "test_per_class": cfg.test_per_class,
            "model": cfg.model, "recipe": cfg.recipe, "epochs": cfg.epochs}


def seeds(cfg) -> list[int]:
    return [cfg.seed + 100 + j for j in range(cfg.victim_seeds)]


def _kind_spec(cfg, kind: str) -> dict:
    spec = {**_common(cfg), "kind": kind, "rate": _rate(cfg, kind)}
    if kind == "badnets":
        spec.update(target_class=D.class_index(cfg.target_class), trigger_size=cfg.trigger_size)
    return spec


def victim_trials(cfg) -> list[Trial]:
    """The clean victims (one per seed: the same for every kind, trained as the backdoor's so that
    they score the trigger too), then every (kind, seed) plainly and with ITLM at alpha = 1 - rate."""
    fn = f"{__name__}:victim_trial"
    trials = [Trial("victims", fn, {**_kind_spec(cfg, "badnets"), "arm": "clean", "seed": s}) for s in seeds(cfg)]
    for kind in KINDS:
        itlm = {"rounds": cfg.rounds, "round_epochs": cfg.round_epochs, "alpha": cfg.alpha_of(kind)}
        trials += [Trial("victims", fn, {**_kind_spec(cfg, kind), "arm": "plain", "seed": s}) for s in seeds(cfg)]
        trials += [Trial("victims", fn, {**_kind_spec(cfg, kind), **itlm, "arm": "itlm", "seed": s}) for s in seeds(cfg)]
    return trials


def sweep_trials(cfg) -> list[Trial]:
    """ITLM on systematic noise (the first seed) at every alpha of ``alphas``."""
    spec = {**_common(cfg), "kind": "systematic", "rate": cfg.systematic_rate, "arm": "itlm", "seed": seeds(cfg)[0],
            "rounds": cfg.rounds, "round_epochs": cfg.round_epochs}
    return [Trial("alpha_sweep", f"{__name__}:victim_trial", {**spec, "alpha": float(a)}) for a in cfg.alphas]


def victims(cfg, cache) -> dict:
    """{kind: {arm: [the result of each seed]}}, trained (or loaded from the cache)."""
    results = iter(run_trials(victim_trials(cfg), cache, desc="victims: clean, plain, ITLM"))
    clean = [next(results) for _ in seeds(cfg)]
    return {kind: {"clean": clean, **{arm: [next(results) for _ in seeds(cfg)] for arm in ("plain", "itlm")}}
            for kind in KINDS}


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
    return [{"stage": "clean and plain victims", "trials": (1 + len(KINDS)) * per_kind, "flops_per_trial": one(n * cfg.epochs),
             "basis": f"{n} images x {cfg.epochs} epochs"},
            {"stage": "ITLM victims", "trials": len(KINDS) * per_kind, "flops_per_trial": itlm,
             "basis": f"{cfg.rounds} rounds x {cfg.round_epochs} epochs + the final fit"},
            {"stage": "alpha sweep", "trials": len(cfg.alphas), "flops_per_trial": itlm, "basis": "as an ITLM victim"}]
