"""Notebook 08, influence functions: figures, tables and claims from the results of
``influence.experiments`` (every table is saved here). Nothing here is cached, so an edit here
changes no cache key.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from ... import plots as P
from ... import stats as S
from ...results import Results, rank_correlation, success_columns

plt = P.plt
LOO_MIN_RHO = 0.9       # the claim: predicted and actual leave-one-out changes agree in rank to at least this
PAPER_RATE_MIN = 0.5    # the paper's 57% with one image: a majority of the targets flipped
TREND_MIN_CHANGE = 0.1  # more images, more flips: at least 10 points more success from the fewest to the most
CONTROL_MARGIN = 0.0    # the attack flips more targets than its control (any margin; n decides what is visible)


def loo_table(loo, res: Results) -> pd.DataFrame:
    """INF-1a (saved): agreement of influence with leave-one-out refits, on random and on the most
    influential training points."""
    rows = []
    for name, pre in (("random", ""), ("most influential", "top_")):
        a, p = loo[pre + "actual"].numpy(), loo[pre + "predicted"].numpy()
        rows.append({"points": name, "n": len(a), "spearman": rank_correlation(p, a),
                     "pearson": float(np.corrcoef(p, a)[0, 1]) if len(a) > 1 and a.std() > 0 and p.std() > 0
                     else float("nan"),
                     "max_abs_actual": float(np.abs(a).max()), "max_abs_predicted": float(np.abs(p).max())})
    table = pd.DataFrame(rows).set_index("points")
    res.save_table(table, "INF-1a")
    return table


def fig_influence(cfg, d, loo, res: Results):
    """INF-1a: influence against actual leave-one-out retraining (random and most influential
    training points), and the most helpful and most harmful training images for one test image."""
    t = int(loo["target"])
    infl = loo["influence"]
    order = torch.argsort(infl)  # most negative I_up,loss: upweighting lowers the loss (helpful)
    picks = [("helpful", int(i)) for i in order[:3]] + [("harmful", int(i)) for i in order.flip(0)[:3]]
    fig = plt.figure(figsize=(P.WIDTH, 3.6))
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
    ax.legend(fontsize=8, title=f"{cfg.loo_points} training points each", title_fontsize=P.SMALL)
    P.title(ax, "influence vs retraining", fontsize=10)
    names = [cfg.class_a, cfg.class_b]
    P.image_row([fig.add_subplot(grid[0, 1])], [d["x_te"][t]], [f"test image ({names[int(d['y_te'][t])]})"])
    fig.add_subplot(grid[1, 1]).axis("off")
    for k, (kind, i) in enumerate(picks):
        P.image_row([fig.add_subplot(grid[k // 3, 2 + k % 3])], [d["x_tr"][i]],
                    [f"{kind} ({names[int(d['y_tr'][i])]})\nI = {float(infl[i]):.2g}"])
    P.suptitle(fig, "INF-1a influence functions on the logistic-regression head", fontsize=10)
    P.standin_note(fig, d["label"])
    res.save_figure(fig, "INF-1a")
    return fig


def attack_table(cfg, att, ctl, res: Results) -> pd.DataFrame:
    """INF-1 (saved): success against the number of perturbed images, for each box size, beside the
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
    table = pd.DataFrame(rows).set_index(["linf_box_255", "perturbed_images"])
    res.save_table(table, "INF-1")
    return table


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
    ax.legend(fontsize=P.SMALL)
    P.title(ax, "INF-1b training-set attack and its control", fontsize=10)
    P.standin_note(fig, label)
    res.save_figure(fig, "INF-1b")
    return fig


def record_claims(cfg, loo, att, ctl, res: Results, label: str):
    """Every claim decided by its test on the per-target (per-point) data; the thresholds are
    the module's constants above, fixed from the claims' wording before any run.

    Roles: the headline, one per L-inf box, is the paper's result that perturbing one training
    image flips most test predictions. Influence against leave-one-out retraining, the trend over
    the number of perturbed images and the attack against its random-sign control support it.
    Keys name the box (on the 0-255 scale): the boxes are the profile's. The control perturbs
    the same images for the same targets, so attack and control are paired by target (McNemar)."""
    for name, pre in (("random", ""), ("the most influential (largest |I_up,loss|)", "top_")):
        res.claim("INF-1", "influence functions predict leave-one-out retraining",
                  f"spearman(predicted, actual), {'random' if not pre else 'top'} points",
                  S.correlation_test(loo[pre + "predicted"].numpy(), loo[pre + "actual"].numpy(), ">", LOO_MIN_RHO),
                  role="supporting", setting=f"{len(loo[pre + 'actual'])} {name} training points, one test image; "
                                             f"minimum rho {LOO_MIN_RHO}; {label}")
    counts = list(cfg.perturb_counts)
    i1, imax = counts.index(min(counts)), counts.index(max(counts))
    for ei, eps in enumerate(cfg.eps):
        box, key = f"L-inf box {255 * eps:g}/255", f"box{255 * eps:g}"
        f, c = att["flipped"][ei], ctl["flipped"][ei]   # [count, target], the same targets in both
        n = f.shape[1]
        res.claim("INF-1", "perturbing one training image flips most test predictions (paper: 57%)",
                  "success_rate (one image)",
                  S.rate_test(int(f[i1].sum()), n, PAPER_RATE_MIN, ">"), role="headline", key=key,
                  setting=f"{counts[i1]} image(s), {box}, {n} targets; a majority, as the paper's 57%; {label}",
                  paper_key="attack_success_rate" if ei == 0 else None)
        res.claim("INF-1", "more perturbed images, more flipped predictions", "change of success_rate over the images",
                  S.count_trend_test(counts, f.sum(1).numpy(), [n] * len(counts), ">", TREND_MIN_CHANGE),
                  role="supporting", key=key,
                  setting=f"{counts[0]}-{counts[-1]} images, {box}, {n} targets each; "
                          f"minimum rise {TREND_MIN_CHANGE:g} over the sweep; {label}")
        res.claim("INF-1", "the influence attack flips more targets than random-sign perturbations of the same images",
                  "success_rate - control_success_rate",
                  S.paired_rate_difference_test(f[imax].numpy(), c[imax].numpy(), CONTROL_MARGIN, ">"),
                  role="supporting", key=key,
                  setting=f"{counts[imax]} images, {box}, the same {n} targets, paired by target; {label}")
