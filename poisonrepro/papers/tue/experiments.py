"""Notebook 14, Transferable Unlearnable Examples (Ren et al., ICLR 2023): the experiments of
TUE-LS, TUE-SN, TUE-T2, TUE-TT, TUE-T5, TUE-T6 and TUE-INT.

The protections (each a module of ``poisonrepro.attacks``, crafted on CIFAR-10's first
``train_per_class`` training images of each class with their labels where they use labels):

- ``emn``: sample-wise error-minimising noise (Huang et al. 2021, ``attacks.error_minimizing``);
- ``sn``: synthetic noise (Yu et al. 2022, ``attacks.synthetic_noise``);
- ``ucl``: contrastive poisoning, sample-wise (He et al. 2023, ``attacks.contrastive_poisoning``);
- ``tue``: transferable unlearnable examples (``attacks.tue``: the contrastive min-min with the
  class-wise separability discriminant, SimCLR backbone);
- ``emaxn``: error-maximising noise (Fowl et al. 2021b, ``attacks.error_maximizing``);
- ``tensorclog``, ``alignment``: Shen et al. 2019 and Fowl et al. 2021a (``attacks.tensorclog``,
  ``attacks.alignment``), against the clean surrogate;
- ``deepconfuse``: a STAND-IN for DeepConfuse (Feng et al. 2019, ``attacks.deepconfuse``);
- ``ntga``: an empirical-NTK STAND-IN for NTGA (Yuan and Wu 2021, ``attacks.ntga``).

Stages (each trial through ``poisonrepro.executor``, cached):

1. ``surrogate``: a network trained on the clean set (the fixed model of EMaxN, TensorClog and
   Alignment);
2. ``protections``: each protection, with ``linf_255``, the L-inf distance of every spoiled image
   from its original (pixel levels, after clipping);
3. ``separability``: Yu et al.'s test (``papers.tue.separability``) of the clean images and of every
   protection's perturbations (spoiled minus clean), with each model of ``separability_models``;
4. ``victims``: evaluation trials (``evaluation.evaluate_poisons``) of the protected set with a
   supervised learner (flip and crop), a contrastive learner and its linear probe, or the
   random-feature probe; the swapped (``correspondence.swapped_training_set``) and transferred
   (``correspondence.transferred_training_set``, onto ``svhn_standin``) sets are producers by
   import path.
"""
from __future__ import annotations

import importlib

import numpy as np
import torch
from torch import nn

from ... import data as D
from ... import evaluation as EV
from ... import learners as L
from ... import models as M
from ... import train as T
from ...attacks import alignment as AL
from ...attacks import availability as AV
from ...attacks import contrastive_poisoning as CP
from ...attacks import deepconfuse as DC
from ...attacks import error_maximizing as EMAX
from ...attacks import error_minimizing as EMIN
from ...attacks import ntga as NTGA
from ...attacks import synthetic_noise as SN
from ...attacks import tensorclog as TC
from ...attacks import tue as TUE
from ...cache import ArtifactCache
from ...config.tue import METHODS
from ...executor import Trial, run_trials, trial_key
from ...seedwise import run_arms
from ...surrogates import Autocast, build
from . import correspondence as CO
from . import separability as SEP
from . import svhn_standin as SVHN

PRODUCER = "poisonrepro.attacks.availability:poison_training_set"
SWAPPED = f"{CO.__name__}:swapped_training_set"
TRANSFERRED = f"{CO.__name__}:transferred_training_set"
METHOD_NAME = {"clean": "clean", "emn": "EMN", "sn": "SN", "ucl": "UCL", "tue": "TUE", "emaxn": "EMaxN",
               "tensorclog": "TensorClog", "alignment": "Alignment", "deepconfuse": "DeepConfuse (stand-in)",
               "ntga": "NTGA (stand-in)"}
SSL_NAME = {"simclr": "SimCLR", "moco_v2": "MoCo v2", "simsiam": "SimSiam", "random_features": "random features"}
#: victim recipes (``train.VictimRecipe`` fields): the project's fast victim, and the authors'
#: supervised test (ResNet-18, SGD 0.1, batch 128; momentum, weight decay and schedule UNCONFIRMED)
RECIPES = {"fast": {},
           "tue": {"batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, "label_smoothing": 0.0, "warmup": 0.0,
                   "crop_pad": 4}}
#: the contrastive learners' views: batched torch ops (``learners.contrastive.batched_views``), which
#: make a CPU epoch about twice as fast as torchvision's per-image transforms; they pre-train under
#: autocast as the supervised victims train (bf16 where the processor has it: again 1.7 times faster)
VIEWS = "batched"


def recipe_fields(cfg, epochs: float | None = None) -> dict:
    return {**RECIPES[cfg.recipe], "epochs": float(cfg.epochs if epochs is None else epochs)}


def validation_set(per_class: int, val_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``val_per_class`` CIFAR-10 training images of each class that follow the first
    ``per_class`` (none of them in the protected set): Alignment's and NTGA's validation data."""
    train = D.load_cifar10("train")
    idx = np.sort(np.concatenate([np.flatnonzero(train.y == c)[per_class:per_class + val_per_class]
                                  for c in range(10)]))
    return T.as_nchw(train.x[idx]), torch.as_tensor(train.y[idx]).long()


# --------------------------------------------------------------------------- the surrogate
def surrogate_trial(*, model: str, recipe: dict, per_class: int, seed: int) -> dict:
    """A network trained on the clean set: its weights and training accuracy."""
    x, y = EV.cifar10_training_set(per_class)
    net = build(model, seed)
    T.train_victim(net, x, y, EV.recipe_from(recipe), seed=seed, desc="the clean surrogate")
    acc = T.victim_accuracy(net, x[:2000], y[:2000], flip_tta=False)
    net = net.cpu().to(memory_format=torch.contiguous_format)
    return {**{f"state.{k}": v.contiguous() for k, v in net.state_dict().items()}, "train_accuracy": torch.tensor(acc)}


def surrogate_trials(cfg) -> list[Trial]:
    return [Trial("surrogate", f"{__name__}:surrogate_trial",
                  {"model": cfg.model, "recipe": recipe_fields(cfg, cfg.surrogate_epochs),
                   "per_class": cfg.train_per_class, "seed": cfg.seed + 50})]


def load_surrogate(model: str, key: str, *, trainable: bool = False) -> nn.Module:
    """The clean surrogate of ``key`` in eval mode; its parameters require gradients only where
    ``trainable`` (TensorClog's and Alignment's objectives are gradients of its parameters)."""
    def missing():
        raise FileNotFoundError("the clean surrogate is not in the artifact cache: run experiments.surrogate first, "
                                "with the same POISONREPRO_ARTIFACTS")
    state = ArtifactCache().tensors("surrogate", key, missing)
    net = build(model, 0)
    net.load_state_dict({k[len("state."):]: v for k, v in state.items() if k.startswith("state.")})
    return net.eval().requires_grad_(trainable)


# --------------------------------------------------------------------------- the protections
def protection_trial(*, kind: str, per_class: int, seed: int, eps: float, step_size: float, model: str = "",
                     encoder: str = "", surrogate_key: str = "", batch_size: int = 512, val_per_class: int = 0,
                     noise_steps: int = 1, train_steps: int = 10, max_rounds: int = 1, stop_error: float = 0.01,
                     steps: int = 1, rounds: int = 1, block: int = 512, ssl_weight: float = 0.0,
                     csd_weight: float = 0.1) -> dict:
    """One protection of ``METHODS`` for the training set, as ``availability.noise_artifact`` with
    its diagnostics, and ``linf_255``: the L-inf distance of every spoiled training image from its
    original, in pixel levels (after clipping)."""
    if kind not in METHODS:
        raise ValueError(f"protection kind={kind!r}: unknown; allowed: {', '.join(METHODS)}")
    x, y = EV.cifar10_training_set(per_class)
    name = METHOD_NAME[kind]
    if kind == "emn":
        art = EMIN.craft_error_minimizing(Autocast(build(model, seed)), x, y, eps=eps, step_size=step_size,
                                          noise_steps=noise_steps, train_steps=train_steps, max_rounds=max_rounds,
                                          stop_error=stop_error, batch_size=batch_size, seed=seed, desc=name)
    elif kind == "sn":
        art = SN.synthetic_noise(x, y, eps=eps, seed=seed)
    elif kind == "ucl":
        art = CP.craft_contrastive_poisoning(build(encoder, seed), x, eps=eps, step_size=step_size,
                                             noise_steps=noise_steps, train_steps=train_steps, rounds=rounds,
                                             batch_size=batch_size, seed=seed, desc=name)
    elif kind == "tue":
        art = TUE.craft_tue(build(encoder, seed), x, y, eps=eps, step_size=step_size, noise_steps=noise_steps,
                            train_steps=train_steps, rounds=rounds, batch_size=batch_size, ssl_weight=ssl_weight,
                            csd_weight=csd_weight, seed=seed, desc=name)
    elif kind == "emaxn":
        art = EMAX.craft_error_maximizing(Autocast(load_surrogate(model, surrogate_key)), x, y, eps=eps, steps=steps,
                                          step_size=step_size, batch_size=batch_size, seed=seed, desc=name)
    elif kind == "tensorclog":
        art = TC.craft_tensorclog(load_surrogate(model, surrogate_key, trainable=True), x, y, eps=eps, steps=steps,
                                  step_size=step_size, batch_size=min(batch_size, 256), seed=seed, desc=name)
    elif kind == "alignment":
        x_val, y_val = validation_set(per_class, val_per_class)
        # the target gradient is over the surrogate's trainable parameters
        art = AL.craft_alignment(load_surrogate(model, surrogate_key, trainable=True), x, y, x_val, y_val, eps=eps, steps=steps,
                                 batch_size=batch_size, seed=seed, desc=name)
    elif kind == "deepconfuse":
        art = DC.craft_deepconfuse(Autocast(build(model, seed)), x, y, eps=eps, rounds=rounds,
                                   classifier_steps=steps, generator_steps=steps, batch_size=min(batch_size, 256),
                                   seed=seed, desc=name)
    else:  # ntga
        x_val, y_val = validation_set(per_class, val_per_class)
        art = NTGA.craft_ntga(x, y, x_val, y_val, eps=eps, steps=steps, block=block, seed=seed, desc=name)
    spoiled = AV.apply_noise(x, y, art)[0]
    art["linf_255"] = (spoiled.short() - x.short()).abs().flatten(1).amax(1).to(torch.uint8)
    return art


def protection_spec(cfg, kind: str, surrogate_key: str) -> dict:
    """The trial spec of one protection: only the settings it uses, so that a change to another
    protection's settings keeps its key."""
    spec = {"kind": kind, "per_class": cfg.train_per_class, "seed": cfg.seed + 10 + METHODS.index(kind),
            "eps": cfg.eps, "step_size": cfg.step_size}
    if kind == "emn":
        spec.update(model=cfg.model, noise_steps=cfg.noise_steps, train_steps=cfg.train_steps,
                    max_rounds=cfg.max_rounds, stop_error=cfg.stop_error, batch_size=cfg.craft_batch)
    elif kind in ("ucl", "tue"):
        spec.update(encoder=cfg.encoder, noise_steps=cfg.cl_noise_steps, train_steps=cfg.cl_train_steps,
                    rounds=cfg.cl_rounds, batch_size=cfg.craft_batch)
        if kind == "tue":
            spec.update(noise_steps=cfg.tue_noise_steps, ssl_weight=cfg.tue_ssl_weight, csd_weight=cfg.tue_csd_weight)
    elif kind in ("emaxn", "tensorclog", "alignment"):
        steps = {"emaxn": cfg.emax_steps, "tensorclog": cfg.clog_steps, "alignment": cfg.align_steps}[kind]
        spec.update(model=cfg.model, surrogate_key=surrogate_key, steps=steps, batch_size=cfg.craft_batch)
        if kind == "alignment":
            spec.update(val_per_class=cfg.val_per_class)
    elif kind == "deepconfuse":
        spec.update(model=cfg.model, rounds=cfg.confuse_rounds, steps=cfg.confuse_steps, batch_size=cfg.craft_batch)
    elif kind == "ntga":
        spec.update(steps=cfg.ntga_steps, block=cfg.ntga_block, val_per_class=cfg.val_per_class)
    return spec


def protection_trials(cfg, surrogate_key: str) -> dict[str, Trial]:
    return {kind: Trial("protections", f"{__name__}:protection_trial", protection_spec(cfg, kind, surrogate_key))
            for kind in cfg.methods}


# --------------------------------------------------------------------------- separability (TUE-LS)
def perturbations(per_class: int, artifact: dict | None) -> torch.Tensor:
    """What the separability test fits: each spoiled image minus its original (floats on the [0, 1]
    scale, after clipping), or the clean images themselves (``artifact`` None)."""
    x, y = EV.cifar10_training_set(per_class)
    if artifact is None:
        return x.float() / 255
    return (AV.apply_noise(x, y, artifact)[0].float() - x.float()) / 255


def separability_trial(*, per_class: int, protection_key: str | None, model: str, steps: int, seed: int) -> dict:
    """Yu et al.'s test of one set (module docstring, stage 3): the training accuracy of ``model``."""
    artifact = None
    if protection_key is not None:
        artifact = ArtifactCache().tensors("protections", protection_key, AV._missing_noise)
    _, y = EV.cifar10_training_set(per_class)
    acc = SEP.separability(perturbations(per_class, artifact), y, model=model, steps=steps, seed=seed)
    return {"train_accuracy": torch.tensor(acc)}


#: the sets of the deck's separability table: every model of ``separability_models`` fits these; the
#: other protections get the linear model only (a set that is not separable takes the fit's every
#: iteration, about 50 s for the linear model and 150 s for the two-layer network at cpu)
DECK_SETS = ("clean", "deepconfuse", "ntga", "emn", "emaxn")


def separability_trials(cfg, keys: dict) -> dict[tuple[str, str], Trial]:
    """{(set, model): trial} for the clean images and every protection: the linear model for each,
    the other models of ``separability_models`` for the deck's sets."""
    out = {}
    for name in ("clean",) + tuple(cfg.methods):
        for model in cfg.separability_models:
            if model != "linear" and name not in DECK_SETS:
                continue
            out[(name, model)] = Trial("separability", f"{__name__}:separability_trial",
                                       {"per_class": cfg.train_per_class, "model": model,
                                        "protection_key": None if name == "clean" else keys[name],
                                        "steps": cfg.separability_steps, "seed": cfg.seed})
    return out


# --------------------------------------------------------------------------- victims
def seeds(cfg, count: int | None = None) -> list[int]:
    """Victim seeds from ``seed + 100``: the headline's first ``victim_seeds``; a grid's first one."""
    return [cfg.seed + 100 + j for j in range(cfg.victim_seeds if count is None else count)]


def supervised_learner(cfg) -> dict:
    return {"kind": L.kind_path("augmented"), "arch": cfg.model, "augmentation": "crop_flip"}


def ssl_learner(cfg, name: str) -> dict:
    if name == "random_features":
        return {"kind": L.kind_path(name), "arch": cfg.encoder}
    return {"kind": L.kind_path(name), "arch": cfg.encoder, "epochs": float(cfg.ssl_epochs), "views": VIEWS,
            "autocast": True}


def victim_trial(cfg, seed: int, learner: dict, *, noise_key: str | None = None, swap: str = "original",
                 transfer: bool = False) -> Trial:
    """One victim trained from scratch with ``seed`` by ``learner`` on CIFAR-10's protected set (the
    cached protection ``noise_key``; None: clean), its perturbations given by ``swap``; or, with
    ``transfer``, on the SVHN stand-in carrying the CIFAR-10 perturbations."""
    poisons = None
    if noise_key is not None:
        args = {"stage": "protections", "key": noise_key}
        if transfer:
            poisons = {"producer": TRANSFERRED, "args": {**args, "source_per_class": cfg.train_per_class}}
        elif swap != "original":
            poisons = {"producer": SWAPPED, "args": {**args, "swap": swap, "seed": cfg.seed}}
        else:
            poisons = {"producer": PRODUCER, "args": args}
    if transfer:
        dataset, test = {"name": SVHN.DATASET, "per_class": cfg.transfer_per_class}, 10 * cfg.test_per_class
    else:
        dataset, test = {"name": "cifar10", "per_class": cfg.train_per_class}, 10 * cfg.test_per_class
    return EV.evaluate_poisons(dataset, poisons, learner, recipe_fields(cfg), seed, {"test_images": test})


def arms(cfg, keys: dict) -> dict[str, list[Trial]]:
    """Every victim arm, one trial per seed:

    - ``sup:<set>``: supervised victims on the clean set (the headline's seeds) and on each protection
      (one seed): TUE-SN and TUE-TT's supervised row;
    - ``sup:<method>:<swap>``: each of ``swap_methods`` swapped intra- and inter-class (TUE-T2, T5);
    - ``transfer:<set>``: the SVHN stand-in, clean and with each of ``transfer_methods`` (TUE-T6);
    - ``<learner>:<set>``: each contrastive learner on the clean set, EMN and TUE (the headline's
      seeds) and the other protections of TUE-TT (one seed); ``random_features:clean`` (the
      headline's seeds): the probe a contrastive learner must beat."""
    sup = supervised_learner(cfg)
    headline, one = seeds(cfg), seeds(cfg, 1)
    out = {"sup:clean": [victim_trial(cfg, s, sup) for s in headline]}
    for m in cfg.methods:
        out[f"sup:{m}"] = [victim_trial(cfg, s, sup, noise_key=keys[m]) for s in one]
    for m in cfg.swap_methods:
        for swap in CO.SWAPS[1:]:
            out[f"sup:{m}:{swap}"] = [victim_trial(cfg, s, sup, noise_key=keys[m], swap=swap) for s in one]
    out["transfer:clean"] = [victim_trial(cfg, s, sup, transfer=True) for s in one]
    for m in cfg.transfer_methods:
        out[f"transfer:{m}"] = [victim_trial(cfg, s, sup, noise_key=keys[m], transfer=True) for s in one]
    out["random_features:clean"] = [victim_trial(cfg, s, ssl_learner(cfg, "random_features")) for s in headline]
    for name in cfg.ssl_learners:
        learner = ssl_learner(cfg, name)
        out[f"{name}:clean"] = [victim_trial(cfg, s, learner) for s in headline]
        for m in ("emn", "tue"):
            out[f"{name}:{m}"] = [victim_trial(cfg, s, learner, noise_key=keys[m]) for s in headline]
        for m in ("sn", "ucl"):
            if m in cfg.methods:
                out[f"{name}:{m}"] = [victim_trial(cfg, s, learner, noise_key=keys[m]) for s in one]
    return out


def run(cfg, cache) -> dict:
    """Everything the report needs: ``surrogate`` (its result), ``protections`` ({name: artifact}),
    ``separability`` ({(set, model): training accuracy}), ``victims`` ({arm: [the result of each
    seed]}), computed or loaded from the cache."""
    trials = surrogate_trials(cfg)
    surrogate = run_trials(trials, cache, desc="the clean surrogate")[0]
    made = protection_trials(cfg, trial_key(trials[0]))
    protections = dict(zip(made, run_trials(list(made.values()), cache, desc="the protections")))
    keys = {name: trial_key(t) for name, t in made.items()}
    sep = separability_trials(cfg, keys)
    separable = {k: float(r["train_accuracy"])
                 for k, r in zip(sep, run_trials(list(sep.values()), cache, desc="the separability test"))}
    victims = run_arms(arms(cfg, keys), cache, "victims")
    return {"surrogate": surrogate, "protections": protections, "separability": separable, "victims": victims}


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages at ``cfg`` for ``make plan``; runs nothing. Crafting counts every step."""
    P = importlib.import_module("poisonrepro.plan")
    n = 10 * cfg.train_per_class
    flops = lambda arch, images: float(P.model_train_flops(M.build_model(arch), (3, 32, 32), images))  # noqa: E731
    keys = {name: "" for name in cfg.methods}
    grid = arms(cfg, keys)
    sup = sum(len(v) for arm, v in grid.items() if arm.startswith("sup:"))
    transfer = sum(len(v) for arm, v in grid.items() if arm.startswith("transfer:"))
    ssl = sum(len(v) for arm, v in grid.items() if arm.split(":")[0] in cfg.ssl_learners)
    rows = [{"stage": "the clean surrogate", "trials": 1, "flops_per_trial": flops(cfg.model, n * cfg.surrogate_epochs),
             "basis": f"{n} images x {cfg.surrogate_epochs} epochs"}]
    cl_batches = cfg.cl_rounds * (cfg.cl_train_steps * cfg.craft_batch + cfg.cl_noise_steps * n)
    passes = {"emn": (cfg.model, n * cfg.noise_steps * cfg.max_rounds), "emaxn": (cfg.model, n * cfg.emax_steps),
              "tensorclog": (cfg.model, 2 * n * cfg.clog_steps), "alignment": (cfg.model, 2 * n * cfg.align_steps),
              "deepconfuse": (cfg.model, 2 * cfg.confuse_rounds * cfg.confuse_steps * min(cfg.craft_batch, 256)),
              "ucl": (cfg.encoder, 2 * cl_batches), "tue": (cfg.encoder, 2 * cfg.cl_rounds * cfg.cl_train_steps
                                                           * cfg.craft_batch)}
    for kind in cfg.methods:
        if kind in passes:
            arch, images = passes[kind]
            rows.append({"stage": f"protection: {METHOD_NAME[kind]}", "trials": 1, "flops_per_trial": flops(arch, images),
                         "basis": f"{images:,.0f} image passes" + (" (at most)" if kind == "emn" else "")})
    rows.append({"stage": "supervised victims", "trials": sup, "flops_per_trial": flops(cfg.model, n * cfg.epochs),
                 "basis": f"{n} images x {cfg.epochs} epochs"})
    rows.append({"stage": "supervised victims on the SVHN stand-in", "trials": transfer,
                 "flops_per_trial": flops(cfg.model, 10 * cfg.transfer_per_class * cfg.epochs),
                 "basis": f"at most {10 * cfg.transfer_per_class} images x {cfg.epochs} epochs"})
    rows.append({"stage": "contrastive victims", "trials": ssl,
                 "flops_per_trial": flops(cfg.encoder, 2 * n * cfg.ssl_epochs),
                 "basis": f"2 views x {n} images x {cfg.ssl_epochs} epochs"})
    return rows
