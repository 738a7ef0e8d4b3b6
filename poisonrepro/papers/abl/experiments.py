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
2. ``attacks``: per attack and seed, what the poisoned set looks like (two poisoned images, the
   number of poisons) and the trigger's base rate: the share of triggered test images that the
   attacker's clean network already sends to the target class.
3. ``victims``: for every attack and seed, one victim on the attack's poisoned set, each a trial of
   the shared evaluation (``evaluation.evaluate_poisons``; ``poisoned_training_set`` is its
   producer, ``apply_test_trigger`` its trigger probe): ``plain`` (``PlainLearner``: every training
   sample's loss after every epoch, ABL-1) or ``abl`` (``ABLLearner``,
   ``defenses.abl.anti_backdoor_learning``: every sample's loss after every LGA epoch, the isolated
   1%, the LGA ascent steps, and the test scores after each phase: ABL-2).

Every victim is scored on the clean test images (accuracy) and on the non-target ones with the
attack's trigger (the attack success rate: the share classified as the target class).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache

import torch

from ... import data as D
from ... import evaluation as EV
from ... import models as M
from ... import rng
from ... import tracking
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


DATASET = "cifar10"  # the shared evaluation's: the first ``per_class`` training images of each class


def test_set(test_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared evaluation's fixed draw of ``10 * test_per_class`` test images."""
    return EV.cifar10_test_set(10 * test_per_class)


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
def attacker_trial(*, model: str, recipe_name: str, epochs: float, seed: int, per_class: int, test_per_class: int,
                   adversarial_eps: float = 0.0) -> dict:
    """One of the attacker's networks, trained on the clean training set (adversarially at
    ``adversarial_eps``): its weights and clean test accuracy."""
    x, y = EV.cifar10_training_set(per_class)
    test_x, test_y = test_set(test_per_class)
    net = M.build_model(model).to(T.default_device())
    fields = {"adversarial_eps": adversarial_eps, "adversarial_step_size": 2.5 * adversarial_eps / 7} \
        if adversarial_eps else {}
    T.train_victim(net, x, y, recipe(recipe_name, epochs, **fields), seed=seed,
                   desc="attacker's network" + (" (adversarial)" if adversarial_eps else ""))
    acc = T.victim_accuracy(net, test_x, test_y, flip_tta=False)
    net = net.cpu().to(memory_format=torch.contiguous_format)
    return {**{f"state.{k}": v.contiguous() for k, v in net.state_dict().items()}, "test_accuracy": torch.tensor(acc)}


def attacker_trials(cfg) -> list[Trial]:
    """The standard network (the Trojan trigger's, and ABL-2's "no attack") and, where the
    clean-label backdoor runs, the adversarially trained surrogate of its PGD."""
    common = {"model": cfg.model, "recipe_name": cfg.recipe, "per_class": cfg.train_per_class,
              "test_per_class": cfg.test_per_class}
    fn = f"{__name__}:attacker_trial"
    trials = [Trial("attacker", fn, {**common, "epochs": cfg.epochs, "seed": cfg.seed + 50})]
    if "clean_label" in cfg.attacks:
        trials.append(Trial("attacker", fn, {**common, "epochs": cfg.surrogate_epochs, "seed": cfg.seed + 60,
                                             "adversarial_eps": cfg.cl_eps}))
    return trials


def attacker_keys(cfg) -> tuple[str, str]:
    """The cache keys of the standard network and of the surrogate ("" where none is trained)."""
    keys = [trial_key(t) for t in attacker_trials(cfg)]
    return keys[0], (keys[1] if len(keys) > 1 else "")


def attackers(cfg, cache) -> list[dict]:
    """The two networks' results (weights and test accuracy), trained or loaded."""
    return run_trials(attacker_trials(cfg), cache, desc="the attacker's networks")


def load_network(model: str, key: str) -> torch.nn.Module:
    """An attacker's network from the artifact cache (written by ``attackers`` in the driver)."""
    def missing():
        raise FileNotFoundError("the attacker's network is not in the artifact cache: run experiments.attackers "
                                "first, with the same POISONREPRO_ARTIFACTS")
    state = ArtifactCache().tensors("attacker", key, missing)
    with rng.preserved():  # building draws initial weights: the caller's generators stay where they were
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


@lru_cache(maxsize=8)
def _trigger(attack: str, trigger_size: int, seed: int, model: str, attacker_key: str, trojan_steps: int):
    """``trigger_of`` for the attacker's network in the cache (the Trojan's is optimised on it):
    computed once per process, shared by the producer and the trigger probe of a trial. It leaves
    the global random generators untouched, so that a victim's initial weights do not depend on
    whether the trigger was cached (a resumed run, another worker)."""
    with rng.preserved():
        network = load_network(model, attacker_key) if attack == "trojan" else None
        return trigger_of(attack, trigger_size=trigger_size, seed=seed, network=network, trojan_steps=trojan_steps)[0]


def poisoned_set(attack: str, x: torch.Tensor, y: torch.Tensor, *, rate: float, target_class: int, trigger_size: int,
                 seed: int, model: str, attacker_key: str, surrogate_key: str, trojan_steps: int = 200,
                 cl_eps: float = 16 / 255, cl_steps: int = 10) -> BP.BackdoorSet:
    """``attack``'s poisoned copy of the training set ``x``, ``y`` (drawn with ``seed``)."""
    craft = _trigger(attack, trigger_size, seed, model, attacker_key, trojan_steps)
    if attack == "clean_label":
        craft = clean_label_apply(load_network(model, surrogate_key), target_class=target_class,
                                  trigger_size=trigger_size, eps=cl_eps, steps=cl_steps, seed=seed)
    return BP.poison_training_set(x, y, craft, rate=rate, target_class=target_class,
                                  clean_label=attack not in DIRTY_LABEL, seed=seed)


def poisoned_training_set(x, y, **attack) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shared evaluation's producer: the poisoned images, labels, and the poisons' mask."""
    s = poisoned_set(attack.pop("attack"), x, y, **attack)
    bad = torch.zeros(len(y), dtype=torch.bool)
    bad[s.poisoned] = True
    return s.images, s.labels, bad


def apply_test_trigger(images: torch.Tensor, generator=None, *, attack: str, trigger_size: int, seed: int, model: str,
                 attacker_key: str, trojan_steps: int) -> torch.Tensor:
    """The shared evaluation's trigger probe: ``attack``'s test-time trigger on ``images``."""
    return _trigger(attack, trigger_size, seed, model, attacker_key, trojan_steps)(images, generator)


# --------------------------------------------------------------------------- the learners
@dataclass(frozen=True)
class ABLLearner(EV.SupervisedLearner):
    """ABL (``defenses.abl``) with the schedule of ``schedule``: LGA isolation, fine-tuning on the
    rest, unlearning of the isolated samples. Diagnostics: ``isolated`` (indices), ``isolation_loss``
    [N], ``ascent_steps`` (LGA steps that ascended), ``tracked`` and ``lga_loss`` [isolation epochs,
    tracked samples] (``tracking.EpochLosses`` of ``track_sample`` samples, 0: all), and the
    trial's scores after the isolation and the fine-tuning (``isolation.test_accuracy``, ...)."""
    recipe_name: str = "fast"
    isolation: str = "victim"
    isolation_epochs: float = 1.0
    finetune_epochs: float = 1.0
    unlearning_steps: int = 1
    unlearning_lr: float = 5e-4
    gamma: float = 0.5
    isolation_ratio: float = 0.01
    isolation_batch: int = 64
    track_sample: int = 0

    def train(self, x, y, recipe, seed, *, score=None):
        sched = schedule(recipe_name=self.recipe_name, isolation=self.isolation, isolation_epochs=self.isolation_epochs,
                        finetune_epochs=self.finetune_epochs, unlearning_lr=self.unlearning_lr, gamma=self.gamma,
                        isolation_ratio=self.isolation_ratio, isolation_batch=self.isolation_batch,
                        isolated=max(1, int(self.isolation_ratio * len(y))), unlearning_steps=self.unlearning_steps)
        phases = {}

        def on_phase(name, model):
            if score is not None and name != "unlearning":  # the last phase's scores are the trial's own
                phases.update({f"{name}.{k}": v for k, v in score(model).items()})
        model = M.build_model(self.arch).to(T.default_device())
        tracker = tracking.EpochLosses(model, x, y, sched.isolation.batch_size, sample=self.track_sample)
        res = abl.anti_backdoor_learning(model, x, y, sched, seed=seed, on_isolation_step=tracker, on_phase=on_phase)
        return res.model, {**phases, "isolated": torch.as_tensor(res.isolated), "isolation_loss": res.isolation_losses,
                           "ascent_steps": torch.tensor(res.ascent_steps), **tracker.diagnostics("lga")}


# --------------------------------------------------------------------------- trials
def seeds(cfg) -> list[int]:
    return [cfg.seed + 100 + j for j in range(cfg.victim_seeds)]


def _attack_args(cfg, attack: str, seed: int, keys: tuple[str, str]) -> dict:
    """What the producer and the trigger probe of ``attack``'s set drawn with ``seed`` need; the
    attacker's networks only where the attack uses them, so that other attacks' victims keep their
    cache keys when those networks change."""
    return {"attack": attack, "trigger_size": cfg.trigger_size, "seed": int(seed), "model": cfg.model,
            "attacker_key": keys[0] if attack == "trojan" else "", "trojan_steps": cfg.trojan_steps}


def _producer_args(cfg, attack: str, seed: int, keys: tuple[str, str]) -> dict:
    return {**_attack_args(cfg, attack, seed, keys), "rate": cfg.poison_rate,
            "target_class": D.class_index(cfg.target_class),
            "surrogate_key": keys[1] if attack == "clean_label" else "", "cl_eps": cfg.cl_eps, "cl_steps": cfg.cl_steps}


def victim_trial(cfg, arm: str, attack: str, seed: int, keys: tuple[str, str]) -> Trial:
    """The evaluation trial of one victim of ``arm`` on ``attack``'s poisoned set drawn with ``seed``;
    ``keys``: the attacker's two networks in the cache."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
    learner = {"kind": "poisonrepro.tracking:LossTrackingLearner", "arch": cfg.model, "track_sample": cfg.track_sample}
    if arm == "abl":
        learner = {"kind": f"{__name__}:ABLLearner", "arch": cfg.model, "recipe_name": cfg.recipe,
                   "isolation": cfg.isolation, "isolation_epochs": float(cfg.isolation_epochs),
                   "finetune_epochs": float(cfg.finetune_epochs), "unlearning_steps": cfg.unlearning_steps,
                   "unlearning_lr": cfg.unlearning_lr, "gamma": cfg.gamma, "isolation_ratio": cfg.isolation_ratio,
                   "isolation_batch": cfg.isolation_batch, "track_sample": cfg.track_sample}
    probes = {"test_images": 10 * cfg.test_per_class,
              "trigger": {"fn": f"{__name__}:apply_test_trigger", "args": _attack_args(cfg, attack, seed, keys),
                          "target_class": D.class_index(cfg.target_class)}}
    recipe_fields = {**RECIPES[cfg.recipe], "epochs": float(cfg.epochs)}
    return EV.evaluate_poisons({"name": DATASET, "per_class": cfg.train_per_class},
                               {"producer": f"{__name__}:poisoned_training_set",
                                "args": _producer_args(cfg, attack, seed, keys)},
                               learner, recipe_fields, seed, probes)


def attack_trial(*, per_class: int, test_per_class: int, clean_network_key: str, **args) -> dict:
    """What ``args``' poisoned set looks like (two poisoned images, the poisons' count) and the
    trigger's base rate: the share of the triggered non-target test images that the attacker's
    clean network (``clean_network_key``) classifies as the target class."""
    x, y = EV.cifar10_training_set(per_class)
    s = poisoned_set(args["attack"], x, y, **{k: v for k, v in args.items() if k != "attack"})
    test_x, test_y = test_set(test_per_class)
    apply = _trigger(args["attack"], args["trigger_size"], args["seed"], args["model"], args["attacker_key"],
                     args["trojan_steps"])
    triggered, _ = BP.triggered_test_set(test_x, test_y, apply, args["target_class"])
    network = load_network(args["model"], clean_network_key)
    hits = T.predict_logits(network, T.to_unit(triggered)).argmax(1)
    return {"examples": s.images[s.poisoned[:2]], "poisons": torch.tensor(len(s.poisoned)),
            "clean_asr": torch.tensor(BP.attack_success_rate(hits, args["target_class"]))}


def attack_trials(cfg, keys: tuple[str, str]) -> list[Trial]:
    return [Trial("attacks", f"{__name__}:attack_trial",
                  {"per_class": cfg.train_per_class, "test_per_class": cfg.test_per_class,
                   "clean_network_key": keys[0], **_producer_args(cfg, attack, s, keys)})
            for attack in cfg.attacks for s in seeds(cfg)]


def victim_trials(cfg, keys: tuple[str, str]) -> list[Trial]:
    """Every (attack, seed) plainly and with ABL; ``keys``: the attacker's two networks in the cache."""
    return [victim_trial(cfg, arm, attack, s, keys) for attack in cfg.attacks for s in seeds(cfg) for arm in ARMS]


def victims(cfg, cache) -> dict:
    """{attack: {arm: [the result of each seed]}}, trained (or loaded from the cache), each result
    with its poisoned set's ``examples``, ``poisons`` and ``clean_asr``; the attacker's networks
    first."""
    attackers(cfg, cache)
    keys = attacker_keys(cfg)
    looks = iter(run_trials(attack_trials(cfg, keys), cache, desc="the poisoned sets and their triggers"))
    results = iter(run_trials(victim_trials(cfg, keys), cache, desc="victims: plain and ABL"))
    out = {a: {arm: [] for arm in ARMS} for a in cfg.attacks}
    for attack in cfg.attacks:
        for _ in seeds(cfg):
            look = next(looks)
            for arm in ARMS:
                out[attack][arm].append({**next(results), **look})
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
    surrogate = "clean_label" in cfg.attacks
    return [{"stage": "attacker's networks", "trials": 1 + surrogate,
             "flops_per_trial": one(n * (cfg.epochs + surrogate * adversarial * cfg.surrogate_epochs)) / (1 + surrogate),
             "basis": f"{n} images x {cfg.epochs} epochs" + (f", and x {cfg.surrogate_epochs} adversarial epochs"
                                                           if surrogate else "")},
            {"stage": "plain victims", "trials": runs, "flops_per_trial": one(n * cfg.epochs),
             "basis": f"{n} images x {cfg.epochs} epochs"},
            {"stage": "ABL victims", "trials": runs, "flops_per_trial": one(abl_images),
             "basis": f"{cfg.isolation_epochs} LGA + {cfg.finetune_epochs} fine-tuning epochs"}]
