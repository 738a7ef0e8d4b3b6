"""Notebook 03, MetaPoison (Huang et al., NeurIPS 2020): the experiments of MP-1.

The protocol of the authors' code (wronnyhuang/metapoison; ``attacks.metapoison`` names its
settings): the poisons are the first training images of the poison class (dog), labels kept; the
target a test image of the target class (bird), to be classified as the poison class. For every
target and budget (0.1%, 0.5%, 1% of the training set) the poisons are crafted on a staggered
ensemble of M surrogates trained from scratch on the clean set (built once, a copy per craft, so
every craft starts from the same ensemble; each unrolled batch of 125 holds the training set's
share of poisons, as a victim's batch does: ``unrolled_poisons``), then ``victim_seeds`` victims
are trained from scratch on each poisoned set with the surrogates' recipe (SGD, no momentum, no
augmentation), and clean victims with the same seeds give the base rate: how often the target goes
to the poison class without any poison (each poisoned victim is paired with the clean victim of
its seed).

The fine-tuning comparison (Fig. 3): a network pretrained on the clean set is fine-tuned (every
layer) on a set with MetaPoison poisons crafted for fine-tuning (the ensemble: copies of the
pretrained network staggered over the fine-tuning epochs), with Poison Frogs poisons (feature
collision on the pretrained network, watermarked) of the same number, or with none. The number
of poisons is equal, their perturbations are not: MetaPoison's are bounded (8/255 additive over a
colour shift of 0.04), Poison Frogs' 30% watermark has no L-inf bound (``finetune`` measures both).

Stages: ``ensemble`` (the staggered surrogates, cached), ``craft`` (one per budget), ``pretrained``,
``finetune``; the victims are trials through ``poisonrepro.executor``.
"""
from __future__ import annotations

import copy
import importlib
import math

import numpy as np
import pandas as pd
import torch

from ... import data as D
from ... import evaluation as EV
from ... import models as M
from ... import train as T
from ...attacks import feature_collision as FC
from ...attacks import metapoison as MP
from ...cache import ArtifactCache, stage_key
from ...executor import run_trials

ARCH = "convnet_bn"  # the code's default ConvNetBN (16-32-32-64-64 with BN); the project's ConvNet-BN
BATCH, LR = 125, 0.1  # parse.py: batchsize 125, lrnrate 0.1
PF_BETA_255, PF_LR = 0.1, 0.05  # Poison Frogs' end-to-end beta (0-255 scale, its Sec. 4.2); notebook 01's step


def _key(cfg, stage, **extra) -> str:
    return stage_key(cfg, stage, __name__, **extra)


# --------------------------------------------------------------------------- data
# the shared evaluation's CIFAR-10 (``poisonrepro.evaluation``)


def prepare_data(cfg) -> dict:
    """The training set, the poison positions (the first poison-class images, as the code) and
    the targets: random test images of the target class."""
    x, y = EV.cifar10_training_set(cfg.train_per_class)
    t, s = D.class_index(cfg.target_class), D.class_index(cfg.poison_class)
    test = D.load_cifar10("test")
    rng = np.random.default_rng([cfg.seed, 3])
    target_index = np.sort(rng.choice(np.flatnonzero(test.y == t), cfg.n_targets, replace=False))
    return {"train_x": x, "train_y": y, "target_label": t, "poison_label": s,
            "poison_pos": torch.nonzero(y == s).flatten(), "target_index": target_index,
            "targets": T.as_nchw(test.x[target_index])}


def recipe_fields(cfg, epochs: int | None = None) -> dict:
    """The code's training recipe as ``train.VictimRecipe`` fields: SGD lr 0.1 without momentum,
    batch 125, no weight decay, augmentation or label smoothing, a linear warm-up over
    ``warmup_epochs``, x0.1 at epochs 100 and 150 where the training is that long."""
    epochs = cfg.epochs if epochs is None else epochs
    milestones = [m / epochs for m in (100, 150) if m < epochs]
    warmup = min(cfg.warmup_epochs, epochs / 2) / epochs  # (a dry run's single epoch: half of it)
    return {"epochs": epochs, "batch_size": BATCH, "lr": LR, "momentum": 0.0, "nesterov": False,
            "weight_decay": 0.0, "label_smoothing": 0.0, "crop_pad": 0, "flip": False, "schedule": "steps",
            "warmup": warmup, "milestones": milestones}


def unrolled_poisons(cfg, budget: float) -> int:
    """Poisons per unrolled batch of 125 at ``budget``: the training set's share of poisons, as
    the victims' batches hold them (``metapoison.poisons_per_unrolled_batch``); crafting then runs
    one unrolled objective per such batch."""
    return MP.poisons_per_unrolled_batch(cfg.poisons_at(budget), 10 * cfg.train_per_class, BATCH)




# --------------------------------------------------------------------------- the ensemble
def ensemble(cfg, data, cache: ArtifactCache) -> MP.StaggeredEnsemble:
    """The staggered ensemble (member m pretrained to epoch floor(m T / M) on the clean set),
    cached as its members' weights; a fresh copy for every craft."""
    def build(pretrain=True):
        return MP.StaggeredEnsemble(lambda: M.build_model(ARCH), data["train_x"], data["train_y"],
                                    members=cfg.members, epochs=cfg.surrogate_epochs, batch_size=BATCH, lr=LR,
                                    warmup_epochs=cfg.warmup_epochs, milestones=(100, 150),
                                    steps_per_advance=cfg.advance_steps or None, seed=cfg.seed, pretrain=pretrain)

    def run():
        ens = build()
        return {f"{m}.{k}": v for m, member in enumerate(ens.members) for k, v in member.state_dict().items()}
    states = cache.tensors("ensemble", _key(cfg, "ensemble"), run)
    ens = build(pretrain=False)  # positions set, weights loaded below
    for m, member in enumerate(ens.members):
        member.load_state_dict({k[len(f"{m}."):]: v for k, v in states.items() if k.startswith(f"{m}.")})
    return ens


# --------------------------------------------------------------------------- crafting
def craft(cfg, data, surrogates: MP.StaggeredEnsemble, budget: float, cache: ArtifactCache) -> dict:
    """MetaPoison poisons for every target at ``budget``: ``poisons`` uint8 [T, k, C, H, W] (the
    pixels the victims train on), the additive part's and the colour grid's measured budgets
    (``linf_255`` over the recoloured base, ``color`` the largest grid offset), and the meta-loss
    per crafting step ``adversarial_loss`` [T, steps]."""
    k = cfg.poisons_at(budget)
    positions = data["poison_pos"][:k]

    def run():
        out = {"poisons": [], "linf_255": [], "color": [], "adversarial_loss": []}
        bar = T.progress(total=cfg.n_targets, desc=f"MetaPoison at {100 * budget:g}%")
        for t in range(cfg.n_targets):
            result = MP.metapoison(data["train_x"], data["train_y"], positions, data["targets"][t],
                                   target_class=data["target_label"], ensemble=copy.deepcopy(surrogates),
                                   unroll_steps=cfg.unroll_steps, steps=cfg.craft_steps, eps=cfg.eps,
                                   color_eps=cfg.color_eps, train_batch_size=BATCH, train_lr=LR,
                                   poisons_per_batch=unrolled_poisons(cfg, budget), seed=cfg.seed + t)
            out["poisons"].append((result.poisons * 255).round().to(torch.uint8))
            # the additive budget is relative to the recoloured base (the threat model of the code)
            recoloured = result.craft.transformed(data["train_x"][positions])
            out["linf_255"].append(255 * (result.poisons - recoloured).abs().flatten(1).amax(1))
            grids = result.craft.transform_params
            out["color"].append(grids.abs().flatten(1).amax(1) if grids is not None else torch.zeros(k))
            out["adversarial_loss"].append(result.adversarial_loss)
            bar.update(1)
        bar.close()
        return {name: torch.stack(v) for name, v in out.items()}
    return cache.tensors("craft", _key(cfg, "craft", budget=budget), run)


# --------------------------------------------------------------------------- victims (trials)
def victim_spec(cfg, seed: int, targets: list, *, budget: float | None = None, setup: int = 0, data=None):
    """The shared evaluation trial (``evaluation.evaluate_poisons``) of a ConvNet-BN trained from
    scratch with the code's recipe and ``seed``, on the clean training set (``budget`` None) or
    with target ``setup``'s poisons at ``budget``; it scores the ``targets`` (test indices)."""
    poisons = None if budget is None else {
        "stage": "craft", "key": _key(cfg, "craft", budget=budget), "setup": setup,
        "positions": data["poison_pos"][:cfg.poisons_at(budget)].tolist()}
    return EV.evaluate_poisons({"name": "cifar10", "per_class": cfg.train_per_class}, poisons,
                               {"kind": "supervised", "arch": ARCH}, recipe_fields(cfg), seed,
                               {"test_images": cfg.test_images, "targets": [int(t) for t in targets]})


def victims(cfg, data, cache: ArtifactCache) -> dict:
    """Every (budget, target) poison set's ``victim_seeds`` victims and as many clean victims
    (the same seeds). Returns ``success`` bool [budgets, T, seeds], ``accuracy`` [budgets, T,
    seeds], ``clean_success`` bool [seeds, T] and ``clean_accuracy`` [seeds]."""
    seeds = [cfg.seed + 5000 + j for j in range(cfg.victim_seeds)]
    trials = [victim_spec(cfg, s, data["target_index"].tolist()) for s in seeds]
    trials += [victim_spec(cfg, s, [int(data["target_index"][t])], budget=budget, setup=t, data=data)
               for budget in cfg.budgets for t in range(cfg.n_targets) for s in seeds]
    results = iter(run_trials(trials, cache, desc="train victims from scratch"))
    s = data["poison_label"]
    clean = [next(results) for _ in seeds]
    n_b, n_t, n_s = len(cfg.budgets), cfg.n_targets, len(seeds)
    success = torch.zeros(n_b, n_t, n_s, dtype=torch.bool)
    accuracy = torch.zeros(n_b, n_t, n_s)
    for b in range(n_b):
        for t in range(n_t):
            for j in range(n_s):
                r = next(results)
                success[b, t, j] = bool(r["prediction"][0] == s)
                accuracy[b, t, j] = r["test_accuracy"]
    return {"success": success, "accuracy": accuracy,
            "clean_success": torch.stack([r["prediction"] == s for r in clean]),
            "clean_accuracy": torch.stack([r["test_accuracy"] for r in clean])}


# --------------------------------------------------------------------------- fine-tuning (Fig. 3)
def pretrained(cfg, data, cache: ArtifactCache) -> M.Classifier:
    """The network the fine-tuning comparison starts from: trained from scratch on the clean set."""
    def run():
        model = M.build_model(ARCH)
        T.train_victim(model, data["train_x"], data["train_y"], EV.recipe_from(recipe_fields(cfg)), seed=cfg.seed + 900,
                       desc="pretrain")
        model = model.to(memory_format=torch.contiguous_format)
        return {k: v.contiguous() for k, v in model.state_dict().items()}
    model = M.build_model(ARCH)
    model.load_state_dict(cache.tensors("pretrained", _key(cfg, "pretrained"), run))
    return model.eval()


def finetune(cfg, data, net: M.Classifier, cache: ArtifactCache) -> dict:
    """Fig. 3 at an equal number of poisons (``finetune_budget``): for each of the first
    ``finetune_targets`` targets, MetaPoison poisons crafted for fine-tuning and Poison Frogs
    poisons; ``victim_seeds`` fine-tuned copies of ``net`` per poison set and clean ones.
    Returns ``success`` bool [3 (clean, MetaPoison, Poison Frogs), T, seeds], ``accuracy``
    likewise, and each attack's poisons' ``linf_255`` [2, T, k]."""
    k = cfg.poisons_at(cfg.finetune_budget)
    positions = data["poison_pos"][:k]
    fields = recipe_fields(cfg, cfg.finetune_epochs)
    fields.update(lr=cfg.finetune_lr, warmup=0.0, milestones=[])
    recipe = EV.recipe_from(fields)
    seeds = [cfg.seed + 7000 + j for j in range(cfg.victim_seeds)]
    test_x, test_y = EV.cifar10_test_set(cfg.test_images)

    def fine_tune(images, seed):
        model = copy.deepcopy(net)
        T.train_victim(model, images, data["train_y"], recipe, seed=seed, desc="fine-tune")
        return model.eval()

    def run():
        n_t = cfg.finetune_targets
        success = torch.zeros(3, n_t, len(seeds), dtype=torch.bool)
        accuracy = torch.zeros(3, n_t, len(seeds))
        linf = torch.zeros(2, n_t, k)
        bar = T.progress(total=n_t * (2 + 3 * len(seeds)), desc="fine-tuning comparison")
        for t in range(n_t):
            target = data["targets"][t]
            surrogates = MP.StaggeredEnsemble(lambda: copy.deepcopy(net), data["train_x"], data["train_y"],
                                              members=cfg.members, epochs=cfg.finetune_epochs, batch_size=BATCH,
                                              lr=cfg.finetune_lr, warmup_epochs=0, milestones=(),
                                              steps_per_advance=cfg.advance_steps or None, seed=cfg.seed + t)
            mp = MP.metapoison(data["train_x"], data["train_y"], positions, target, target_class=data["target_label"],
                               ensemble=surrogates, unroll_steps=cfg.unroll_steps, steps=cfg.craft_steps,
                               eps=cfg.eps, color_eps=cfg.color_eps, train_batch_size=BATCH,
                               poisons_per_batch=unrolled_poisons(cfg, cfg.finetune_budget),
                               seed=cfg.seed + t).poisons
            bar.update(1)
            bases = data["train_x"][positions].float() / 255
            pf, _ = FC.craft_poisons(net, bases, target.float().unsqueeze(0) / 255, beta=FC.beta_01(PF_BETA_255),
                                     iters=cfg.pf_iters, lr=PF_LR, opacity=cfg.pf_opacity, desc="Poison Frogs")
            bar.update(1)
            sets = [None, mp, pf]
            for a, poisons in enumerate(sets):
                if poisons is not None:
                    linf[a - 1, t] = 255 * (poisons - bases).abs().flatten(1).amax(1)
                x = data["train_x"].float() / 255
                if poisons is not None:
                    x[positions] = poisons
                for j, seed in enumerate(seeds):
                    model = fine_tune(x, seed)
                    success[a, t, j] = int(model(target.float().unsqueeze(0) / 255).argmax(1)) == data["poison_label"]
                    accuracy[a, t, j] = T.victim_accuracy(model, test_x, test_y, flip_tta=False)
                    bar.update(1)
        bar.close()
        return {"success": success, "accuracy": accuracy, "linf_255": linf}
    if not cfg.finetune_targets:
        return {}
    return cache.tensors("finetune", _key(cfg, "finetune"), run)


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages at ``cfg`` for ``make plan``; runs nothing. FLOPs from ``poisonrepro.plan``."""
    P = importlib.import_module("poisonrepro.plan")
    shape, n = (3, 32, 32), 10 * cfg.train_per_class
    net = M.build_model(ARCH)
    per_advance = cfg.advance_steps * BATCH if cfg.advance_steps else n
    rows = [{"stage": "ensemble (staggered pretraining)", "trials": 1,
             "flops_per_trial": float(P.model_train_flops(net, shape, n * cfg.surrogate_epochs * (cfg.members - 1) / 2)),
             "basis": f"{cfg.members} surrogates staggered over {cfg.surrogate_epochs} epochs"}]

    def step(budget):
        """A crafting step: every member's K unrolled steps on each batch of poisons (a
        second-order pass: 2 x a training step per unrolled batch, K + 1 forwards) and one
        advance of its training."""
        batches = math.ceil(cfg.poisons_at(budget) / unrolled_poisons(cfg, budget))
        return cfg.members * (batches * P.model_train_flops(net, shape, BATCH * 2 * (cfg.unroll_steps + 1)) +
                              P.model_train_flops(net, shape, per_advance))
    for budget in cfg.budgets:
        rows.append({"stage": f"craft {100 * budget:g}%", "trials": cfg.n_targets,
                     "flops_per_trial": float(step(budget) * cfg.craft_steps),
                     "basis": f"{cfg.craft_steps} steps x {cfg.members} surrogates x "
                              f"{math.ceil(cfg.poisons_at(budget) / unrolled_poisons(cfg, budget))} unrolled batches"})
    rows.append({"stage": "victims (from scratch)", "trials": cfg.victim_seeds * (1 + len(cfg.budgets) * cfg.n_targets),
                 "flops_per_trial": float(P.model_train_flops(net, shape, n * cfg.epochs)),
                 "basis": f"{n} images x {cfg.epochs} epochs"})
    if cfg.finetune_targets:
        rows.append({"stage": "fine-tuning comparison", "trials": cfg.finetune_targets,
                     "flops_per_trial": float(step(cfg.finetune_budget) * cfg.craft_steps + 3 * cfg.victim_seeds *
                                              P.model_train_flops(net, shape, n * cfg.finetune_epochs)),
                     "basis": f"MetaPoison crafting + 3 x {cfg.victim_seeds} fine-tunings of {cfg.finetune_epochs} epochs"})
    return rows


# --------------------------------------------------------------------------- the floor's cost (measured)
PAPER_PROTOCOL = dict(members=24, craft_steps=60, victim_epochs=200)  # parse.py and Sec. 4: 24 surrogates, 60 steps
FLOOR_EPOCHS = 8  # fast-recipe epochs for a ConvNet-BN at >= 80% on all 50,000 images (notebook 04, 2026-12-06)


def cost_at_floor(cfg, budget: float = 0.01) -> pd.DataFrame:
    """What MP-1 at the accuracy floor would cost on this machine, from two measurements made
    here on all 50,000 CIFAR-10 images (``cfg.cost_per_class`` per class: fewer at smoke and in
    dry runs, scaled up): one epoch of a ConvNet-BN victim with the code's recipe,
    and one MetaPoison crafting step over ``budget``'s poisons (``cfg.members`` fresh surrogates,
    ``cfg.unroll_steps`` unrolled steps; timing only). Each crafting step also advances every
    surrogate by one epoch (the code's ``advance_steps=0``). Rows: the paper's protocol, and the
    least that puts the victims at the floor (``cfg``'s crafting, victims of ``FLOOR_EPOCHS``)."""
    import time

    x, y = EV.cifar10_training_set(cfg.cost_per_class)  # all 50,000 images, but at smoke and in dry runs
    scale = 50_000 / len(y)  # an epoch's time is linear in the images; what is timed on fewer is scaled up
    s = D.class_index(cfg.poison_class)
    n_poisons = max(1, round(budget * 50_000))
    per_batch = MP.poisons_per_unrolled_batch(n_poisons, 50_000, BATCH)
    # a step's cost is linear in its unrolled batches: timed on a tenth of the poisons, at the full set's batch share
    positions = torch.nonzero(y == s).flatten()[:min(cfg.cost_per_class, max(per_batch, n_poisons // 10))]
    fraction = max(0.1, 2 * BATCH / len(y))  # of an epoch: a tenth, at least two batches
    t0 = time.perf_counter()
    T.train_victim(M.build_model(ARCH), x, y, EV.recipe_from({**recipe_fields(cfg, 1), "epochs": fraction}), seed=0,
                   desc="a timed part of an epoch")
    epoch_s = (time.perf_counter() - t0) / fraction * scale
    ens = MP.StaggeredEnsemble(lambda: M.build_model(ARCH), x, y, members=cfg.members, batch_size=BATCH, lr=LR,
                               steps_per_advance=1, poison_indices=positions, pretrain=False, seed=0)
    target = EV.cifar10_test_images([0])  # a copy: torch warns on the read-only memory map
    t0 = time.perf_counter()
    MP.metapoison(x, y, positions, target[0], target_class=D.class_index(cfg.target_class), ensemble=ens,
                  unroll_steps=cfg.unroll_steps, steps=1, eps=cfg.eps, color_eps=cfg.color_eps, train_batch_size=BATCH,
                  train_lr=LR, poisons_per_batch=per_batch, seed=0)
    step_s = (time.perf_counter() - t0) / cfg.members * n_poisons / len(positions)  # per surrogate, every poison
    seeds, targets = cfg.victim_seeds, cfg.n_targets
    rows = []
    for name, members, steps, victim_epochs in (
            ("paper protocol", PAPER_PROTOCOL["members"], PAPER_PROTOCOL["craft_steps"], PAPER_PROTOCOL["victim_epochs"]),
            ("least at the floor", cfg.members, cfg.craft_steps, FLOOR_EPOCHS)):
        craft = steps * members * (step_s + epoch_s)
        victims = (targets + 1) * seeds * victim_epochs * epoch_s  # + the clean victims
        rows.append({"setting": name, "surrogates": members, "crafting steps": steps, "victim epochs": victim_epochs,
                     "targets x seeds": f"{targets} x {seeds}", "crafting per target (h)": craft / 3600,
                     "victims (h)": victims / 3600, "total (h)": (targets * craft + victims) / 3600})
    table = pd.DataFrame(rows).set_index("setting")
    table.attrs["measured"] = {"victim epoch, 50,000 images (s)": epoch_s,
                               f"crafting step per surrogate, {n_poisons} poisons (s)": step_s}
    return table
