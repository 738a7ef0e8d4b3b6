"""Notebook 08, Koh and Liang (ICML 2017): influence functions on a logistic-regression head
over frozen features, checked against leave-one-out retraining on random and on the most
influential training points, and the training-set attack (success against the number of
perturbed training images) beside its control, the same images moved in random-sign
directions within the same box.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .. import data as D
from .. import plots as P
from .. import pretrained
from .. import stats as S
from .. import train as T
from ..attacks.influence import (LogisticHead, influence_up_loss, most_influential, random_sign_control,
                                 training_set_attack)
from ..cache import ArtifactCache
from ..config import as_dict, config_hash
from ..results import Results, rank_correlation, success_columns
from ..train import progress

NOTEBOOK = "08_influence"
PAPER = "influence"
CODE_VERSION = "2"  # 2: leave-one-out also on the most influential points; the control
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
    if not picked:
        raise RuntimeError("no correctly classified test image to attack: the clean head gets every one wrong")
    return torch.stack(picked)


def _loo(cfg, d, ft, yt, pts) -> torch.Tensor:
    """Actual change of the test loss when each training point in ``pts`` is left out."""
    n = len(d["y_tr"])
    base = d["head"].losses(ft, yt)[0]
    actual = []
    for i in progress(pts.tolist(), desc="leave-one-out refits", leave=False):
        keep = torch.arange(n) != i
        h = LogisticHead.fit(d["f_tr"][keep], d["y_tr"][keep], cfg.weight_decay)
        actual.append(float(h.losses(ft, yt)[0] - base))
    return torch.tensor(actual, dtype=torch.float64)


def leave_one_out_check(cfg, d, cache: ArtifactCache) -> dict:
    """Predicted (-1/n I_up,loss) against actual change of the first target's test loss when
    a training image is left out and the head refit: for ``loo_points`` random training images
    and for the ``loo_points`` most influential ones (largest |I_up,loss|, where the paper's
    Fig. 2 checks it and where the linear approximation is most strained)."""
    key = _key(cfg, ["seed", "extractor", "standin_width", "standin_per_class", "standin_epochs", "standin_lr",
                     "class_a", "class_b", "train_per_class", "test_per_class", "weight_decay", "loo_points",
                     "n_targets"])

    def run():
        t = int(pick_targets(cfg, d)[0])
        ft, yt = d["f_te"][t:t + 1], d["y_te"][t:t + 1]
        n = len(d["y_tr"])
        infl = influence_up_loss(d["head"], d["f_tr"], d["y_tr"], ft, yt)
        pts = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 8))[:cfg.loo_points]
        top = torch.argsort(infl.abs(), descending=True)[:cfg.loo_points]
        return {"target": torch.tensor(t), "influence": infl,
                "points": pts, "predicted": -infl[pts] / n, "actual": _loo(cfg, d, ft, yt, pts),
                "top_points": top, "top_predicted": -infl[top] / n, "top_actual": _loo(cfg, d, ft, yt, top)}
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


def control(cfg, d, cache: ArtifactCache) -> dict:
    """The attack's control on the same targets: for each box and number of images, the
    same most influential training images moved to random corners of the box (random sign
    per pixel), the head refit, the target's prediction checked."""
    key = _key(cfg, ["seed", "extractor", "standin_width", "standin_per_class", "standin_epochs", "standin_lr",
                     "class_a", "class_b", "train_per_class", "test_per_class", "weight_decay", "n_targets",
                     "perturb_counts", "eps"])

    def run():
        targets = pick_targets(cfg, d)
        gen = torch.Generator().manual_seed(cfg.seed + 9)
        shape = (len(cfg.eps), len(cfg.perturb_counts), len(targets))
        flipped = torch.zeros(shape, dtype=torch.bool)
        bar = progress(total=flipped.numel(), desc="random-sign control")
        for ti, t in enumerate(targets.tolist()):
            with torch.no_grad():
                ft = d["extractor"].features(d["x_te"][t:t + 1])
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


# --------------------------------------------------------------------------- report
LOO_MIN_RHO = 0.9       # the claim: predicted and actual leave-one-out changes agree in rank to at least this
PAPER_RATE_MIN = 0.5    # the paper's 57% with one image: a majority of the targets flipped
TREND_MIN_CHANGE = 0.1  # more images, more flips: at least 10 points more success from the fewest to the most
CONTROL_MARGIN = 0.0    # the attack flips more targets than its control (any margin; n decides what is visible)


def loo_table(loo) -> pd.DataFrame:
    """INF-1a: agreement of influence with leave-one-out refits, on random and on the most
    influential training points."""
    rows = []
    for name, pre in (("random", ""), ("most influential", "top_")):
        a, p = loo[pre + "actual"].numpy(), loo[pre + "predicted"].numpy()
        rows.append({"points": name, "n": len(a), "spearman": rank_correlation(p, a),
                     "pearson": float(np.corrcoef(p, a)[0, 1]) if len(a) > 1 and a.std() > 0 and p.std() > 0
                     else float("nan"),
                     "max_abs_actual": float(np.abs(a).max()), "max_abs_predicted": float(np.abs(p).max())})
    return pd.DataFrame(rows).set_index("points")


def fig_influence(cfg, d, loo, res: Results):
    """INF-1a: influence against actual leave-one-out retraining (random and most influential
    training points), and the most helpful and most harmful training images for one test image."""
    t = int(loo["target"])
    infl = loo["influence"]
    order = torch.argsort(infl)  # most negative I_up,loss: upweighting lowers the loss (helpful)
    picks = [("helpful", int(i)) for i in order[:3]] + [("harmful", int(i)) for i in order.flip(0)[:3]]
    fig = plt.figure(figsize=(12, 4))
    grid = fig.add_gridspec(2, 5, width_ratios=[2.5, 1, 1, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    lim = 0.0
    for name, pre, color in (("random", "", "tab:blue"), ("most influential", "top_", "tab:orange")):
        a, p = loo[pre + "actual"].numpy(), loo[pre + "predicted"].numpy()
        rho = spearmanr(a, p).statistic if len(a) > 2 and np.ptp(a) > 0 and np.ptp(p) > 0 else float("nan")
        ax.scatter(a, p, s=14, color=color, label=f"{name} (Spearman {rho:.3f})")
        lim = max(lim, float(np.abs(a).max()), float(np.abs(p).max()))
    lim = 1.1 * lim or 1.0
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    ax.set_xlabel("actual change in test loss (leave one out)")
    ax.set_ylabel("predicted: -I_up,loss / n")
    ax.legend(fontsize=8, title=f"{cfg.loo_points} training points each", title_fontsize=8)
    ax.set_title("influence vs retraining", fontsize=10)
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


def attack_table(cfg, att, ctl) -> pd.DataFrame:
    """INF-1: success against the number of perturbed images, for each box size, beside the
    random-sign control on the same targets."""
    rows = []
    for ei, eps in enumerate(cfg.eps):
        for ci, n in enumerate(cfg.perturb_counts):
            f, c = att["flipped"][ei, ci], ctl["flipped"][ei, ci]
            m = len(f)
            rows.append({"linf_box_255": round(255 * eps, 3), "perturbed_images": n, "targets": m,
                         **success_columns(int(f.sum()), m),
                         **success_columns(int(c.sum()), len(c), prefix="control_"),
                         "max_linf_255": float(255 * att["linf"][ei, ci].max()) if m else float("nan")})
    return pd.DataFrame(rows).set_index(["linf_box_255", "perturbed_images"])


def fig_attack(cfg, table: pd.DataFrame, res: Results, label: str):
    """INF-1b: success of the training-set attack against the number of perturbed images, and
    its random-sign control (dashed)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    P.success_curves(ax, table, "linf_box_255", "perturbed_images", lambda box: f"attack, L-inf box {box:g}/255")
    colors = [c.lines[0].get_color() for c in ax.containers]  # one per box, in groupby order
    for color, (box, part) in zip(colors, table.groupby(level="linf_box_255")):
        P.success_curve(ax, part.index.get_level_values("perturbed_images"), part.control_success_rate,
                        part.control_ci_low, part.control_ci_high, f"random-sign control, box {box:g}/255", marker="x")
        line, caps, bars = ax.containers[-1].lines  # the same box's colour, dashed
        line.set(color=color, linestyle="--")
        for art in (*caps, *bars):
            art.set_color(color)
    ax.set_xlabel("perturbed training images")
    ax.set_ylabel("test predictions flipped (95% CI)")
    ax.legend(fontsize=7)
    ax.set_title("INF-1b training-set attack and its control", fontsize=10)
    P.standin_note(fig, label)
    res.save_figure(fig, "INF-1b")
    return fig


def record_claims(cfg, loo, att, ctl, res: Results, label: str):
    """Every claim decided by its test on the per-target (per-point) data; the thresholds are
    the module's constants above, fixed from the claims' wording before any run."""
    for name, pre in (("random", ""), ("the most influential (largest |I_up,loss|)", "top_")):
        res.claim("INF-1", "influence functions predict leave-one-out retraining",
                  f"spearman(predicted, actual), {'random' if not pre else 'top'} points",
                  S.correlation_test(loo[pre + "predicted"].numpy(), loo[pre + "actual"].numpy(), ">", LOO_MIN_RHO),
                  setting=f"{len(loo[pre + 'actual'])} {name} training points, one test image; "
                          f"minimum rho {LOO_MIN_RHO}; {label}")
    counts = list(cfg.perturb_counts)
    i1, imax = counts.index(min(counts)), counts.index(max(counts))
    for ei, eps in enumerate(cfg.eps):
        box = f"L-inf box {255 * eps:g}/255"
        f, c = att["flipped"][ei], ctl["flipped"][ei]   # [count, target]
        n = f.shape[1]
        res.claim("INF-1", "perturbing one training image flips most test predictions (paper: 57%)",
                  "success_rate (one image)",
                  S.rate_test(int(f[i1].sum()), n, PAPER_RATE_MIN, ">"),
                  setting=f"{counts[i1]} image(s), {box}, {n} targets; a majority, as the paper's 57%; {label}",
                  paper_key="attack_success_rate" if ei == 0 else None)
        res.claim("INF-1", "more perturbed images, more flipped predictions", "change of success_rate over the images",
                  S.count_trend_test(counts, f.sum(1).numpy(), [n] * len(counts), ">", TREND_MIN_CHANGE),
                  setting=f"{counts[0]}-{counts[-1]} images, {box}, {n} targets each; "
                          f"minimum rise {TREND_MIN_CHANGE:g} over the sweep; {label}")
        res.claim("INF-1", "the influence attack flips more targets than random-sign perturbations of the same images",
                  "success_rate - control_success_rate",
                  S.rate_difference_test(int(f[imax].sum()), n, int(c[imax].sum()), c.shape[1], CONTROL_MARGIN, ">"),
                  setting=f"{counts[imax]} images, {box}, the same {n} targets; {label}")
