"""Notebook 11, Anti-Backdoor Learning (Li et al., NeurIPS 2021): the experiments of ABL-1 and ABL-2.

A class-balanced CIFAR-10 training subset is poisoned by one of five backdoor attacks, each a module
of ``poisonrepro.attacks`` (the target class and rate as the paper's repository, bboylyg/ABL; the
clean-label attacks poison the target-class images among a random ``rate`` share of the whole set,
as its ``data_loader.py`` does: see ``attacks.backdoor_poisoning``):

- ``badnets``: a 3x3 grid in the bottom-right corner, poisons relabelled (``attacks.badnets``);
- ``blend``: a uniform-noise key blended at alpha 0.2, relabelled (``attacks.blend``);
- ``sig``: a horizontal sinusoid on target-class images, labels kept (``attacks.sig``);
- ``trojan``: a 3x3 trigger at rows and columns 25-27, optimised to drive the penultimate unit most
  connected to the head of the attacker's network (trained on the clean set), relabelled
  (``attacks.trojan``);
- ``clean_label``: Turner et al.'s clean-label backdoor: target-class images pushed away from their
  label by L-inf PGD on an adversarially trained surrogate, then the grid pasted, labels kept
  (``attacks.clean_label_backdoor``).

Stages (each trial through ``poisonrepro.executor``):

1. ``attacker``: the attacker's networks on the clean set: a standard one (the Trojan trigger's
   network, and the row "no attack" of ABL-2) and an adversarially trained one (Madry et al.,
   at the clean-label budget; the clean-label PGD's surrogate).
2. ``victims``: for every attack and seed, the poisoned set (rebuilt in the trial: deterministic,
   seconds) and one victim on it, ``plain`` (the per-sample training loss of every poison and of
   ``tracked_clean`` clean samples after every epoch: ABL-1) or ``abl``
   (``defenses.abl.anti_backdoor_learning``: the same samples' losses after every LGA epoch, the
   isolated 1%, and the test scores after each phase: ABL-2).

Every victim is scored on the clean test subset (accuracy) and on its non-target images with the
attack's trigger (the attack success rate: the share classified as the target class).
"""
from __future__ import annotations

import importlib

import torch

from ... import data as D
from ... import models as M
from ... import train as T
from ...attacks import backdoor_poisoning as BP
from ...attacks import badnets, blend, sig, trojan
from ...attacks import clean_label_backdoor as CLB
from ...cache import ArtifactCache
from ...config.abl import ATTACKS, IMAGE_SIZE
from ...defenses import abl
from ...executor import Trial, run_trials, trial_key

ARMS = ("plain", "abl")
DIRTY_LABEL = ("badnets", "blend", "trojan")
#: training recipes for plain training and ABL's fine-tuning (``train.VictimRecipe`` fields): the
#: project's fast victim, and the repository's (config.py: SGD 0.1, momentum 0.9, weight decay
#: 1e-4, batch 64; backdoor_unlearning.py: x0.1 at 2/3 of the fine-tuning, crop and flip)
RECIPES = {"fast": {},
           "abl": {"batch_size": 64, "lr": 0.1, "weight_decay": 1e-4, "label_smoothing": 0.0, "warmup": 0.0,
                   "schedule": "steps", "milestones": (2 / 3,), "lr_decay": 0.1, "crop_pad": 4}}
#: the isolation phase (LGA replaces the loss, so label smoothing does not apply), without augmentation as
#: the repository runs it: "repository", its SGD 0.1 at batch 64 (Nesterov 0.9, weight decay 1e-4) and a
#: constant rate; "victim", the plain victims' own recipe (the stand-in did not learn the BadNets trigger
#: within 5 epochs at the repository's rate: see the config)
ISOLATION = {"repository": {"lr": 0.1, "weight_decay": 1e-4, "warmup": 0.0, "schedule": "steps"},
             "victim": {}}
NO_AUGMENTATION = {"label_smoothing": 0.0, "crop_pad": 0, "flip": False}
#: the unlearning phase as the repository runs it: SGD (Nesterov 0.9, weight decay 1e-4) at a constant rate (5e-4)
UNLEARNING = {"weight_decay": 1e-4, **NO_AUGMENTATION}
NAME = {"badnets": "BadNets", "blend": "Blend", "sig": "SIG (clean label)", "trojan": "Trojan",
        "clean_label": "CL (clean label)"}


def split(per_class: int, test_per_class: int, seed: int) -> dict:
    return D.cifar10_split(per_class, test_per_class, seed)


def recipe(name: str, epochs: float, **fields) -> T.VictimRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; allowed: {', '.join(RECIPES)}")
    return T.VictimRecipe(epochs=epochs, **{**RECIPES[name], **fields})


def schedule(*, recipe_name: str, isolation: str, isolation_epochs: float, finetune_epochs: float,
             unlearning_lr: float, gamma: float, isolation_ratio: float, isolation_batch: int, isolated: int,
             unlearning_steps: int):
    """ABL's three phases (``defenses.abl.ABLSchedule``)."""
    if isolation not in ISOLATION:
        raise ValueError(f"unknown isolation recipe {isolation!r}; allowed: {', '.join(ISOLATION)}")
    batch = {"batch_size": isolation_batch} if isolation == "repository" else {}
    iso = recipe(recipe_name, isolation_epochs, **{**ISOLATION[isolation], **batch, **NO_AUGMENTATION})
    unlearn = abl.unlearning_recipe(abl.constant(T.VictimRecipe(batch_size=isolation_batch, **UNLEARNING),
                                                 lr=unlearning_lr), isolated, unlearning_steps)
    return abl.ABLSchedule(iso, recipe(recipe_name, finetune_epochs), unlearn, gamma=gamma,
                           isolation_ratio=isolation_ratio)


# --------------------------------------------------------------------------- the attacker's networks
def attacker_trial(*, model: str, recipe_name: str, epochs: float, seed: int, data_seed: int, per_class: int,
                   test_per_class: int, adversarial_eps: float = 0.0) -> dict:
    """One of the attacker's networks, trained on the clean training subset (adversarially at
    ``adversarial_eps``): its weights and clean test accuracy."""
    d = split(per_class, test_per_class, data_seed)
    net = M.build_model(model).to(T.default_device())
    fields = {"adversarial_eps": adversarial_eps, "adversarial_step_size": 2.5 * adversarial_eps / 7} \
        if adversarial_eps else {}
    T.train_victim(net, d["x"], d["y"], recipe(recipe_name, epochs, **fields), seed=seed,
                   desc="attacker's network" + (" (adversarial)" if adversarial_eps else ""))
    acc = T.victim_accuracy(net, d["test_x"], d["test_y"], flip_tta=False)
    net = net.cpu().to(memory_format=torch.contiguous_format)
    return {**{f"state.{k}": v.contiguous() for k, v in net.state_dict().items()}, "test_accuracy": torch.tensor(acc)}


def attacker_trials(cfg) -> list[Trial]:
    """The standard network (the Trojan trigger's, and ABL-2's "no attack") and the adversarially
    trained surrogate of the clean-label PGD."""
    common = {"model": cfg.model, "recipe_name": cfg.recipe, "data_seed": cfg.seed, "per_class": cfg.train_per_class,
              "test_per_class": cfg.test_per_class}
    fn = f"{__name__}:attacker_trial"
    return [Trial("attacker", fn, {**common, "epochs": cfg.epochs, "seed": cfg.seed + 50}),
            Trial("attacker", fn, {**common, "epochs": cfg.surrogate_epochs, "seed": cfg.seed + 60,
                                   "adversarial_eps": cfg.cl_eps})]


def attackers(cfg, cache) -> list[dict]:
    """The two networks' results (weights and test accuracy), trained or loaded."""
    return run_trials(attacker_trials(cfg), cache, desc="the attacker's networks")


def load_network(model: str, key: str) -> torch.nn.Module:
    """An attacker's network from the artifact cache (written by ``attackers`` in the driver)."""
    def missing():
        raise FileNotFoundError("the attacker's network is not in the artifact cache: run experiments.attackers "
                                "first, with the same POISONREPRO_ARTIFACTS")
    state = ArtifactCache().tensors("attacker", key, missing)
    net = M.build_model(model)
    net.load_state_dict({k[len("state."):]: v for k, v in state.items() if k.startswith("state.")})
    return net.eval()


# --------------------------------------------------------------------------- the attacks
def trojan_location(size: int) -> tuple[int, int]:
    """ABL's Trojan patch sits at rows and columns 25-27 of 32: four pixels in from the corner."""
    at = max(0, IMAGE_SIZE - size - 4)
    return at, at


def trigger_of(attack: str, *, trigger_size: int, seed: int, network=None, trojan_steps: int = 200):
    """``apply(images, generator) -> images`` (uint8) for ``attack``'s test-time trigger, and the
    Trojan's trigger tensor ([C, H, W] in [0, 1]; None for the others)."""
    if attack in ("badnets", "clean_label"):
        return (lambda x, g: badnets.apply_trigger(x, size=trigger_size)), None
    if attack == "blend":
        return (lambda x, g: blend.apply_trigger(x, key_seed=seed)), None
    if attack == "sig":
        return (lambda x, g: sig.apply_trigger(x)), None
    if attack == "trojan":
        mask = trojan.mask_at((IMAGE_SIZE, IMAGE_SIZE), trigger_size, trojan_location(trigger_size))
        # the penultimate unit most strongly connected to the head (Liu et al.'s neuron selection)
        neurons = trojan.select_neurons(network.head.weight, 1)
        trigger = trojan.generate_trigger(network.features, neurons, mask, steps=trojan_steps, seed=seed)
        return (lambda x, g: trojan.apply_trigger(x, trigger, mask)), trigger
    raise ValueError(f"unknown attack {attack!r}; allowed: {', '.join(ATTACKS)}")


def clean_label_apply(surrogate, *, target_class: int, trigger_size: int, eps: float, steps: int, seed: int):
    """Turner et al.'s poisons for target-class images: PGD away from their label on the
    adversarially trained ``surrogate`` (step 2.5 eps / steps, Madry et al.'s rule), then the grid
    pasted whole (their visible trigger, not clipped to eps), as uint8."""
    patch = badnets.checkerboard(trigger_size).float().div(255).expand(3, trigger_size, trigger_size)
    at = IMAGE_SIZE - trigger_size

    def apply(images, generator):
        labels = torch.full((len(images),), target_class, dtype=torch.long)
        poisons = CLB.craft_poisons(surrogate, images, labels, patch, location=(at, at), eps=eps, steps=steps,
                                    step_size=2.5 * eps / steps, clip_trigger=False, seed=seed)
        return (poisons * 255).round().to(torch.uint8)
    return apply


def poisoned_set(attack: str, d: dict, *, rate: float, target_class: int, trigger_size: int, seed: int,
                 network=None, surrogate=None, trojan_steps: int = 200, cl_eps: float = 16 / 255,
                 cl_steps: int = 10) -> tuple[BP.BackdoorSet, callable]:
    """``attack``'s poisoned copy of the training set ``d`` and its test-time trigger."""
    apply, _ = trigger_of(attack, trigger_size=trigger_size, seed=seed, network=network, trojan_steps=trojan_steps)
    craft = apply
    if attack == "clean_label":
        craft = clean_label_apply(surrogate, target_class=target_class, trigger_size=trigger_size, eps=cl_eps,
                                  steps=cl_steps, seed=seed)
    s = BP.poison_training_set(d["x"], d["y"], craft, rate=rate, target_class=target_class,
                               clean_label=attack not in DIRTY_LABEL, seed=seed)
    return s, apply


# --------------------------------------------------------------------------- victims
def scores(net, d: dict, triggered: torch.Tensor, target_class: int) -> dict:
    """Clean test accuracy and the attack success rate, as counts (no test-time augmentation)."""
    device = next(net.parameters()).device
    correct = (T.predict_logits(net, T.to_unit(d["test_x"].to(device))).argmax(1).cpu() == d["test_y"]).sum()
    hits = (T.predict_logits(net, T.to_unit(triggered.to(device))).argmax(1).cpu() == target_class).sum()
    return {"correct": correct, "tested": torch.tensor(len(d["test_y"])), "hits": hits,
            "triggered": torch.tensor(len(triggered))}


def tracked_samples(poisoned: torch.Tensor, n: int, clean: int, seed: int) -> torch.Tensor:
    """ABL-1's samples: every poison and ``clean`` others drawn by ``seed``, sorted."""
    is_poison = torch.zeros(n, dtype=torch.bool)
    is_poison[poisoned] = True
    others = torch.nonzero(~is_poison).flatten()
    pick = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:clean]]
    return torch.cat([poisoned, pick]).sort().values


def victim_trial(*, arm: str, attack: str, seed: int, data_seed: int, per_class: int, test_per_class: int,
                 model: str, recipe_name: str, epochs: float, rate: float, target_class: int, trigger_size: int,
                 attacker_key: str, surrogate_key: str, trojan_steps: int, cl_eps: float, cl_steps: int,
                 tracked_clean: int, isolation: str = "repository", isolation_epochs: float = 1,
                 finetune_epochs: float = 1,
                 unlearning_steps: int = 1, unlearning_lr: float = 5e-4, gamma: float = 0.5,
                 isolation_ratio: float = 0.01, isolation_batch: int = 64) -> dict:
    """One victim of ``arm`` on ``attack``'s poisoned set drawn with ``seed``.

    Returns ``poisoned`` (indices), ``tracked`` (ABL-1's samples), the scores (``correct``/``tested``,
    ``hits``/``triggered``), the attacker's clean network's ``clean_hits`` on the same triggered
    images (the trigger's base rate), ``examples`` (two poisoned images); plain also ``epoch_loss``
    [epochs, tracked]; abl ``lga_loss`` [isolation epochs, tracked], ``isolated``, and the scores
    after each phase (``<phase>.correct``, ``<phase>.hits``)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
    d = split(per_class, test_per_class, data_seed)
    network = load_network(model, attacker_key)
    surrogate = load_network(model, surrogate_key) if attack == "clean_label" else None
    s, apply = poisoned_set(attack, d, rate=rate, target_class=target_class, trigger_size=trigger_size, seed=seed,
                            network=network, surrogate=surrogate, trojan_steps=trojan_steps, cl_eps=cl_eps,
                            cl_steps=cl_steps)
    triggered, _ = BP.triggered_test_set(d["test_x"], d["test_y"], apply, target_class)
    tracked = tracked_samples(s.poisoned, len(s.labels), tracked_clean, seed)
    out = {"poisoned": s.poisoned, "tracked": tracked, "examples": s.images[s.poisoned[:2]],
           "clean_hits": scores(network, d, triggered, target_class)["hits"]}
    net = M.build_model(model).to(T.default_device())
    if arm == "plain":
        r = recipe(recipe_name, epochs)
        per_epoch, losses = max(1, len(s.labels) // r.batch_size), []

        def track(step, total):
            if step % per_epoch == 0 or step == total:
                losses.append(T.per_sample_losses(net, s.images[tracked], s.labels[tracked])[0])
        T.train_victim(net, s.images, s.labels, r, seed=seed, desc=f"plain victim, {attack}", on_step=track)
        out["epoch_loss"] = torch.stack(losses)
    else:
        isolated = max(1, int(isolation_ratio * len(s.labels)))
        plan = schedule(recipe_name=recipe_name, isolation=isolation, isolation_epochs=isolation_epochs,
                        finetune_epochs=finetune_epochs,
                        unlearning_lr=unlearning_lr, gamma=gamma, isolation_ratio=isolation_ratio,
                        isolation_batch=isolation_batch, isolated=isolated, unlearning_steps=unlearning_steps)
        phases = {}
        res = abl.anti_backdoor_learning(
            net, s.images, s.labels, plan, seed=seed, track_losses=True,
            on_phase=lambda name, m: phases.update({f"{name}.{k}": v for k, v in
                                                    scores(m, d, triggered, target_class).items()}))
        out.update(phases, isolated=torch.as_tensor(res.isolated), isolation_loss=res.isolation_losses,
                   ascent_steps=torch.tensor(res.ascent_steps),
                   lga_loss=torch.stack(res.epoch_losses)[:, tracked])
    out.update(scores(net, d, triggered, target_class))
    return out


def seeds(cfg) -> list[int]:
    return [cfg.seed + 100 + j for j in range(cfg.victim_seeds)]


def victim_trials(cfg, keys: tuple[str, str]) -> list[Trial]:
    """Every (attack, seed) plainly and with ABL; ``keys``: the attacker's two networks in the cache."""
    common = {"data_seed": cfg.seed, "per_class": cfg.train_per_class, "test_per_class": cfg.test_per_class,
              "model": cfg.model, "recipe_name": cfg.recipe, "epochs": cfg.epochs, "rate": cfg.poison_rate,
              "target_class": D.class_index(cfg.target_class), "trigger_size": cfg.trigger_size,
              "attacker_key": keys[0], "surrogate_key": keys[1], "trojan_steps": cfg.trojan_steps,
              "cl_eps": cfg.cl_eps, "cl_steps": cfg.cl_steps, "tracked_clean": cfg.tracked_clean}
    method = {"isolation": cfg.isolation, "isolation_epochs": cfg.isolation_epochs, "finetune_epochs": cfg.finetune_epochs,
              "unlearning_steps": cfg.unlearning_steps, "unlearning_lr": cfg.unlearning_lr, "gamma": cfg.gamma,
              "isolation_ratio": cfg.isolation_ratio, "isolation_batch": cfg.isolation_batch}
    fn = f"{__name__}:victim_trial"
    trials = []
    for attack in cfg.attacks:
        for s in seeds(cfg):
            trials.append(Trial("victims", fn, {**common, "arm": "plain", "attack": attack, "seed": s}))
            trials.append(Trial("victims", fn, {**common, **method, "arm": "abl", "attack": attack, "seed": s}))
    return trials


def victims(cfg, cache) -> dict:
    """{attack: {arm: [the result of each seed]}}, trained (or loaded from the cache); the
    attacker's networks first."""
    nets = attacker_trials(cfg)
    attackers(cfg, cache)
    keys = tuple(trial_key(t) for t in nets)
    results = iter(run_trials(victim_trials(cfg, keys), cache, desc="victims: plain and ABL"))
    out = {a: {arm: [] for arm in ARMS} for a in cfg.attacks}
    for attack in cfg.attacks:
        for _ in seeds(cfg):
            for arm in ARMS:
                out[attack][arm].append(next(results))
    return out


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages at ``cfg`` for ``make plan``; runs nothing."""
    P = importlib.import_module("poisonrepro.plan")
    net, shape, n = M.build_model(cfg.model), (3, 32, 32), 10 * cfg.train_per_class
    one = lambda images: float(P.model_train_flops(net, shape, images))  # noqa: E731
    adversarial = 1 + 7  # seven PGD steps per batch (train.VictimRecipe's default)
    abl_images = n * (cfg.isolation_epochs + cfg.finetune_epochs * (1 - cfg.isolation_ratio))
    runs = len(cfg.attacks) * len(seeds(cfg))
    return [{"stage": "attacker's networks", "trials": 2, "flops_per_trial": one(n * (cfg.epochs + adversarial
                                                                                      * cfg.surrogate_epochs)) / 2,
             "basis": f"{n} images x {cfg.epochs} epochs, and x {cfg.surrogate_epochs} adversarial epochs"},
            {"stage": "plain victims", "trials": runs, "flops_per_trial": one(n * cfg.epochs),
             "basis": f"{n} images x {cfg.epochs} epochs"},
            {"stage": "ABL victims", "trials": runs, "flops_per_trial": one(abl_images),
             "basis": f"{cfg.isolation_epochs} LGA + {cfg.finetune_epochs} fine-tuning epochs"}]
