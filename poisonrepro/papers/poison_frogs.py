"""Notebook 01, Poison Frogs (Shafahi et al., NeurIPS 2018): the experiments.

Transfer learning (Sec. 4.1): a frozen feature extractor, a binary task on two classes the
extractor never saw, one feature-collision poison per target, the last layer retrained
from a cold start (Adam 0.01, 100 epochs, batch 32). End-to-end (Sec. 4.2): a network
pretrained on the task and fine-tuned, every layer, on the poisoned set; watermarked
poisons, 1 to N per target.

Each stage is cached by the hash of the config keys it depends on, so an interrupted run
resumes where it stopped.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .. import data as D
from .. import models as M
from .. import pretrained
from .. import train as T
from ..attacks.feature_collision import craft_poisons, paper_beta
from ..cache import ArtifactCache
from ..config import as_dict, config_hash

NOTEBOOK = "01_poison_frogs"
PAPER = "poison_frogs"
INPUT_DIM = 3 * 32 * 32
CODE_VERSION = "4"  # bump when a stage's computation changes, to invalidate its cache


def _key(cfg, keys, **extra) -> str:
    return config_hash(as_dict(cfg), keys=list(keys), extra=dict(extra, code=CODE_VERSION))


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
    classes the transfer task does not use (``poisonrepro.pretrained``), labeled."""
    return pretrained.load_extractor(cfg, unseen=data["unseen"], cache=cache)


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
        torch.manual_seed(int(seed))  # cold start
        heads.append(torch.nn.Linear(feats_train.shape[1], 2))
    return T.train_many(heads, pool_x, pool_y, sets, epochs=cfg.head_epochs, lr=cfg.head_lr,
                        optimizer="adam", batch_size=cfg.head_batch_size, seed=cfg.seed, desc="retrain heads")


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


def transfer_attack(cfg, data, extractor, setup, cache: ArtifactCache, beta_multiplier: float = 1.0) -> dict:
    """One poison per target, then one cold-start head per target, and a paired control head
    per target (same seed, the clean base instead of the poison). Returns per-target tensors; cached."""
    beta = paper_beta(cfg.beta0, extractor.feature_dim, INPUT_DIM) * beta_multiplier
    key = _key(cfg, ["seed", "extractor", "standin_width", "standin_per_class", "standin_epochs",
                     "standin_lr", "transfer_class_a", "transfer_class_b", "train_per_class",
                     "test_per_class", "n_targets", "head_epochs", "head_lr", "head_batch_size",
                     "craft_iters", "craft_lr", "beta0"], beta_multiplier=beta_multiplier)

    def run():
        tr, te, bases = data["transfer_train"], data["transfer_test"], data["transfer_bases"]
        targets = setup["targets"]
        t_img, t_lab = te.x[targets], te.y[targets]
        base_lab = 1 - t_lab
        gen = torch.Generator().manual_seed(cfg.seed + 7)
        base_pick = torch.stack([torch.nonzero(bases.y == c).flatten()[
            torch.randint(int((bases.y == c).sum()), (1,), generator=gen)][0] for c in base_lab])
        b_img = bases.x[base_pick]
        poisons, history = craft_poisons(extractor, b_img, t_img, beta=beta, iters=cfg.craft_iters,
                                         lr=cfg.craft_lr, desc=f"craft transfer poisons (beta x{beta_multiplier:g})")
        f_p = T.extract_features(extractor, poisons)
        f_b = T.extract_features(extractor, b_img)
        k = len(targets)
        # K poisoned heads and K paired controls: the same cold start and the same set size,
        # with the unperturbed base image in place of the poison
        seeds = [cfg.seed + 100 + i for i in range(k)] * 2
        heads = _train_heads(cfg, setup["f_train"], tr.y, torch.cat([f_p, f_b])[:, None],
                             torch.cat([base_lab, base_lab])[:, None], seeds)
        probs = heads.predict(setup["f_test"]).softmax(-1)  # [2K, N, 2]
        poisoned, control = probs[:k], probs[k:]
        idx = torch.arange(k)
        keep = torch.ones(len(te.y), dtype=torch.bool)
        keep[targets] = False  # clean accuracy on the test images that are not targets
        acc = (probs[:, keep].argmax(-1) == te.y[keep]).float().mean(1)
        return {
            "targets": targets, "target_label": t_lab, "base_index": base_pick, "base": b_img,
            "poison": poisons, "objective": history,
            "success": poisoned[idx, targets].argmax(-1) == base_lab,
            "wrong_conf": poisoned[idx, targets, base_lab],
            "control_wrong_conf": control[idx, targets, base_lab],
            "clean_acc_poisoned": acc[:k], "clean_acc": acc[k:],
            "l2": (poisons - b_img).flatten(1).norm(dim=1),
            "linf": (poisons - b_img).flatten(1).abs().max(dim=1).values,
            "beta": torch.tensor(beta), "feature_dist": (f_p - setup["f_test"][targets]).norm(dim=1),
            "head_weight": heads.params["weight"][:1].detach(), "head_bias": heads.params["bias"][:1].detach(),
            "f_poison": f_p,
        }
    return cache.tensors("transfer_attack", key, run)


# --------------------------------------------------------------------------- end-to-end
def e2e_victim(cfg, data, cache: ArtifactCache) -> M.Classifier:
    """The victim network, trained from scratch on the clean end-to-end task (warm start)."""
    key = _key(cfg, ["seed", "e2e_model", "e2e_width", "e2e_num_classes", "e2e_target_class",
                     "e2e_base_class", "e2e_train_per_class", "e2e_pretrain_epochs", "e2e_pretrain_lr"])
    make = (lambda: M.convnet(cfg.e2e_num_classes, width=cfg.e2e_width)) if cfg.e2e_model == "convnet" \
        else (lambda: M.alexnet_cifar(cfg.e2e_num_classes))

    def fit():
        T.seed_everything(cfg.seed + 11)
        m = make()
        tr = data["e2e_train"]
        T.train_classifier(m, tr.x, tr.y, epochs=cfg.e2e_pretrain_epochs, lr=cfg.e2e_pretrain_lr,
                           optimizer="adam", augment=True, seed=cfg.seed + 11, desc="train e2e victim")
        return m.state_dict()
    model = make()
    model.load_state_dict(cache.tensors("e2e_victim", key, fit))
    return model.eval()


def e2e_targets(cfg, data, victim) -> torch.Tensor:
    te = data["e2e_test"]
    correct = T.predict_logits(victim, te.x).argmax(-1) == te.y
    pool = torch.nonzero(te.y == data["e2e_target_label"]).flatten()
    return _random_targets(correct, pool, cfg.e2e_targets, torch.Generator().manual_seed(cfg.seed + 12))


def _finetune(cfg, victim, x, y, poisons, base_label, seed, from_scratch=False):
    model = copy.deepcopy(victim)
    if from_scratch:
        torch.manual_seed(seed)
        for mod in model.modules():
            if hasattr(mod, "reset_parameters") and mod is not model:
                mod.reset_parameters()
    T.unfreeze(model)
    xs = torch.cat([x, poisons])
    ys = torch.cat([y, torch.full((len(poisons),), base_label, dtype=torch.long)])
    epochs = cfg.e2e_pretrain_epochs if from_scratch else cfg.e2e_finetune_epochs
    lr = cfg.e2e_pretrain_lr if from_scratch else cfg.e2e_finetune_lr
    return T.train_classifier(model, xs, ys, epochs=epochs, lr=lr, optimizer="adam",
                              augment=from_scratch, seed=seed, desc="retrain victim")


def e2e_attack(cfg, data, victim, cache: ArtifactCache) -> dict:
    """Success of 1..N watermarked poisons per target, every layer fine-tuned (warm start),
    plus retraining from scratch with one plain poison and with the most watermarked ones (FC-1)."""
    key = _key(cfg, ["seed", "e2e_model", "e2e_width", "e2e_num_classes", "e2e_target_class",
                     "e2e_base_class", "e2e_train_per_class", "e2e_pretrain_epochs", "e2e_pretrain_lr",
                     "e2e_finetune_epochs", "e2e_finetune_lr", "e2e_poison_counts", "e2e_opacities",
                     "e2e_targets", "e2e_craft_iters", "e2e_beta0", "scratch_targets", "test_per_class"])

    def run():
        tr, te, bases = data["e2e_train"], data["e2e_test"], data["e2e_bases"]
        base_label = data["e2e_base_label"]
        targets = e2e_targets(cfg, data, victim)
        beta = paper_beta(cfg.e2e_beta0, victim.feature_dim, INPUT_DIM)
        counts, opac = list(cfg.e2e_poison_counts), list(cfg.e2e_opacities)
        success = torch.zeros(len(opac), len(counts), len(targets), dtype=torch.bool)
        clean_acc = torch.zeros(len(opac), len(counts), len(targets))
        poisons_kept = {}
        proj = {}
        nmax = max(counts)
        n_scratch = min(cfg.scratch_targets, len(targets))
        # from scratch: one poison without watermark (FC-1's budget) and the largest watermarked set
        scratch_single = torch.zeros(n_scratch, dtype=torch.bool)
        scratch_multi = torch.zeros(n_scratch, dtype=torch.bool)
        bar = T.progress(total=len(targets) * len(opac) * len(counts), desc="end-to-end trials")
        for ti, t in enumerate(targets.tolist()):
            t_img = te.x[t:t + 1]
            for oi, gamma in enumerate(opac):
                # poisons are crafted independently per base: craft the largest set once and
                # use its first n for every n (nested poison sets, as in a sweep over n)
                allp, _ = craft_poisons(victim, bases.x[:nmax], t_img, beta=beta, iters=cfg.e2e_craft_iters,
                                        lr=cfg.craft_lr, opacity=gamma, desc="craft e2e poisons")
                if ti == 0:
                    poisons_kept[f"poisons_o{oi}"] = allp
                for ci, n in enumerate(counts):
                    model = _finetune(cfg, victim, tr.x, tr.y, allp[:n], base_label, cfg.seed + 1000 + ti)
                    success[oi, ci, ti] = T.predict_logits(model, t_img).argmax(-1).item() == base_label
                    clean_acc[oi, ci, ti] = T.evaluate(model, te.x, te.y)
                    tags = [tag for tag, hit in (("single", ci == 0 and oi == 0),
                                                 ("multi", ci == len(counts) - 1 and oi == len(opac) - 1)) if hit]
                    for tag in tags if ti == 0 else ():  # feature projections of the first target
                        proj[f"{tag}_before_feats"] = T.extract_features(victim, torch.cat([t_img, allp[:n]]))
                        proj[f"{tag}_after_feats"] = T.extract_features(model, torch.cat([t_img, allp[:n]]))
                        proj[f"{tag}_before_test"] = T.extract_features(victim, te.x)
                        proj[f"{tag}_after_test"] = T.extract_features(model, te.x)
                    bar.update(1)
                if ti < n_scratch and oi in (0, len(opac) - 1):
                    n = 1 if oi == 0 else nmax
                    model = _finetune(cfg, victim, tr.x, tr.y, allp[:n], base_label, cfg.seed + 2000 + ti,
                                      from_scratch=True)
                    hit = T.predict_logits(model, t_img).argmax(-1).item() == base_label
                    (scratch_single if oi == 0 else scratch_multi)[ti] = hit
        bar.close()
        return {"targets": targets, "success": success, "clean_acc": clean_acc,
                "clean_acc_victim": torch.tensor(T.evaluate(victim, te.x, te.y)),
                "counts": torch.tensor(counts), "opacities": torch.tensor(opac),
                "scratch_single": scratch_single, "scratch_multi": scratch_multi, "beta": torch.tensor(beta),
                "bases": bases.x[:nmax], **poisons_kept, **proj}
    return cache.tensors("e2e_attack", key, run)


# --------------------------------------------------------------------------- entry points
@dataclass
class TransferRun:
    data: dict
    extractor: M.Classifier
    extractor_label: str
    setup: dict
    main: dict
    sweep: dict  # beta multiplier -> results (1.0 is ``main``)


def run_transfer(cfg, cache: ArtifactCache) -> TransferRun:
    """Data, extractor, clean head and the attack at the paper's beta and each swept beta."""
    data = prepare_data(cfg)
    extractor, label = load_extractor(cfg, data, cache)
    setup = transfer_setup(cfg, data, extractor)
    main = transfer_attack(cfg, data, extractor, setup, cache, beta_multiplier=1.0)
    sweep = {m: transfer_attack(cfg, data, extractor, setup, cache, beta_multiplier=m) for m in cfg.beta_sweep}
    sweep[1.0] = main
    return TransferRun(data, extractor, label, setup, main, sweep)


def run_end_to_end(cfg, data, cache: ArtifactCache) -> tuple[M.Classifier, dict]:
    """The end-to-end victim and the 1..N-poison, per-opacity trials."""
    victim = e2e_victim(cfg, data, cache)
    return victim, e2e_attack(cfg, data, victim, cache)
