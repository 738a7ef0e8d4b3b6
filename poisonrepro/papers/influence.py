"""Notebook 08, Koh and Liang (ICML 2017): influence functions on a logistic-regression head
over frozen features, checked against leave-one-out retraining, and the training-set attack
(success against the number of perturbed training images).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .. import data as D
from .. import plots as P
from .. import pretrained
from .. import train as T
from ..attacks.influence import LogisticHead, influence_up_loss, training_set_attack
from ..cache import ArtifactCache
from ..config import as_dict, config_hash
from ..results import Results, rank_correlation, wilson
from ..train import progress

NOTEBOOK = "08_influence"
PAPER = "influence"
CODE_VERSION = "1"
plt = P.plt


def _key(cfg, keys, **extra) -> str:
    return config_hash(as_dict(cfg), keys=list(keys), extra=dict(extra, code=CODE_VERSION))


def prepare(cfg, cache: ArtifactCache) -> dict:
    """The binary task (two CIFAR-10 classes the extractor never saw), the frozen extractor,
    its features and the clean logistic-regression head."""
    train, test = D.load_cifar10("train"), D.load_cifar10("test")
    a, b = D.class_index(cfg.class_a), D.class_index(cfg.class_b)
    tr = D.stratified_subset(train.y, cfg.train_per_class, cfg.seed + 1, classes=[a, b])
    te = D.stratified_subset(test.y, cfg.test_per_class, cfg.seed + 3, classes=[a, b])
    extractor, label = pretrained.load_extractor(cfg, unseen=[a, b], cache=cache)
    T.freeze_for_transfer(extractor)
    x_tr, x_te = D.to_tensor(train.x[tr]), D.to_tensor(test.x[te])
    y_tr = torch.from_numpy((train.y[tr] == b).astype(np.int64))
    y_te = torch.from_numpy((test.y[te] == b).astype(np.int64))
    f_tr, f_te = T.extract_features(extractor, x_tr).double(), T.extract_features(extractor, x_te).double()
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
    return torch.stack(picked)


def leave_one_out_check(cfg, d, cache: ArtifactCache) -> dict:
    """Predicted (-1/n I_up,loss) against actual change of the first target's test loss when
    each of ``loo_points`` random training images is left out and the head refit."""
    key = _key(cfg, ["seed", "extractor", "standin_width", "standin_per_class", "standin_epochs", "standin_lr",
                     "class_a", "class_b", "train_per_class", "test_per_class", "weight_decay", "loo_points",
                     "n_targets"])

    def run():
        t = int(pick_targets(cfg, d)[0])
        ft, yt = d["f_te"][t:t + 1], d["y_te"][t:t + 1]
        n = len(d["y_tr"])
        infl = influence_up_loss(d["head"], d["f_tr"], d["y_tr"], ft, yt)
        pts = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 8))[:cfg.loo_points]
        base = d["head"].losses(ft, yt)[0]
        actual = []
        for i in progress(pts.tolist(), desc="leave-one-out refits", leave=False):
            keep = torch.arange(n) != i
            h = LogisticHead.fit(d["f_tr"][keep], d["y_tr"][keep], cfg.weight_decay)
            actual.append(float(h.losses(ft, yt)[0] - base))
        return {"target": torch.tensor(t), "influence": infl, "points": pts,
                "predicted": -infl[pts] / n, "actual": torch.tensor(actual, dtype=torch.float64)}
    return cache.tensors("influence_loo", key, run)


def attack(cfg, d, cache: ArtifactCache) -> dict:
    """The training-set attack on every target with each number of perturbed training images."""
    key = _key(cfg, ["seed", "extractor", "standin_width", "standin_per_class", "standin_epochs", "standin_lr",
                     "class_a", "class_b", "train_per_class", "test_per_class", "weight_decay", "n_targets",
                     "perturb_counts", "eps", "step_fraction", "attack_iters"])

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


# --------------------------------------------------------------------------- report
def fig_influence(cfg, d, loo, res: Results):
    """INF-1a: influence against actual leave-one-out retraining, and the most helpful and most
    harmful training images for one test image."""
    t = int(loo["target"])
    infl = loo["influence"]
    order = torch.argsort(infl)  # most negative I_up,loss: upweighting lowers the loss (helpful)
    picks = [("helpful", int(i)) for i in order[:3]] + [("harmful", int(i)) for i in order.flip(0)[:3]]
    fig = plt.figure(figsize=(12, 4))
    grid = fig.add_gridspec(2, 5, width_ratios=[2.5, 1, 1, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    ax.scatter(loo["actual"].numpy(), loo["predicted"].numpy(), s=14)
    lim = float(max(loo["actual"].abs().max(), loo["predicted"].abs().max())) * 1.1
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    rho = spearmanr(loo["actual"].numpy(), loo["predicted"].numpy()).statistic
    ax.set_xlabel("actual change in test loss (leave one out)")
    ax.set_ylabel("predicted: -I_up,loss / n")
    ax.set_title(f"influence vs retraining (Spearman {rho:.3f})", fontsize=10)
    names = [cfg.class_a, cfg.class_b]
    P.image_row([fig.add_subplot(grid[0, 1])], [d["x_te"][t]], [f"test image ({names[int(d['y_te'][t])]})"])
    fig.add_subplot(grid[1, 1]).axis("off")
    for k, (kind, i) in enumerate(picks):
        P.image_row([fig.add_subplot(grid[k // 3, 2 + k % 3])], [d["x_tr"][i]],
                    [f"{kind} ({names[int(d['y_tr'][i])]})\nI = {float(infl[i]):.2g}"])
    fig.suptitle("INF-1a influence functions on the logistic-regression head", fontsize=10)
    P.standin_note(fig, d["label"])
    res.save_figure(fig, "INF-1a")
    return fig


def attack_table(cfg, att) -> pd.DataFrame:
    """INF-1: success against the number of perturbed images, for each box size."""
    rows = []
    for ei, eps in enumerate(cfg.eps):
        for ci, n in enumerate(cfg.perturb_counts):
            f = att["flipped"][ei, ci]
            k, m = int(f.sum()), len(f)
            lo, hi = wilson(k, m)
            rows.append({"linf_box_255": round(255 * eps, 3), "perturbed_images": n, "targets": m,
                         "success_rate": k / m, "ci_low": lo, "ci_high": hi,
                         "max_linf_255": float(255 * att["linf"][ei, ci].max())})
    return pd.DataFrame(rows).set_index(["linf_box_255", "perturbed_images"])


def fig_attack(cfg, table: pd.DataFrame, res: Results, label: str):
    """INF-1b: success of the training-set attack against the number of perturbed images."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    P.success_curves(ax, table, "linf_box_255", "perturbed_images", lambda box: f"L-inf box {box:g}/255")
    ax.set_xlabel("perturbed training images")
    ax.set_ylabel("test predictions flipped (95% CI)")
    ax.legend(fontsize=8)
    ax.set_title("INF-1b training-set attack", fontsize=10)
    P.standin_note(fig, label)
    res.save_figure(fig, "INF-1b")
    return fig


def record_claims(cfg, loo, table: pd.DataFrame, res: Results, label: str):
    rho = float(spearmanr(loo["actual"].numpy(), loo["predicted"].numpy()).statistic)
    res.claim("INF-1", "influence functions predict leave-one-out retraining", "spearman(predicted, actual)",
              rho, ">= 0.9", setting=f"{cfg.loo_points} training points; {label}")
    smallest = table.xs(min(table.index.get_level_values(0)), level="linf_box_255")
    one = smallest.loc[min(smallest.index)]
    res.claim("INF-1", "perturbing one training image flips test predictions", "success_rate", one.success_rate,
              "> 0", setting=f"{min(smallest.index)} image(s), smallest box; {label}", paper_key="attack_success_rate",
              successes=int(round(one.success_rate * one.targets)), n=int(one.targets))
    largest = table.xs(max(table.index.get_level_values(0)), level="linf_box_255")
    res.claim("INF-1", "more perturbed images, more flipped predictions", "spearman(images, success_rate)",
              rank_correlation(largest.index, largest.success_rate), "> 0", setting=f"largest box; {label}")
