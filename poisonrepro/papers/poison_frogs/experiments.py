"""Notebook 01, Poison Frogs (Shafahi et al., NeurIPS 2018): the experiments.

Transfer learning (Sec. 4.1): a frozen feature extractor, a binary task on two classes the
extractor never saw, one feature-collision poison per target, the last layer retrained
from a cold start (Adam 0.01, 100 epochs, batch 32). End-to-end (Sec. 4.2): a network
pretrained on the task and fine-tuned, every layer, on the poisoned set; watermarked
poisons, 1 to N per target.

Each stage is cached under ``cache.stage_key``: the config fields that feed it (declared in
``poisonrepro.config.poison_frogs``) and the hash of this module's code and of every module it
imports, so an interrupted run resumes where it stopped and an edited attack is recomputed.

Devices: the extractor, the heads and the end-to-end victims sit on ``T.default_device()`` (a GPU
where there is one); the images, the random draws and every result stay on the CPU. Feature
collision crafts where the network is, its poisons coming back to the CPU.
"""
from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass

import numpy as np
import torch

from ... import data as D
from ... import models as M
from ... import pretrained
from ... import train as T
from ...attacks.feature_collision import Resized, beta_01, craft_poisons, paper_beta, perturbation_size, watermark
from ...cache import ArtifactCache, stage_key

INPUT_DIM = 3 * 32 * 32


def _key(cfg, stage, **extra) -> str:
    return stage_key(cfg, stage, __name__, **extra)


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor  # labels of the task (0/1 for binary tasks)


def _task(ds: D.ArrayDataset, classes: list[int], idx: np.ndarray) -> Split:
    remap = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([remap[int(v)] for v in ds.y[idx]])
    return Split(D.to_tensor(ds.x[idx]), y)


# --------------------------------------------------------------------------- data
def prepare_data(cfg) -> dict:
    """Every split the notebook uses, drawn deterministically from ``cfg.seed``."""
    train, test = D.load_cifar10("train"), D.load_cifar10("test")
    a, b = D.class_index(cfg.transfer_class_a), D.class_index(cfg.transfer_class_b)
    unseen = [a, b]
    out = {"source": train.source, "unseen": unseen}
    # transfer task a vs b; bases come from other training images of those classes
    tr_idx = D.stratified_subset(train.y, cfg.train_per_class, cfg.seed + 1, classes=unseen)
    base_idx = D.stratified_subset(train.y, min(500, 5000 - cfg.train_per_class), cfg.seed + 2,
                                   classes=unseen, exclude=tr_idx)
    te_idx = D.stratified_subset(test.y, cfg.test_per_class, cfg.seed + 3, classes=unseen)
    out["transfer_train"] = _task(train, unseen, tr_idx)
    out["transfer_bases"] = _task(train, unseen, base_idx)
    out["transfer_test"] = _task(test, unseen, te_idx)
    # end-to-end task
    t, s = D.class_index(cfg.e2e_target_class), D.class_index(cfg.e2e_base_class)
    e2e_classes = [t, s] if cfg.e2e_num_classes == 2 else list(range(10))
    e_idx = D.stratified_subset(train.y, cfg.e2e_train_per_class, cfg.seed + 4, classes=e2e_classes)
    eb_idx = D.stratified_subset(train.y, max(cfg.e2e_poison_counts), cfg.seed + 5, classes=[s], exclude=e_idx)
    et_idx = D.stratified_subset(test.y, min(1000, max(cfg.test_per_class, 100)), cfg.seed + 6, classes=e2e_classes)
    out["e2e_classes"] = e2e_classes
    out["e2e_target_label"], out["e2e_base_label"] = e2e_classes.index(t), e2e_classes.index(s)
    out["e2e_train"] = _task(train, e2e_classes, e_idx)
    out["e2e_bases"] = _task(train, e2e_classes, eb_idx)
    out["e2e_test"] = _task(test, e2e_classes, et_idx)
    return out


# --------------------------------------------------------------------------- extractor
def load_extractor(cfg, data, cache: ArtifactCache) -> tuple[M.Classifier, str]:
    """(frozen extractor, label): torchvision's ImageNet InceptionV3 at the ``paper`` profile
    where its weights can be had, else the project's CIFAR stand-in trained on the eight
    classes the transfer task does not use (``poisonrepro.pretrained``), labeled; on
    ``T.default_device()``."""
    extractor, label = pretrained.load_extractor(cfg, unseen=data["unseen"], cache=cache)
    return extractor.to(T.default_device()), label


# --------------------------------------------------------------------------- transfer
def _random_targets(correct: torch.Tensor, candidates: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Up to n of ``candidates`` in random order, correctly classified ones first (a target
    the clean model already gets wrong would make the attack look better than it is; the
    others are used only where too few are correct, as in dry runs)."""
    order = candidates[torch.randperm(len(candidates), generator=gen)]
    return torch.cat([order[correct[order]], order[~correct[order]]])[:n]


def _pick_targets(correct: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n test images, correctly classified where possible, alternating between the classes."""
    gen = torch.Generator().manual_seed(seed)
    per_class = [_random_targets(correct, torch.nonzero(labels == c).flatten(), n, gen) for c in (0, 1)]
    picked = [per_class[i % 2][i // 2] for i in range(n) if i // 2 < len(per_class[i % 2])]
    return torch.stack(picked)


def _train_heads(cfg, feats_train, y_train, extra_feats, extra_y, seeds):
    """One cold-start linear head per row of ``extra_feats`` (trained on the clean features
    plus that row's extra examples), all at once; ``seeds[i]`` draws head i's initial weights."""
    n, k = len(y_train), len(extra_feats)
    p = extra_feats.shape[1]
    pool_x = torch.cat([feats_train, extra_feats.reshape(k * p, feats_train.shape[1])])
    pool_y = torch.cat([y_train, extra_y.reshape(-1)])
    sets = torch.stack([torch.cat([torch.arange(n), n + i * p + torch.arange(p)]) for i in range(k)])
    heads = []
    for seed in seeds:
        torch.manual_seed(int(seed))  # cold start, drawn on the CPU
        heads.append(torch.nn.Linear(feats_train.shape[1], 2).to(T.default_device()))
    return T.train_many(heads, pool_x, pool_y, sets, epochs=cfg.head_epochs, lr=cfg.head_lr,
                        optimizer="adam", batch_size=cfg.head_batch_size, seed=cfg.seed, desc="retrain heads")


def extractor_own_task(cfg, data, extractor, label: str) -> dict:
    """The extractor's accuracy on its own task, the precondition of every transfer claim (issue 23:
    a pretrained extractor must reach the accuracy floor where it was trained): the stand-in on
    ``test_per_class`` CIFAR-10 test images of each of the eight classes it was trained on (its
    own labels). The ImageNet InceptionV3 cannot be checked offline (no ImageNet validation
    images): no images, so the precondition stays undecided. Returns ``own_task_correct`` and
    ``own_task_images`` (tensors) and ``own_task`` (what was measured)."""
    if label != pretrained.standin_label(cfg.standin_width):
        return {"own_task_correct": torch.tensor(0), "own_task_images": torch.tensor(0),
                "own_task": "ImageNet top-1 (not measurable offline: no ImageNet validation images)"}
    test = D.load_cifar10("test")
    seen = [c for c in range(10) if c not in data["unseen"]]
    idx = D.stratified_subset(test.y, cfg.test_per_class, cfg.seed + 8, classes=seen)
    split = _task(test, seen, idx)
    correct = T.predict_logits(extractor, split.x).argmax(-1) == split.y
    return {"own_task_correct": correct.sum(), "own_task_images": torch.tensor(len(split.y)),
            "own_task": f"its own 8-class CIFAR-10 task, {cfg.test_per_class} test images per class"}


def transfer_setup(cfg, data, extractor) -> dict:
    """Features, the clean head, and the targets it classifies correctly."""
    T.freeze_for_transfer(extractor)
    tr, te = data["transfer_train"], data["transfer_test"]
    f_tr, f_te = T.extract_features(extractor, tr.x), T.extract_features(extractor, te.x)
    clean = _train_heads(cfg, f_tr, tr.y, f_tr.new_zeros(1, 0, f_tr.shape[1]), tr.y.new_zeros(1, 0), [cfg.seed])
    logits = clean.predict(f_te)[0]
    correct = logits.argmax(-1) == te.y
    targets = _pick_targets(correct, te.y, cfg.n_targets, cfg.seed)
    return {"f_train": f_tr, "f_test": f_te, "clean_acc": correct.float().mean().item(),
            "targets": targets, "clean_head": clean}


def _upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def transfer_attack(cfg, data, extractor, setup, cache: ArtifactCache, beta_multiplier: float = 1.0,
                    size: int = 32, n_targets: int | None = None, controls: bool = True) -> dict:
    """One poison per target, then one cold-start head per target, and (``controls``) a
    paired control head per target (same seed, the clean base instead of the poison).

    ``size`` > 32 crafts the poisons at that resolution (bases and targets bilinearly
    upsampled) through a network that sees them resized back to 32x32, with Eq. 2's beta
    for that input dimension, as in the authors' pipeline for raw ImageNet images. Returns
    per-target tensors, sizes on the 0-255 scale; cached."""
    input_dim = 3 * size * size
    beta = paper_beta(cfg.beta0, extractor.feature_dim, input_dim) * beta_multiplier
    key = _key(cfg, "transfer_attack", beta_multiplier=beta_multiplier, size=size, targets=n_targets,
               controls=controls)

    def run():
        tr, te, bases = data["transfer_train"], data["transfer_test"], data["transfer_bases"]
        targets = setup["targets"][:n_targets]
        t_img, t_lab = te.x[targets], te.y[targets]
        base_lab = 1 - t_lab
        gen = torch.Generator().manual_seed(cfg.seed + 7)
        base_pick = torch.stack([torch.nonzero(bases.y == c).flatten()[
            torch.randint(int((bases.y == c).sum()), (1,), generator=gen)][0] for c in base_lab])
        b_img = bases.x[base_pick]
        net = extractor
        if size != 32:
            net, b_img, t_img = Resized(extractor, 32), _upsample(b_img, size), _upsample(t_img, size)
        poisons, history = craft_poisons(net, b_img, t_img, beta=beta, iters=cfg.craft_iters,
                                         lr=cfg.craft_lr,
                                         desc=f"craft transfer poisons (beta x{beta_multiplier:g}, {size}px)")
        f_p = T.extract_features(net, poisons)
        f_b = T.extract_features(net, b_img)
        k = len(targets)
        # K poisoned heads and K paired controls: the same cold start and the same set size,
        # with the unperturbed base image in place of the poison
        seeds = [cfg.seed + 100 + i for i in range(k)] * (2 if controls else 1)
        extra = torch.cat([f_p, f_b]) if controls else f_p
        heads = _train_heads(cfg, setup["f_train"], tr.y, extra[:, None],
                             base_lab.repeat(2 if controls else 1)[:, None], seeds)
        probs = heads.predict(setup["f_test"]).softmax(-1)  # [2K or K, N, 2]
        poisoned = probs[:k]
        idx = torch.arange(k)
        keep = torch.ones(len(te.y), dtype=torch.bool)
        keep[targets] = False  # clean accuracy on the test images that are not targets
        acc = (probs[:, keep].argmax(-1) == te.y[keep]).float().mean(1)
        out = {
            "targets": targets, "target_label": t_lab, "base_index": base_pick, "base": b_img,
            "poison": poisons, "objective": history,
            "success": poisoned[idx, targets].argmax(-1) == base_lab,
            "wrong_conf": poisoned[idx, targets, base_lab],
            "clean_acc_poisoned": acc[:k],
            **perturbation_size(poisons, b_img),
            "beta": torch.tensor(beta), "feature_dist": (f_p - setup["f_test"][targets]).norm(dim=1),
            "base_feature_dist": (f_b - setup["f_test"][targets]).norm(dim=1),
            "head_weight": heads.params["weight"][:1].detach().cpu(),
            "head_bias": heads.params["bias"][:1].detach().cpu(),
            "f_poison": f_p,
        }
        if controls:
            out["control_wrong_conf"] = probs[k:][idx, targets, base_lab]
            out["clean_acc"] = acc[k:]
        return out
    return cache.tensors("transfer_attack", key, run)


# --------------------------------------------------------------------------- end-to-end
def e2e_network(cfg) -> M.Classifier:
    """An untrained end-to-end victim of ``cfg.e2e_model``."""
    if cfg.e2e_model == "convnet":
        return M.convnet(cfg.e2e_num_classes, width=cfg.e2e_width)
    if cfg.e2e_model == "convnet_bn":
        return M.convnet_bn(cfg.e2e_num_classes)
    return M.alexnet_cifar(cfg.e2e_num_classes)


def e2e_name(cfg) -> str:
    return f"{cfg.e2e_model}-{cfg.e2e_width}" if cfg.e2e_model == "convnet" else cfg.e2e_model


def train_from_scratch(cfg, model, x, y, seed: int, desc: str):
    """The end-to-end victim's from-scratch recipe: ConvNet-BN with the project's fast recipe
    (``train.train_victim``, ``e2e_pretrain_epochs``; issue 23's floor), the others with Adam at
    ``e2e_pretrain_lr`` and augmentation."""
    if cfg.e2e_model == "convnet_bn":
        return T.train_victim(model, x, y, T.VictimRecipe(epochs=cfg.e2e_pretrain_epochs), seed=seed, desc=desc)
    return T.train_classifier(model, x, y, epochs=cfg.e2e_pretrain_epochs, lr=cfg.e2e_pretrain_lr,
                              optimizer="adam", augment=True, seed=seed, desc=desc)


def e2e_victim(cfg, data, cache: ArtifactCache) -> M.Classifier:
    """The victim network, trained from scratch on the clean end-to-end task (warm start)."""
    key = _key(cfg, "e2e_victim")

    def fit():
        T.seed_everything(cfg.seed + 11)
        m = e2e_network(cfg).to(T.default_device())  # its weights drawn on the CPU
        tr = data["e2e_train"]
        train_from_scratch(cfg, m, tr.x, tr.y, cfg.seed + 11, "train e2e victim")
        return {k: v.contiguous().cpu() for k, v in m.state_dict().items()}
    model = e2e_network(cfg)
    model.load_state_dict(cache.tensors("e2e_victim", key, fit))
    return model.to(T.default_device()).eval()


def e2e_targets(cfg, data, victim) -> torch.Tensor:
    te = data["e2e_test"]
    correct = T.predict_logits(victim, te.x).argmax(-1) == te.y
    pool = torch.nonzero(te.y == data["e2e_target_label"]).flatten()
    return _random_targets(correct, pool, cfg.e2e_targets, torch.Generator().manual_seed(cfg.seed + 12))


def _finetune(cfg, victim, x, y, poisons, base_label, seed, from_scratch=False):
    model = copy.deepcopy(victim)  # trains where the victim is
    if from_scratch:
        device = next(model.parameters()).device
        model.cpu()  # the fresh weights are drawn on the CPU, the same on any machine
        torch.manual_seed(seed)
        for mod in model.modules():
            if hasattr(mod, "reset_parameters") and mod is not model:
                mod.reset_parameters()
        model.to(device)
    T.unfreeze(model)
    xs = torch.cat([x, poisons])
    ys = torch.cat([y, torch.full((len(poisons),), base_label, dtype=torch.long)])
    if from_scratch:
        return train_from_scratch(cfg, model, xs, ys, seed, "retrain victim")
    return T.train_classifier(model, xs, ys, epochs=cfg.e2e_finetune_epochs, lr=cfg.e2e_finetune_lr,
                              optimizer="adam", seed=seed, desc="fine-tune victim")


def e2e_attack(cfg, data, victim, cache: ArtifactCache) -> dict:
    """End-to-end trials, every layer fine-tuned from the victim (warm start): per target,
    one plain poison (no watermark; Sec. 4.2.1, Fig. 4) and 1..N watermarked poisons at each
    opacity (Fig. 6b); and, for FC-1, retraining from scratch with the plain poison (each such
    victim's clean accuracy kept: the accuracy floor of its claim). Every poison's L2 and L-inf
    (0-255 scale) are kept, against its base and against the watermarked base the collision
    started from."""
    key = _key(cfg, "e2e_attack")

    def run():
        tr, te, bases = data["e2e_train"], data["e2e_test"], data["e2e_bases"]
        base_label = data["e2e_base_label"]
        targets = e2e_targets(cfg, data, victim)
        beta = beta_01(cfg.e2e_beta_255)
        counts, opac = list(cfg.e2e_poison_counts), list(cfg.e2e_opacities)
        nmax, k = max(counts), len(targets)
        success = torch.zeros(len(opac), len(counts), k, dtype=torch.bool)
        clean_acc = torch.zeros(len(opac), len(counts), k)
        linf_base = torch.zeros(len(opac), k, nmax)
        linf_anchor = torch.zeros(len(opac), k, nmax)
        l2_base = torch.zeros(len(opac), k, nmax)
        single = torch.zeros(k, dtype=torch.bool)
        single_acc = torch.zeros(k)
        single_size = {"l2_255": torch.zeros(k), "linf_255": torch.zeros(k)}
        n_scratch = min(cfg.scratch_targets, k)
        scratch_single = torch.zeros(n_scratch, dtype=torch.bool)
        scratch_acc = torch.zeros(n_scratch)
        kept, proj = {}, {}

        def trial(poisons, seed, t_img, tag=None):
            model = _finetune(cfg, victim, tr.x, tr.y, poisons, base_label, seed)
            if tag:  # feature projections of the first target
                proj[f"{tag}_before_feats"] = T.extract_features(victim, torch.cat([t_img, poisons]))
                proj[f"{tag}_after_feats"] = T.extract_features(model, torch.cat([t_img, poisons]))
                proj[f"{tag}_before_test"] = T.extract_features(victim, te.x)
                proj[f"{tag}_after_test"] = T.extract_features(model, te.x)
            return T.predict_logits(model, t_img).argmax(-1).item() == base_label, T.evaluate(model, te.x, te.y)

        bar = T.progress(total=k * (1 + len(opac) * len(counts)) + n_scratch, desc="end-to-end trials")
        for ti, t in enumerate(targets.tolist()):
            t_img = te.x[t:t + 1]
            # one plain poison (no watermark): the single-poison experiment
            p1, _ = craft_poisons(victim, bases.x[ti % nmax:ti % nmax + 1], t_img, beta=beta,
                                  iters=cfg.e2e_craft_iters, lr=cfg.craft_lr, desc="craft e2e poison")
            size = perturbation_size(p1, bases.x[ti % nmax:ti % nmax + 1])
            single_size["l2_255"][ti], single_size["linf_255"][ti] = size["l2_255"][0], size["linf_255"][0]
            single[ti], single_acc[ti] = trial(p1, cfg.seed + 1000 + ti, t_img, "single" if ti == 0 else None)
            bar.update(1)
            if ti < n_scratch:
                model = _finetune(cfg, victim, tr.x, tr.y, p1, base_label, cfg.seed + 2000 + ti, from_scratch=True)
                scratch_single[ti] = T.predict_logits(model, t_img).argmax(-1).item() == base_label
                scratch_acc[ti] = T.evaluate(model, te.x, te.y)
                bar.update(1)
            for oi, gamma in enumerate(opac):
                # poisons are crafted independently per base: craft the largest set once and
                # use its first n for every n (nested poison sets, as in a sweep over n)
                allp, _ = craft_poisons(victim, bases.x[:nmax], t_img, beta=beta, iters=cfg.e2e_craft_iters,
                                        lr=cfg.craft_lr, opacity=gamma, desc="craft e2e poisons")
                sb = perturbation_size(allp, bases.x[:nmax])
                linf_base[oi, ti], l2_base[oi, ti] = sb["linf_255"], sb["l2_255"]
                linf_anchor[oi, ti] = perturbation_size(allp, watermark(bases.x[:nmax], t_img, gamma))["linf_255"]
                if ti == 0:
                    kept[f"poisons_o{oi}"] = allp
                for ci, n in enumerate(counts):
                    tag = "multi" if (ti == 0 and ci == len(counts) - 1 and oi == len(opac) - 1) else None
                    success[oi, ci, ti], clean_acc[oi, ci, ti] = trial(allp[:n], cfg.seed + 1000 + ti, t_img, tag)
                    bar.update(1)
        bar.close()
        return {"targets": targets, "success": success, "clean_acc": clean_acc,
                "clean_acc_victim": torch.tensor(T.evaluate(victim, te.x, te.y)),
                "test_images": torch.tensor(len(te.y)),
                "counts": torch.tensor(counts), "opacities": torch.tensor(opac),
                "single": single, "single_clean_acc": single_acc,
                "single_l2_255": single_size["l2_255"], "single_linf_255": single_size["linf_255"],
                "linf_255_base": linf_base, "linf_255_anchor": linf_anchor, "l2_255_base": l2_base,
                "scratch_single": scratch_single, "scratch_clean_acc": scratch_acc, "beta": torch.tensor(beta),
                "bases": bases.x[:nmax], **kept, **proj}
    return cache.tensors("e2e_attack", key, run)


# --------------------------------------------------------------------------- entry points
@dataclass
class TransferRun:
    data: dict
    extractor: M.Classifier
    extractor_label: str
    setup: dict
    main: dict  # with the extractor's own-task accuracy (``extractor_own_task``)
    sweep: dict  # beta multiplier -> results (1.0 is ``main``)
    upsampled: dict | None  # poisons crafted at ``cfg.upsampled_size`` (None: skipped)


def run_transfer(cfg, cache: ArtifactCache) -> TransferRun:
    """Data, extractor, clean head and the attack at the paper's beta and each swept beta."""
    data = prepare_data(cfg)
    extractor, label = load_extractor(cfg, data, cache)
    setup = transfer_setup(cfg, data, extractor)
    # the extractor's own-task accuracy travels with the main run, where the claims read it
    main = {**transfer_attack(cfg, data, extractor, setup, cache, beta_multiplier=1.0),
            **extractor_own_task(cfg, data, extractor, label)}
    # the sweep needs no controls: they do not depend on beta
    sweep = {m: transfer_attack(cfg, data, extractor, setup, cache, beta_multiplier=m, n_targets=cfg.sweep_targets,
                                controls=False) for m in cfg.beta_sweep}
    sweep[1.0] = main
    # the explanation to test if success falls at the paper's beta: Eq. 2 weighs a poison by
    # 1/dim_b^2, so a 32x32 input is penalised far more than InceptionV3's 299x299 one
    upsampled = None
    if cfg.upsampled_size and cfg.upsampled_targets and label == pretrained.standin_label(cfg.standin_width):
        upsampled = transfer_attack(cfg, data, extractor, setup, cache, size=cfg.upsampled_size,
                                    n_targets=cfg.upsampled_targets, controls=False)
    return TransferRun(data, extractor, label, setup, main, sweep, upsampled)


def run_end_to_end(cfg, data, cache: ArtifactCache) -> tuple[M.Classifier, dict]:
    """The end-to-end victim and the 1..N-poison, per-opacity trials."""
    victim = e2e_victim(cfg, data, cache)
    return victim, e2e_attack(cfg, data, victim, cache)


# --------------------------------------------------------------------------- plan
def _plan_row(stage: str, trials: int, flops: float, basis: str) -> dict:
    return {"stage": stage, "trials": int(trials), "flops_per_trial": float(flops), "basis": basis}


def plan(cfg) -> list[dict]:
    """The stages this notebook runs at ``cfg``, for ``make plan``; runs nothing. FLOPs: each
    network's forward pass counted by ``poisonrepro.plan`` (FlopCounterMode, one 32x32 image),
    x3 for a forward and backward pass (crafting differentiates with respect to the input: the
    same passes), x the images each trial processes. Feature extraction (forward passes over
    a few thousand images) is left out: it is small beside the rest."""
    # by name, not by an import statement: the plan is no part of any stage's code hash
    P = importlib.import_module("poisonrepro.plan")
    shape = (3, 32, 32)
    extractor, name, dim, rows = P.extractor_plan(cfg)
    head = torch.nn.Linear(dim, 2)
    craft = P.model_train_flops(extractor, shape, cfg.craft_iters)
    heads = P.model_train_flops(head, (dim,), cfg.head_epochs * (2 * cfg.train_per_class + 1))
    basis = (f"{cfg.craft_iters} crafting iterations through {name} (forward x3, one image), and a cold-start "
             f"linear head on {2 * cfg.train_per_class + 1} features x {cfg.head_epochs} epochs")
    rows.append(_plan_row("transfer_attack", cfg.n_targets, craft + 2 * heads,
                          f"per target: {basis}, poisoned and paired control"))
    sweep = [m for m in cfg.beta_sweep if m != 1.0]
    if sweep:
        rows.append(_plan_row("transfer_attack (beta sweep)", len(sweep) * cfg.sweep_targets, craft + heads,
                              f"per target and swept beta ({len(sweep)} betas x {cfg.sweep_targets} targets): {basis}"))
    if cfg.upsampled_size and cfg.upsampled_targets and cfg.extractor == "standin_convnet":
        rows.append(_plan_row("transfer_attack (upsampled)", cfg.upsampled_targets, craft + heads,
                              f"per target, poisons at {cfg.upsampled_size}px resized to 32x32 for the network: "
                              f"{basis}"))
    victim = e2e_network(cfg)
    n_train = cfg.e2e_num_classes * cfg.e2e_train_per_class
    victim_name = e2e_name(cfg)
    rows.append(_plan_row("e2e_victim", 1, P.model_train_flops(victim, shape, n_train * cfg.e2e_pretrain_epochs),
                          f"{victim_name} trained on {n_train} images x {cfg.e2e_pretrain_epochs} epochs, forward x3"))
    nmax, opac, counts = max(cfg.e2e_poison_counts), len(cfg.e2e_opacities), cfg.e2e_poison_counts
    craft_images = cfg.e2e_craft_iters * (1 + opac * nmax)
    finetune_images = cfg.e2e_finetune_epochs * sum(n_train + n for n in (1, *counts * opac))
    rows.append(_plan_row("e2e_attack", cfg.e2e_targets,
                          P.model_train_flops(victim, shape, craft_images + finetune_images),
                          f"per target: {cfg.e2e_craft_iters} crafting iterations on 1 + {opac} x {nmax} poisons, "
                          f"and {1 + opac * len(counts)} fine-tunings of {victim_name} ({cfg.e2e_finetune_epochs} "
                          f"epochs of {n_train} images and the poisons), forward x3"))
    scratch = min(cfg.scratch_targets, cfg.e2e_targets)
    if scratch:
        rows.append(_plan_row("e2e_attack (from scratch)", scratch,
                              P.model_train_flops(victim, shape, (n_train + 1) * cfg.e2e_pretrain_epochs),
                              f"per target: {victim_name} retrained from scratch, {n_train + 1} images x "
                              f"{cfg.e2e_pretrain_epochs} epochs, forward x3"))
    return rows
