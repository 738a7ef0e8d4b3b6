"""Notebook 13, Unlearnable Clusters (J. Zhang, X. Ma, Q. Yi, J. Sang, Y.-G. Jiang, Y. Wang, C. Xu,
CVPR 2023): the experiments of UC-T1, UC-T3, UC-AT, UC-F4 and UC-P, in the label-agnostic setting.

The protections (each a module of ``poisonrepro.attacks``, crafted on the protector's training set,
the first ``train_per_class`` images of each CIFAR-10 class, with its 10 labels where they need labels):

- ``uc``: unlearnable clusters (``attacks.unlearnable_clusters``): K-means on the surrogate's
  features, one generator per cluster, L-inf 16/255; no label;
- ``synper``: synthetic noise (Yu et al. 2022, ``attacks.synthetic_noise``);
- ``emaxn``: error-maximising noise (PGD on the protector's network, ``attacks.error_maximizing``);
- ``eminn``: sample-wise error-minimising noise (Huang et al. 2021, ``attacks.error_minimizing``);
- ``advpoison``: adversarial poisoning, class-targeted (Fowl et al. 2021, ``attacks.error_maximizing``
  with ``targeted=True``);
- ``deepconfuse``: a STAND-IN for DeepConfuse (Feng et al. 2019, ``attacks.deepconfuse``).
The baselines use the budget of their own papers, 8/255; UC the 16/255 of the authors' code.

Stages (each trial through ``poisonrepro.executor``, cached):

1. ``protector``: the protector's network, trained on the clean set with its 10 labels: the
   surrogate of UC (STAND-IN for the paper's ImageNet ResNet-50) and the network of EMaxN and
   AdvPoison;
2. ``protections``: each protection, with the L-inf distance of every spoiled image from its original;
3. ``victims``: evaluation trials (``evaluation.evaluate_poisons``) on the hacker's relabelled set
   (``relabelled``: class c -> c mod n), the protection added to all of it by the producer
   ``availability:poison_training_set``, with a learner of ``poisonrepro.learners``: supervised
   (flip-and-crop, or a defence of UC-T3), adversarial (UC-AT) or SimCLR with a linear probe (UC-F4b).

The strongest baseline is the data's choice: each baseline's victims of ``screen_seeds`` screening
seeds (UC-T1's row) rank them, and the one with the lowest mean accuracy is then trained on the
headline seeds, paired with the clean and UC victims of the same seeds (``strongest_baseline``).
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from ... import evaluation as EV
from ... import learners as L
from ... import models as M
from ... import train as T
from ...attacks import availability as AV
from ...attacks import deepconfuse as DC
from ...attacks import error_maximizing as EMAX
from ...attacks import error_minimizing as EMIN
from ...attacks import synthetic_noise as SN
from ...attacks import unlearnable_clusters as UC
from ...config.unlearnable_clusters import BASELINES, CIFAR10_CLASSES, METHODS
from ... import trained as TR
from ...executor import Trial, run_trials, trial_key
from ...seedwise import run_arms
from ...surrogates import Autocast, build
from . import relabelled as RL

PRODUCER = "poisonrepro.attacks.availability:poison_training_set"
METHOD_NAME = {"clean": "clean", "uc": "UC", "synper": "SynPer", "emaxn": "EMaxN", "eminn": "EMinN",
               "advpoison": "AdvPoison", "deepconfuse": "DeepConfuse (stand-in)"}
#: victim recipes (``train.VictimRecipe`` fields): the project's fast victim, and the authors' target
#: models (stage_2.yaml: SGD lr 0.1, 90 epochs, batch 256; momentum, weight decay and schedule
#: UNCONFIRMED: the project's linear decay, crop 4 and flip)
RECIPES = {"fast": {},
           "uc": {"batch_size": 256, "lr": 0.1, "weight_decay": 5e-4, "label_smoothing": 0.0, "warmup": 0.0,
                  "crop_pad": 4}}


def recipe_fields(cfg, epochs: float | None = None) -> dict:
    return {**RECIPES[cfg.recipe], "epochs": float(cfg.epochs if epochs is None else epochs)}


# --------------------------------------------------------------------------- the protector's network
def protector_trial(*, model: str, recipe: dict, per_class: int, test_per_class: int, seed: int) -> dict:
    """The protector's network on its clean 10-class set: its weights and clean test accuracy."""
    x, y = EV.cifar10_training_set(per_class)
    net = build(model, seed)
    T.train_victim(net, x, y, EV.recipe_from(recipe), seed=seed, desc="the protector's network")
    test_x, test_y = EV.cifar10_test_set(10 * test_per_class)
    acc = T.victim_accuracy(net, test_x, test_y, flip_tta=False)
    return TR.state_artifact(net, test_accuracy=acc)


def protector_trials(cfg) -> list[Trial]:
    return [Trial("protector", f"{__name__}:protector_trial",
                  {"model": cfg.surrogate, "recipe": recipe_fields(cfg, cfg.surrogate_epochs),
                   "per_class": cfg.train_per_class, "test_per_class": cfg.test_per_class, "seed": cfg.seed + 50})]


def load_protector(model: str, key: str) -> nn.Module:
    return TR.load(model, "protector", key, what="the protector's network")


def protector(cfg, cache) -> tuple[dict, str]:
    trials = protector_trials(cfg)
    return run_trials(trials, cache, desc="the protector's network")[0], trial_key(trials[0])


# --------------------------------------------------------------------------- the protections
def protection_trial(*, kind: str, per_class: int, seed: int, eps: float, model: str = "", protector_key: str = "",
                     clusters: int = 10, epochs: float = 1.0, batch_size: int = 512, lr: float = 1e-4, width: int = 16,
                     blocks: int = 2, step_size: float = 0.0, noise_steps: int = 1, train_steps: int = 10,
                     max_rounds: int = 1, stop_error: float = 0.01, emax_steps: int = 1,
                     emax_step_size: float = 0.0, rounds: int = 1, steps: int = 1) -> dict:
    """One protection of ``METHODS`` for the protector's training set, as
    ``availability.noise_artifact`` with its diagnostics, and ``linf_255``: the L-inf distance of
    every spoiled training image from its original, in pixel levels (after clipping)."""
    if kind not in METHODS:
        raise ValueError(f"protection kind={kind!r}: unknown; allowed: {', '.join(METHODS)}")
    x, y = EV.cifar10_training_set(per_class)
    if kind == "uc":
        net = Autocast(load_protector(model, protector_key))
        art = UC.craft_unlearnable_clusters(net.features, x, clusters=clusters, eps=eps, epochs=epochs,
                                            batch_size=batch_size, lr=lr, width=width, blocks=blocks, seed=seed)
    elif kind == "synper":
        art = SN.synthetic_noise(x, y, eps=eps, seed=seed)
    elif kind in ("emaxn", "advpoison"):
        art = EMAX.craft_error_maximizing(Autocast(load_protector(model, protector_key)), x, y, eps=eps,
                                          steps=emax_steps, step_size=emax_step_size, batch_size=batch_size,
                                          targeted=kind == "advpoison", num_classes=CIFAR10_CLASSES, seed=seed,
                                          desc=METHOD_NAME[kind])
    elif kind == "eminn":
        art = EMIN.craft_error_minimizing(Autocast(build(model, seed)), x, y, eps=eps, step_size=step_size,
                                          noise_steps=noise_steps, train_steps=train_steps, max_rounds=max_rounds,
                                          stop_error=stop_error, batch_size=batch_size, seed=seed)
    else:  # deepconfuse
        art = DC.craft_deepconfuse(Autocast(build(model, seed)), x, y, eps=eps, rounds=rounds,
                                   classifier_steps=steps, generator_steps=steps, batch_size=min(batch_size, 256),
                                   seed=seed)
    spoiled = AV.apply_noise(x, y, art)[0]
    art["linf_255"] = (spoiled.short() - x.short()).abs().flatten(1).amax(1).to(torch.uint8)
    return art


def protection_spec(cfg, kind: str, protector_key: str, clusters: int | None = None) -> dict:
    """The trial spec of one protection: only the settings it uses, so that a change to another
    protection's settings keeps its key."""
    spec = {"kind": kind, "per_class": cfg.train_per_class, "seed": cfg.seed + 10 + METHODS.index(kind),
            "eps": cfg.eps}
    if kind == "uc":
        spec.update(eps=cfg.uc_eps, model=cfg.surrogate, protector_key=protector_key,
                    clusters=cfg.clusters if clusters is None else clusters, epochs=cfg.uc_epochs,
                    batch_size=cfg.uc_batch, lr=cfg.uc_lr, width=cfg.generator_width, blocks=cfg.generator_blocks)
    elif kind in ("emaxn", "advpoison"):
        spec.update(model=cfg.surrogate, protector_key=protector_key, emax_steps=cfg.emax_steps,
                    emax_step_size=cfg.emax_step_size, batch_size=cfg.craft_batch)
    elif kind == "eminn":
        spec.update(model=cfg.surrogate, step_size=cfg.step_size, noise_steps=cfg.noise_steps,
                    train_steps=cfg.train_steps, max_rounds=cfg.max_rounds, stop_error=cfg.stop_error,
                    batch_size=cfg.craft_batch)
    elif kind == "deepconfuse":
        spec.update(model=cfg.surrogate, rounds=cfg.confuse_rounds, steps=cfg.confuse_steps,
                    batch_size=cfg.craft_batch)
    return spec


def protection_names(cfg) -> list[str]:
    """Every protection crafted: each method, and UC at each other p of UC-P (``uc:p<p>``)."""
    return list(cfg.methods) + [f"uc:p{p}" for p in cfg.cluster_grid]


def protection_trials(cfg, protector_key: str) -> dict[str, Trial]:
    out = {kind: Trial("protections", f"{__name__}:protection_trial", protection_spec(cfg, kind, protector_key))
           for kind in cfg.methods}
    for p in cfg.cluster_grid:
        out[f"uc:p{p}"] = Trial("protections", f"{__name__}:protection_trial",
                                protection_spec(cfg, "uc", protector_key, clusters=p))
    return out


def protections(cfg, cache, protector_key: str) -> tuple[dict, dict]:
    """{name: artifact} and {name: its cache key}, crafted or loaded."""
    trials = protection_trials(cfg, protector_key)
    results = run_trials(list(trials.values()), cache, desc="the protections")
    return dict(zip(trials, results)), {name: trial_key(t) for name, t in trials.items()}


# --------------------------------------------------------------------------- victims
def seeds(cfg, count: int | None = None, offset: int = 100) -> list[int]:
    """Victim seeds: the headline's (the claims' unit) from ``seed + 100``, the screening's from
    ``seed + 200``: a baseline is screened on seeds the headline does not use."""
    return [cfg.seed + offset + j for j in range(cfg.victim_seeds if count is None else count)]


def victim_trial(cfg, seed: int, *, noise_key: str | None = None, classes: int | None = None,
                 learner: dict | None = None) -> Trial:
    """One victim trained from scratch with ``seed`` on the protector's set relabelled into
    ``classes`` (default: the headline's ``hacker_classes``), with the cached protection
    ``noise_key`` on all of it (None: clean), by ``learner`` (default: supervised, flip-and-crop)."""
    poisons = None
    if noise_key is not None:
        poisons = {"producer": PRODUCER, "args": {"stage": "protections", "key": noise_key}}
    learner = learner or {"kind": L.kind_path("augmented"), "arch": cfg.model, "augmentation": "crop_flip"}
    dataset = {"name": RL.dataset_name(cfg.hacker_classes if classes is None else classes),
               "per_class": cfg.train_per_class}
    return EV.evaluate_poisons(dataset, poisons, learner, recipe_fields(cfg), seed,
                               {"test_images": 10 * cfg.test_per_class})


def defence_learner(cfg, defence: str) -> dict:
    return {"kind": L.kind_path("augmented"), "arch": cfg.model, "augmentation": defence}


def at_learner(cfg, rho: float) -> dict:
    # step size: the radius over the number of steps, so that the steps can reach the boundary
    return {"kind": L.kind_path("adversarial"), "arch": cfg.model, "rho": float(rho), "steps": cfg.at_steps,
            "step_size": float(rho) / 255 / cfg.at_steps}


def simclr_learner(cfg) -> dict:
    # batched views under autocast, as notebook 14's contrastive learners (``learners.contrastive``):
    # about 4 times faster on a CPU than torchvision's per-image views in fp32; changed after the first
    # cpu run, for time (the notebook says so)
    return {"kind": L.kind_path("simclr"), "arch": cfg.model, "epochs": float(cfg.simclr_epochs), "views": "batched",
            "autocast": True}


def screening_arms(cfg, keys: dict) -> dict[str, list[Trial]]:
    """UC-T1's row at ``screen_seeds`` screening seeds: every baseline of ``methods``."""
    screen = seeds(cfg, cfg.screen_seeds, offset=200)
    return {f"screen:{b}": [victim_trial(cfg, s, noise_key=keys[b]) for s in screen]
            for b in cfg.methods if b in BASELINES}


def strongest_baseline(screen: dict[str, list[dict]]) -> str:
    """The baseline whose screening victims have the lowest mean clean accuracy (ties: the first in
    ``BASELINES`` order)."""
    if not screen:
        raise ValueError("no baseline was screened")
    mean = {arm.split(":", 1)[1]: sum(float(r["test_accuracy"]) for r in rs) / len(rs) for arm, rs in screen.items()}
    return min(sorted(mean, key=BASELINES.index), key=lambda b: mean[b])


def arms(cfg, keys: dict, strongest: str) -> dict[str, list[Trial]]:
    """Every arm after the screening, one trial per seed: ``clean``, ``uc`` and the ``strongest``
    baseline on the headline seeds (``baseline:<name>``); UC under each defence (``defence:<d>``),
    under adversarial training with each rho (``at:<rho>:<method>``, with the clean set), relabelled
    into each other n (``relabel:<n>:<clean|uc>``), with SimCLR (``simclr:<method>``) and at each
    other p (``clusters:<p>``)."""
    uc = keys["uc"]
    grid = seeds(cfg, cfg.grid_seeds)
    key = lambda m: None if m == "clean" else keys[m]  # noqa: E731
    out = {"clean": [victim_trial(cfg, s) for s in seeds(cfg)],
           "uc": [victim_trial(cfg, s, noise_key=uc) for s in seeds(cfg)],
           f"baseline:{strongest}": [victim_trial(cfg, s, noise_key=keys[strongest]) for s in seeds(cfg)]}
    for d in cfg.defences:
        out[f"defence:{d}"] = [victim_trial(cfg, s, noise_key=uc, learner=defence_learner(cfg, d)) for s in grid]
    for rho in cfg.at_rhos:
        for m in cfg.at_methods:
            out[f"at:{rho:g}:{m}"] = [victim_trial(cfg, s, noise_key=key(m), learner=at_learner(cfg, rho))
                                      for s in grid]
    for n in cfg.relabel_grid:
        for m in ("clean", "uc"):
            out[f"relabel:{n}:{m}"] = [victim_trial(cfg, s, noise_key=key(m), classes=n) for s in grid]
    for m in cfg.simclr_methods:
        out[f"simclr:{m}"] = [victim_trial(cfg, s, noise_key=key(m), learner=simclr_learner(cfg)) for s in grid]
    for p in cfg.cluster_grid:
        out[f"clusters:{p}"] = [victim_trial(cfg, s, noise_key=keys[f"uc:p{p}"]) for s in grid]
    return out


def run(cfg, cache) -> dict:
    """Everything the report needs: ``protector`` (its result), ``protections`` ({name: artifact}),
    ``strongest`` (the screened baseline), ``victims`` ({arm: [the result of each seed]}), trained
    or loaded from the cache."""
    net, key = protector(cfg, cache)
    made, keys = protections(cfg, cache, key)
    screened = run_arms(screening_arms(cfg, keys), cache, "screening the baselines")
    strongest = strongest_baseline(screened)
    victims = {**screened, **run_arms(arms(cfg, keys, strongest), cache, "victims")}
    return {"protector": net, "protections": made, "strongest": strongest, "victims": victims}


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages at ``cfg`` for ``make plan``; runs nothing. Crafting counts every round up to
    the cap; the strongest baseline is not known before the screening, so any one stands in."""
    P = importlib.import_module("poisonrepro.plan")
    n = 10 * cfg.train_per_class
    flops = lambda arch, images: float(P.model_train_flops(M.build_model(arch), (3, 32, 32), images))  # noqa: E731
    keys = {name: "" for name in protection_names(cfg)}
    baseline = next(b for b in cfg.methods if b in BASELINES)
    grid = {**screening_arms(cfg, keys), **arms(cfg, keys, baseline)}
    victims = sum(len(v) for arm, v in grid.items() if not arm.startswith(("at:", "simclr:")))
    at = sum(len(v) for arm, v in grid.items() if arm.startswith("at:"))
    simclr = sum(len(v) for arm, v in grid.items() if arm.startswith("simclr:"))
    rows = [{"stage": "the protector's network", "trials": 1,
             "flops_per_trial": flops(cfg.surrogate, n * cfg.surrogate_epochs),
             "basis": f"{n} images x {cfg.surrogate_epochs} epochs"}]
    passes = {"uc": n * cfg.uc_epochs, "emaxn": n * cfg.emax_steps, "advpoison": n * cfg.emax_steps,
              "eminn": n * cfg.noise_steps * cfg.max_rounds,
              "deepconfuse": 2 * cfg.confuse_rounds * cfg.confuse_steps * min(cfg.craft_batch, 256)}
    for kind in cfg.methods:
        if kind in passes:
            count = 1 + len(cfg.cluster_grid) if kind == "uc" else 1
            rows.append({"stage": f"protection: {METHOD_NAME[kind]}", "trials": count,
                         "flops_per_trial": flops(cfg.surrogate, passes[kind]),
                         "basis": f"{passes[kind]:,.0f} image passes" + (" (at most)" if kind == "eminn" else "")})
    rows.append({"stage": "victims", "trials": victims, "flops_per_trial": flops(cfg.model, n * cfg.epochs),
                 "basis": f"{n} images x {cfg.epochs} epochs"})
    if at:
        rows.append({"stage": "adversarially trained victims", "trials": at,
                     "flops_per_trial": flops(cfg.model, n * cfg.epochs * (1 + cfg.at_steps)),
                     "basis": f"{n} images x {cfg.epochs} epochs x (1 + {cfg.at_steps} PGD steps)"})
    if simclr:
        rows.append({"stage": "SimCLR victims", "trials": simclr,
                     "flops_per_trial": flops(cfg.model, 2 * n * cfg.simclr_epochs),
                     "basis": f"2 views x {n} images x {cfg.simclr_epochs} epochs"})
    return rows
