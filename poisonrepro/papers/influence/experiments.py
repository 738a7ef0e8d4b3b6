"""Notebook 08, Koh and Liang (ICML 2017): the experiments (figures, tables and claims are in
``report``). Influence functions on a logistic-regression head over frozen features, checked
against leave-one-out retraining on random and on the most influential training points, and
the training-set attack (success against the number of perturbed training images) beside its
control, the same images moved in random-sign directions within the same box.

Devices: the extractor, the head and the head's data (features, labels) sit on
``T.default_device()``; the images stay on the CPU (the extractor's batches go to it, the crafting
loop's deltas and draws stay on the CPU), and every cached result is on the CPU.
"""
from __future__ import annotations

import importlib

import numpy as np
import torch

from ... import data as D
from ... import models as M
from ... import pretrained
from ... import train as T
from ...attacks.influence import (LogisticHead, extract, influence_up_loss, most_influential, random_sign_control,
                                  training_set_attack)
from ...cache import ArtifactCache, stage_key
from ...train import progress


def _key(cfg, stage, **extra) -> str:
    """The stage's key: the fields that feed it (``poisonrepro.config.influence``) and this code."""
    return stage_key(cfg, stage, __name__, **extra)


def prepare(cfg, cache: ArtifactCache) -> dict:
    """The binary task (two CIFAR-10 classes the extractor never saw), the frozen extractor,
    its features and the clean logistic-regression head. The images ``x_tr``, ``x_te`` are on the
    CPU; the extractor, the head, the features and the labels on ``T.default_device()``."""
    dev = T.default_device()
    train, test = D.load_cifar10("train"), D.load_cifar10("test")
    a, b = D.class_index(cfg.class_a), D.class_index(cfg.class_b)
    tr = D.stratified_subset(train.y, cfg.train_per_class, cfg.seed + 1, classes=[a, b])
    te = D.stratified_subset(test.y, cfg.test_per_class, cfg.seed + 3, classes=[a, b])
    extractor, label = pretrained.load_extractor(cfg, unseen=[a, b], cache=cache)
    extractor = extractor.to(dev)
    T.freeze_for_transfer(extractor)
    x_tr, x_te = D.to_tensor(train.x[tr]), D.to_tensor(test.x[te])
    y_tr = torch.from_numpy((train.y[tr] == b).astype(np.int64)).to(dev)
    y_te = torch.from_numpy((test.y[te] == b).astype(np.int64)).to(dev)
    f_tr, f_te = (T.extract_features(extractor, x).double().to(dev) for x in (x_tr, x_te))
    head = LogisticHead.fit(f_tr, y_tr, cfg.weight_decay)
    return {"extractor": extractor, "label": label, "x_tr": x_tr, "y_tr": y_tr, "x_te": x_te, "y_te": y_te,
            "f_tr": f_tr, "f_te": f_te, "head": head,
            "clean_acc": float((head.predict(f_te) == y_te).double().mean())}


def pick_targets(cfg, d) -> torch.Tensor:
    """Correctly classified test images, alternating between the classes, in a seeded order."""
    correct = d["head"].predict(d["f_te"]) == d["y_te"]
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    pools = [torch.nonzero(correct & (d["y_te"] == c)).flatten() for c in (0, 1)]
    pools = [p[torch.randperm(len(p), generator=gen)] for p in pools]
    picked = [pools[i % 2][i // 2] for i in range(cfg.n_targets) if i // 2 < len(pools[i % 2])]
    if not picked:
        raise RuntimeError("no correctly classified test image to attack: the clean head gets every one wrong")
    return torch.stack(picked).cpu()


def _loo(cfg, d, ft, yt, pts) -> torch.Tensor:
    """Actual change of the test loss when each training point in ``pts`` is left out."""
    n = len(d["y_tr"])
    base = d["head"].losses(ft, yt)[0]
    actual = []
    for i in progress(pts.tolist(), desc="leave-one-out refits", leave=False):
        keep = torch.arange(n, device=d["f_tr"].device) != i
        h = LogisticHead.fit(d["f_tr"][keep], d["y_tr"][keep], cfg.weight_decay)
        actual.append(float(h.losses(ft, yt)[0] - base))
    return torch.tensor(actual, dtype=torch.float64)


def leave_one_out_check(cfg, d, cache: ArtifactCache) -> dict:
    """Predicted (-1/n I_up,loss) against actual change of the first target's test loss when
    a training image is left out and the head refit: for ``loo_points`` random training images
    and for the ``loo_points`` most influential ones (largest |I_up,loss|, where the paper's
    Fig. 2 checks it and where the linear approximation is most strained)."""
    key = _key(cfg, "influence_loo")

    def run():
        t = int(pick_targets(cfg, d)[0])
        ft, yt = d["f_te"][t:t + 1], d["y_te"][t:t + 1]
        n = len(d["y_tr"])
        infl = influence_up_loss(d["head"], d["f_tr"], d["y_tr"], ft, yt)
        pts = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 8))[:cfg.loo_points]
        top = torch.argsort(infl.abs(), descending=True)[:cfg.loo_points].cpu()
        return {"target": torch.tensor(t), "influence": infl.cpu(),
                "points": pts, "predicted": (-infl[pts] / n).cpu(), "actual": _loo(cfg, d, ft, yt, pts),
                "top_points": top, "top_predicted": (-infl[top] / n).cpu(), "top_actual": _loo(cfg, d, ft, yt, top)}
    return cache.tensors("influence_loo", key, run)


def attack(cfg, d, cache: ArtifactCache) -> dict:
    """The training-set attack on every target with each number of perturbed training images."""
    key = _key(cfg, "influence_attack")

    def run():
        targets = pick_targets(cfg, d)
        shape = (len(cfg.eps), len(cfg.perturb_counts), len(targets))
        flipped, linf = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape)
        bar = progress(total=flipped.numel(), desc="training-set attacks")
        for ei, eps in enumerate(cfg.eps):
            for ci, n in enumerate(cfg.perturb_counts):
                for ti, t in enumerate(targets.tolist()):
                    ok, idx, x, _ = training_set_attack(
                        d["extractor"], d["head"], d["x_tr"], d["y_tr"], d["f_tr"], d["x_te"][t:t + 1],
                        d["y_te"][t:t + 1], n_perturb=n, eps=eps, step=cfg.step_fraction * eps,
                        iters=cfg.attack_iters, weight_decay=cfg.weight_decay)
                    flipped[ei, ci, ti] = ok
                    linf[ei, ci, ti] = float((x - d["x_tr"][idx]).abs().max())
                    bar.update(1)
        bar.close()
        return {"targets": targets, "flipped": flipped, "linf": linf, "counts": torch.tensor(cfg.perturb_counts),
                "eps": torch.tensor(cfg.eps)}
    return cache.tensors("influence_attack", key, run)


def control(cfg, d, cache: ArtifactCache) -> dict:
    """The attack's control on the same targets: for each box and number of images, the
    same most influential training images moved to random corners of the box (random sign
    per pixel), the head refit, the target's prediction checked."""
    key = _key(cfg, "influence_control")

    def run():
        targets = pick_targets(cfg, d)
        gen = torch.Generator().manual_seed(cfg.seed + 9)
        shape = (len(cfg.eps), len(cfg.perturb_counts), len(targets))
        flipped = torch.zeros(shape, dtype=torch.bool)
        bar = progress(total=flipped.numel(), desc="random-sign control")
        for ti, t in enumerate(targets.tolist()):
            with torch.no_grad():
                ft = extract(d["extractor"], d["x_te"][t:t + 1], d["f_te"].device)
            yt = d["y_te"][t:t + 1]
            order = most_influential(d["head"], d["f_tr"], d["y_tr"], ft, yt, max(cfg.perturb_counts))
            for ei, eps in enumerate(cfg.eps):
                for ci, n in enumerate(cfg.perturb_counts):
                    flipped[ei, ci, ti] = random_sign_control(
                        d["extractor"], d["x_tr"], d["y_tr"], d["f_tr"], ft, yt, order[:n], eps=eps,
                        weight_decay=cfg.weight_decay, generator=gen)[0]
                    bar.update(1)
        bar.close()
        return {"targets": targets, "flipped": flipped}
    return cache.tensors("influence_control", key, run)


# --------------------------------------------------------------------------- plan
def _plan_row(stage: str, trials: int, flops: float, basis: str) -> dict:
    return {"stage": stage, "trials": int(trials), "flops_per_trial": float(flops), "basis": basis}


def plan(cfg) -> list[dict]:
    """The stages this notebook runs at ``cfg``, for ``make plan``; runs nothing. FLOPs: the
    extractor's forward pass counted by ``poisonrepro.plan`` (FlopCounterMode, one 32x32 image),
    x3 for a forward and backward pass through it; the logistic head's L-BFGS fits counted as
    500 gradient steps over its training features."""
    P = importlib.import_module("poisonrepro.plan")  # by name: the plan is no part of any stage's code hash
    shape = (3, 32, 32)
    extractor, name, dim, rows = P.extractor_plan(cfg)
    n = 2 * cfg.train_per_class
    fit = P.model_train_flops(torch.nn.Linear(dim, 1), (dim,), 500 * n)
    rows.append(_plan_row("task", 1, P.model_train_flops(extractor, shape, n + 2 * cfg.test_per_class, passes=1.0) + fit,
                          f"features of {n} training and {2 * cfg.test_per_class} test images ({name}, forward), "
                          "the clean head"))
    rows.append(_plan_row("influence_loo", 2 * cfg.loo_points, fit,
                          "per left-out training point (random and most influential): the head refit"))
    mean_images = sum(cfg.perturb_counts) / len(cfg.perturb_counts)
    trials = len(cfg.eps) * len(cfg.perturb_counts) * cfg.n_targets
    rows.append(_plan_row("influence_attack", trials,
                          cfg.attack_iters * (P.model_train_flops(extractor, shape, mean_images) + fit),
                          f"per box, number of images and target: {cfg.attack_iters} signed steps on "
                          f"{mean_images:g} images (mean) through {name} (forward x3), the head refit each step"))
    rows.append(_plan_row("influence_control", trials,
                          P.model_train_flops(extractor, shape, mean_images, passes=1.0) + fit,
                          "per box, number of images and target: the images' features (forward), the head refit"))
    return rows
