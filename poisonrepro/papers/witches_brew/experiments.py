"""Notebook 04, Witches' Brew (Geiping et al., ICLR 2021): the experiments of WB-T1 and WB-A.

WB-T1 quotes the from-scratch benchmark of Schwarzschild et al., "Just How Toxic is Data
Poisoning?" (ICML 2021; aks2203/poisoning-benchmark). Its protocol, followed here:

- a **setup** is a target image of the CIFAR-10 *test* set and an adversarial class other than
  its own, drawn at random; the poisons are a budget's worth (1%) of training images of the
  adversarial class (the bases), perturbed within eps = 8/255 and keeping their labels;
- every attack crafts its own poisons for every setup, on networks trained on the clean set (the
  attacker's surrogates: one ResNet-18 for feature collision, convex polytope and the
  hidden-trigger backdoor, an adversarially trained one for the clean-label backdoor, the
  ensembles K = 1, K = 4 and K = 6 heterogeneous for gradient matching);
- each poisoned set trains a victim of its own **from scratch** (ResNet-18, MobileNet-V2 and
  VGG-11), and the attack succeeds when the victim classifies the target (with the trigger
  pasted, for the two backdoors) as the adversarial class.

Clean victims (the same training without poisons, one per setup and architecture with the seed of
that setup's poisoned victims) give the base rate of that event and the clean accuracy that the
poisoned victims are compared with, paired by seed: every attack's victim of a setup and its clean
victim differ only in the poisons. The surrogates and the victims are trials
through ``poisonrepro.executor``; each attack's poisons are one cached stage (``craft``, keyed by
the attack). Poisons are stored as uint8 pixels (the benchmark saves PNGs): rounding a base's
integer pixels plus a perturbation of at most k/255 stays within k/255, so the budget is measured
on exactly what the victims train on.
"""
from __future__ import annotations

import importlib
import numpy as np
import torch

from ... import data as D
from ... import evaluation as EV
from ... import models as M
from ... import train as T
from ... import triggers
from ...attacks import clean_label_backdoor as CLBD
from ...attacks import convex_polytope as CP
from ...attacks import feature_collision as FC
from ...attacks import hidden_trigger_backdoor as HTBD
from ...attacks import witches_brew as WB
from ...cache import ArtifactCache, stage_key
from ...config.witches_brew import ATTACKS
from ...executor import Trial, run_trials

#: the backdoors paste their trigger on the target at test time, at the benchmark's location
TRIGGER_AT = {"clean_label_backdoor": triggers.CLBD_LOCATION, "hidden_trigger_backdoor": triggers.HTBD_LOCATION}
ENSEMBLE_OF = {"gradient_matching_K1": "K1", "gradient_matching_K4": "K4", "gradient_matching_K6het": "K6het"}
FC_STEP, FC_OPACITY = 0.001, 0.3  # craft_poisons_fc.py defaults
SURROGATE_ARCHS = ("mobilenet_v2", "resnet18", "vgg11")  # fixes each architecture's surrogate seeds


def _key(cfg, stage, **extra) -> str:
    return stage_key(cfg, stage, __name__, **extra)


def _base_arch(cfg, name: str) -> str:
    if cfg.crafting_networks == "convnet_bn":
        return "convnet_bn"
    return {v: k for k, v in M.STANDIN_OF.items()}[name] if cfg.crafting_networks == "standins" else name


# --------------------------------------------------------------------------- data
# the shared evaluation's CIFAR-10 (``poisonrepro.evaluation``): the first ``per_class`` training
# images of every class, and a fixed draw of test images for clean accuracy
DATASET = "cifar10"


def make_setups(cfg) -> dict:
    """The benchmark's setups, drawn from ``cfg.seed``: target test index, its class, the
    adversarial class (uniform among the other nine), the bases (training-set positions of
    adversarial-class images) and, for the hidden-trigger backdoor, as many training images of
    the target's class (its sources)."""
    rng = np.random.default_rng([cfg.seed, 4])
    test = D.load_cifar10("test")
    _, y = EV.cifar10_training_set(cfg.train_per_class)
    y = y.numpy()
    target_index = rng.choice(len(test.y), cfg.n_targets, replace=False)
    target_label = test.y[target_index].astype(int)
    adversarial = (target_label + rng.integers(1, 10, cfg.n_targets)) % 10
    k = cfg.n_poisons
    bases = np.stack([np.sort(rng.choice(np.flatnonzero(y == a), k, replace=False)) for a in adversarial])
    sources = np.stack([np.sort(rng.choice(np.flatnonzero(y == t), k, replace=False)) for t in target_label])
    return {"target_index": target_index, "target_label": target_label, "adversarial": adversarial,
            "base_pos": bases, "source_pos": sources}


def prepare_data(cfg) -> dict:
    """The training set, the setups, the targets (uint8) and the trigger patch."""
    x, y = EV.cifar10_training_set(cfg.train_per_class)
    setups = make_setups(cfg)
    test = D.load_cifar10("test")
    return {"source": test.source, "train_x": x, "train_y": y, **setups,
            "targets": T.as_nchw(test.x[setups["target_index"]]),
            "patch": triggers.make_patch(seed=cfg.seed)}


# --------------------------------------------------------------------------- recipes
def recipe_fields(cfg, epochs: float, adversarial_eps: float = 0.0) -> dict:
    """The victim recipe (``train.VictimRecipe``) as JSON-able fields: "steps" is the benchmark's
    (SGD momentum 0.9, x0.1 at half and three quarters, no label smoothing, 4-pixel crops);
    "linear" the project's fast recipe at the config's batch, lr and weight decay."""
    fields = {"epochs": epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
              "adversarial_eps": adversarial_eps}
    if cfg.schedule == "steps":
        fields.update(schedule="steps", milestones=[0.5, 0.75], warmup=0.0, label_smoothing=0.0, crop_pad=4,
                      nesterov=False)
    return fields




# --------------------------------------------------------------------------- surrogates (trials)
def surrogate_specs(cfg) -> list[dict]:
    """The attacker's networks: enough members of each architecture for every ensemble in
    ``cfg.attacks`` (member i of an architecture is shared by the ensembles that use it), the
    ResNet-18 that feature collision, convex polytope and the hidden-trigger backdoor craft on
    (member 0), and the adversarially trained ResNet-18 of the clean-label backdoor."""
    need = {"resnet18": 1}
    for attack in cfg.attacks:
        if attack in ENSEMBLE_OF:
            names = WB.ENSEMBLES[ENSEMBLE_OF[attack]]
            for name in set(names):
                need[name] = max(need.get(name, 0), names.count(name))
    # member i of an architecture has the same seed whatever the attacks (``attacks`` is in no key)
    specs = [{"role": "crafting", "arch": _base_arch(cfg, name), "member": i,
              "seed": cfg.seed + 100 + 10 * SURROGATE_ARCHS.index(name) + i, "adversarial_eps": 0.0}
             for name, count in sorted(need.items()) for i in range(count)]
    if "clean_label_backdoor" in cfg.attacks:
        specs.append({"role": "adversarial", "arch": _base_arch(cfg, "resnet18"), "member": 0,
                      "seed": cfg.seed + 190, "adversarial_eps": cfg.eps})
    return specs


def surrogate_trial(*, arch: str, seed: int, per_class: int, recipe: dict, test_images: int) -> dict:
    """One attacker's network trained on the clean training set; its weights and clean accuracy."""
    x, y = EV.cifar10_training_set(per_class)
    model = M.build_model(arch).to(T.default_device())
    T.train_victim(model, x, y, EV.recipe_from(recipe), seed=seed, desc=f"surrogate {arch}")
    acc = T.victim_accuracy(model, *EV.cifar10_test_set(test_images), flip_tta=False)
    model = model.cpu().to(memory_format=torch.contiguous_format)
    return {**{f"state.{k}": v.contiguous() for k, v in model.state_dict().items()}, "test_accuracy": torch.tensor(acc)}


def surrogates(cfg, cache: ArtifactCache) -> list[dict]:
    """The attacker's networks (``spec`` + ``model`` in eval mode, on ``train.default_device()``,
    + ``test_accuracy``)."""
    specs = surrogate_specs(cfg)
    fn = f"{__name__}:surrogate_trial"
    trials = [Trial("surrogates", fn, {"arch": s["arch"], "seed": s["seed"], "per_class": cfg.train_per_class,
                                       "recipe": recipe_fields(cfg, cfg.surrogate_epochs, s["adversarial_eps"]),
                                       "test_images": cfg.test_images}) for s in specs]
    out = []
    for spec, res in zip(specs, run_trials(trials, cache, desc="train the attacker's networks")):
        model = M.build_model(spec["arch"])
        model.load_state_dict({k[len("state."):]: v for k, v in res.items() if k.startswith("state.")})
        # crafting runs where the networks are (POISONREPRO_DEVICE); the poisons stay on the CPU
        out.append({**spec, "model": model.to(T.default_device()).eval(), "test_accuracy": float(res["test_accuracy"])})
    return out


def _member(nets, arch: str, i: int = 0, role: str = "crafting"):
    return next(n["model"] for n in nets if n["role"] == role and n["arch"] == arch and n["member"] == i)


def ensemble(cfg, nets, kind: str) -> list:
    """The members of a benchmark ensemble (``witches_brew.ENSEMBLES``), in forest's order."""
    names = WB.ENSEMBLES[kind]
    return [_member(nets, _base_arch(cfg, name), names[:k].count(name)) for k, name in enumerate(names)]


# --------------------------------------------------------------------------- crafting
def craft_setup(cfg, data, nets, attack: str, t: int) -> torch.Tensor:
    """``attack``'s poisons (floats in [0, 1], [k, C, H, W]) for setup ``t``."""
    bases = data["train_x"][data["base_pos"][t]]
    adv = int(data["adversarial"][t])
    own = int(data["target_label"][t])
    target = data["targets"][t:t + 1]
    labels = torch.full((len(bases),), adv, dtype=torch.long)
    resnet = _member(nets, _base_arch(cfg, "resnet18"))
    seed = cfg.seed + t
    if attack == "feature_collision":
        device = next(resnet.parameters()).device
        poisons, _ = FC.craft_poisons(resnet, T.to_unit(bases).to(device), T.to_unit(target).to(device), beta=0.0,
                                      iters=cfg.fc_steps, lr=FC_STEP, opacity=FC_OPACITY, eps=cfg.eps,
                                      desc="feature collision")
        return poisons.cpu()
    if attack == "convex_polytope":
        poisons, _, _ = CP.craft_poisons([resnet], bases, target, eps=cfg.eps, steps=cfg.cp_steps, seed=seed,
                                         base_labels=labels, target_labels=torch.tensor([own]))
        return poisons[0]
    if attack == "clean_label_backdoor":
        robust = _member(nets, _base_arch(cfg, "resnet18"), role="adversarial")
        return CLBD.craft_poisons(robust, bases, labels, data["patch"], eps=cfg.eps, steps=cfg.clbd_steps,
                                  target_class=own, seed=seed)
    if attack == "hidden_trigger_backdoor":
        sources = data["train_x"][data["source_pos"][t]]
        return HTBD.craft_poisons(resnet, bases, sources, data["patch"], eps=cfg.eps, steps=cfg.htbd_steps,
                                  base_labels=labels, source_labels=torch.full((len(sources),), own), seed=seed)
    kind = ENSEMBLE_OF[attack]
    settings = WB.ENSEMBLE_SETTINGS[kind]
    result = WB.craft_poisons(ensemble(cfg, nets, kind), bases, labels, target, adv, eps=cfg.eps, steps=cfg.wb_steps,
                              restarts=cfg.wb_restarts, batch_size=settings["batch_size"], tau=settings["tau"],
                              target_labels=torch.tensor([own]), seed=seed, desc=f"brew {kind}")
    return result.perturbed(bases)


def to_pixels(poisons: torch.Tensor) -> torch.Tensor:
    """Poisons as the uint8 pixels the victims train on (rounded, as a saved PNG)."""
    return (poisons.clamp(0, 1) * 255).round().to(torch.uint8)


def craft(cfg, data, nets, attack: str, cache: ArtifactCache) -> dict:
    """``attack``'s poisons for every setup: ``poisons`` uint8 [T, k, C, H, W] and ``linf_255``
    [T, k], the measured L-inf distance from the bases on the 0-255 scale."""
    if attack not in ATTACKS:
        raise ValueError(f"attack={attack!r}: unknown; allowed: {', '.join(ATTACKS)}")

    def run():
        out = []
        bar = T.progress(total=cfg.n_targets, desc=f"craft {attack.replace('_', ' ')}")
        for t in range(cfg.n_targets):
            out.append(to_pixels(craft_setup(cfg, data, nets, attack, t)))
            bar.update(1)
        bar.close()
        poisons = torch.stack(out)
        bases = data["train_x"][torch.as_tensor(data["base_pos"])]
        linf = (poisons.int() - bases.int()).abs().flatten(2).amax(2).float()
        return {"poisons": poisons, "linf_255": linf}
    return cache.tensors("craft", craft_key(cfg, attack), run)


def craft_key(cfg, attack: str) -> str:
    return _key(cfg, "craft", attack=attack)


# --------------------------------------------------------------------------- victims (trials)
def victim_spec(cfg, arch: str, seed: int, targets: list, *, attack: str | None = None, setup: int = 0,
                data=None, locations: list = (), fit: bool = False, epochs: float | None = None,
                stage: str = "victims"):
    """The shared evaluation trial (``evaluation.evaluate_poisons``) of one victim of ``arch``
    trained from scratch with ``seed``, on the clean training set (``attack`` None) or with setup
    ``setup``'s poisons of ``attack`` in place of its bases; it scores the ``targets`` (test
    indices), plain and with the patch pasted at each of ``locations``."""
    poisons = None if attack is None else {"stage": "craft", "key": craft_key(cfg, attack), "setup": setup,
                                           "positions": data["base_pos"][setup].tolist()}
    return EV.evaluate_poisons(
        {"name": DATASET, "per_class": cfg.train_per_class}, poisons, {"kind": "supervised", "arch": arch},
        recipe_fields(cfg, cfg.victim_epochs if epochs is None else epochs), seed,
        {"test_images": cfg.test_images, "targets": [int(t) for t in targets], "patch_seed": cfg.seed,
         "locations": [list(loc) for loc in locations], "fit": fit}, stage=stage)


def _victim_seed(cfg, arch_index: int, t: int, clean: bool = False) -> int:
    # the same seed for every attack's victim of one setup and architecture, and for its clean
    # victim: paired comparisons. (``clean``: the separate seeds of the victim-strength diagnostic.)
    return cfg.seed + (20_000 if clean else 10_000) + 1000 * arch_index + t


def victims(cfg, data, cache: ArtifactCache) -> dict:
    """Every attack's victims (one per setup and architecture) and a clean victim per setup and
    architecture, trained with the same seed as that setup's poisoned victims (the same training
    without poisons), so that every comparison with the clean victims is paired by seed.

    Returns ``success`` bool [attacks, victims, T] (target, patched for the backdoors, classified
    as the adversarial class), ``poisoned_accuracy`` [attacks, victims, T], ``clean_accuracy``
    [victims, T], the clean victims' base rates ``clean_success`` [victims, T] (setup t's clean
    victim on setup t's plain target) and ``clean_patched_success`` [victims, 2, T] (with the
    trigger at the clean-label and the hidden-trigger location), and the seeds ``seeds`` [victims, T]."""
    locations = [TRIGGER_AT[a] for a in ("clean_label_backdoor", "hidden_trigger_backdoor")]
    n_v, n_t = len(cfg.victims), cfg.n_targets
    seeds = torch.tensor([[_victim_seed(cfg, vi, t) for t in range(n_t)] for vi in range(n_v)])
    target = lambda t: [int(data["target_index"][t])]  # noqa: E731
    trials = [victim_spec(cfg, arch, int(seeds[vi, t]), target(t), locations=locations)
              for vi, arch in enumerate(cfg.victims) for t in range(n_t)]
    for attack in cfg.attacks:
        at = [TRIGGER_AT[attack]] if attack in TRIGGER_AT else []
        trials += [victim_spec(cfg, arch, int(seeds[vi, t]), target(t), attack=attack, setup=t, data=data,
                               locations=at) for vi, arch in enumerate(cfg.victims) for t in range(n_t)]
    results = iter(run_trials(trials, cache, desc="train victims from scratch"))
    adv = torch.as_tensor(data["adversarial"])
    clean_acc, clean_success = torch.zeros(n_v, n_t), torch.zeros(n_v, n_t, dtype=torch.bool)
    clean_patched = torch.zeros(n_v, 2, n_t, dtype=torch.bool)
    for vi in range(n_v):
        for t in range(n_t):
            r = next(results)
            clean_acc[vi, t] = r["test_accuracy"]
            clean_success[vi, t] = bool(r["prediction"][0] == adv[t])
            clean_patched[vi, :, t] = r["patched_prediction"][:, 0] == adv[t]
    success = torch.zeros(len(cfg.attacks), n_v, n_t, dtype=torch.bool)
    acc = torch.zeros(len(cfg.attacks), n_v, n_t)
    for ai, attack in enumerate(cfg.attacks):
        for vi in range(n_v):
            for t in range(n_t):
                r = next(results)
                pred = r["patched_prediction"][0] if attack in TRIGGER_AT else r["prediction"]
                success[ai, vi, t] = bool(pred[0] == adv[t])
                acc[ai, vi, t] = r["test_accuracy"]
    return {"success": success, "poisoned_accuracy": acc, "clean_accuracy": clean_acc,
            "clean_success": clean_success, "clean_patched_success": clean_patched, "seeds": seeds}


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages at ``cfg`` for ``make plan``; runs nothing. FLOPs from ``poisonrepro.plan``."""
    P = importlib.import_module("poisonrepro.plan")
    shape, n = (3, 32, 32), 10 * cfg.train_per_class
    k = cfg.n_poisons
    rows = []
    for s in surrogate_specs(cfg):
        passes = P.TRAIN_PASSES * (1 + (CLBD_PGD_STEPS if s["adversarial_eps"] else 0))
        rows.append({"stage": f"surrogate {s['arch']}{' (adversarial)' if s['adversarial_eps'] else ''}",
                     "trials": 1, "basis": f"{n} images x {cfg.surrogate_epochs} epochs",
                     "flops_per_trial": float(P.model_train_flops(M.build_model(s["arch"]), shape,
                                                                  n * cfg.surrogate_epochs, passes=passes))})
    resnet = M.build_model(_base_arch(cfg, "resnet18"))
    steps = {"feature_collision": cfg.fc_steps, "convex_polytope": cfg.cp_steps, "clean_label_backdoor": cfg.clbd_steps,
             "hidden_trigger_backdoor": cfg.htbd_steps}
    for attack in cfg.attacks:
        if attack in ENSEMBLE_OF:
            members = [M.build_model(_base_arch(cfg, a)) for a in WB.ENSEMBLES[ENSEMBLE_OF[attack]]]
            flops = sum(P.model_train_flops(m, shape, k * cfg.wb_steps * cfg.wb_restarts, passes=4.0) for m in members)
            basis = f"{cfg.wb_steps} steps x {cfg.wb_restarts} restarts on {k} poisons x {len(members)} networks"
        else:
            flops = P.model_train_flops(resnet, shape, k * steps[attack])
            basis = f"{steps[attack]} steps on {k} poisons"
        rows.append({"stage": f"craft {attack}", "trials": cfg.n_targets, "flops_per_trial": float(flops),
                     "basis": basis})
    for arch in cfg.victims:
        rows.append({"stage": f"victims {arch}", "trials": (len(cfg.attacks) + 1) * cfg.n_targets,
                     "flops_per_trial": float(P.model_train_flops(M.build_model(arch), shape, n * cfg.victim_epochs)),
                     "basis": f"{n} images x {cfg.victim_epochs} epochs, one per attack and setup, and a clean one "
                              "per setup"})
    return rows


CLBD_PGD_STEPS = 7  # the adversarial training's PGD steps per batch (train.VictimRecipe)
