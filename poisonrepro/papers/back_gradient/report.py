"""Notebook 06: figures, tables and claims from the results of ``back_gradient.experiments``
(every table is saved here). Nothing here is cached, so an edit here changes no cache key."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from ... import plots as P
from ... import stats as S
from ...config.back_gradient import MAIN_DATASETS
from ...results import Results
from .experiments import DATASET_LABELS, FLIP_ATTACKS, LF_VARIANTS, flip_defences

plt = P.plt
CLASS_COLORS = np.array(["tab:blue", "tab:green", "tab:red"])


def _fractions(cfg):
    return 100 * np.asarray(cfg.poison_fractions)


def _band(ax, x, v, label, **kw):
    """Mean over splits (axis 0) with a min-max band."""
    line, = ax.plot(x, v.mean(0), marker="o", label=label, **kw)
    if v.shape[0] > 1:
        ax.fill_between(x, v.min(0), v.max(0), color=line.get_color(), alpha=0.15)
    return line


# --------------------------------------------------------------------------- MG-1, MG-2
def fig_toy(cfg, toy, res: Results):
    grid = toy["grid"].numpy()
    X, y = toy["mg1_X"].numpy(), toy["mg1_y"].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(P.WIDTH, 3.2))
    titles = {"clean": "clean training set", "generic": "error-generic poisoning",
              "specific": "error-specific poisoning (red -> blue)"}
    for ax, name in zip(axes, ("clean", "generic", "specific")):
        ax.contourf(grid, grid, toy[f"mg1_{name}_regions"].numpy(), levels=[-0.5, 0.5, 1.5, 2.5],
                    colors=["#c6dbef", "#c7e9c0", "#fcbba1"])
        ax.scatter(*X.T, c=CLASS_COLORS[y], s=12, edgecolors="none")
        Xp, yp = toy[f"mg1_{name}_poisons"].numpy(), toy[f"mg1_{name}_labels"].numpy().astype(int)
        if len(yp):
            ax.scatter(*Xp.T, c=CLASS_COLORS[yp], marker="X", s=90, edgecolors="k", label="poisons (colour: label)")
            ax.legend(fontsize=P.SMALL, loc="lower right")
        P.title(ax, f"{titles[name]}\nvalidation error {float(toy[f'mg1_{name}_val_error']):.2f}, "
                     f"red classified blue {float(toy[f'mg1_{name}_red_as_blue']):.2f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    P.suptitle(fig, f"MG-1 types of poisoning: multiclass logistic regression, {cfg.toy_poisons} back-gradient "
                 "poisons", fontsize=10)
    res.save_figure(fig, "MG-1")
    return fig


def fig_trajectory(cfg, toy, res: Results):
    grid = toy["grid"].numpy()
    X, y = toy["mg2_X"].numpy(), toy["mg2_y"].numpy()
    path = toy["mg2_path"].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(P.WIDTH, 3.4))
    cs = axes[0].contourf(grid, grid, toy["mg2_surface"].numpy(), levels=20, cmap="viridis")
    fig.colorbar(cs, ax=axes[0], label="validation loss after training")
    axes[0].scatter(*X.T, c=CLASS_COLORS[y], s=12, edgecolors="none")
    axes[0].plot(*path.T, "r.-", ms=3, lw=1, label="poison (label: green class)")
    axes[0].plot(*path[0], "rs", ms=6)
    axes[0].legend(fontsize=P.SMALL, loc="lower right")
    P.title(axes[0], "validation loss over the poison's position, and its trajectory", fontsize=10)
    axes[1].plot(toy["mg2_objective"].numpy(), color="tab:red")
    axes[1].set_xlabel("attack iteration")
    axes[1].set_ylabel("attacker's objective (validation loss)")
    P.title(axes[1], "objective along the back-gradient ascent", fontsize=10)
    P.suptitle(fig, "MG-2 optimal (back-gradient) poisoning of logistic regression on synthetic 2-D data",
                 fontsize=10)
    res.save_figure(fig, "MG-2")
    return fig


# --------------------------------------------------------------------------- MG-3, MG-5
def fig_indiscriminate(cfg, ind, res: Results):
    err = ind["test_error"].numpy()
    fig, axes = P.panels(len(cfg.datasets), 3.0, sharey=True)
    for di, name in enumerate(cfg.datasets):
        ax = axes[di]
        for li, kind in enumerate(cfg.learners):
            _band(ax, _fractions(cfg), err[di, li], kind)
        P.title(ax, DATASET_LABELS[name] + ("\n(STAND-IN data)" if "standin" in name else ""), fontsize=10)
        ax.set_xlabel("poisoning points (% of the training set)")
    for ax in P.first_in_row(axes):
        ax.set_ylabel(f"test error (mean, range\nover {cfg.splits} splits)")
    axes[0].legend(fontsize=8)
    P.suptitle(fig, f"MG-3 indiscriminate back-gradient poisoning, {cfg.n_train} training points", fontsize=10)
    if any(name.startswith("ransomware_standin") for name in cfg.datasets):
        P.standin_note(fig, f"Ransomware panels: STAND-IN, synthetic {cfg.ransomware_features} binary features (the "
                            "Ransomware data is not available offline); poisons binary (bit flips), the continuous "
                            "panel is a variant")
    res.save_figure(fig, "MG-3")
    return fig


def table_indiscriminate(cfg, ind, res: Results) -> pd.DataFrame:
    err = ind["test_error"].numpy().mean(2)
    rows = [{"dataset": DATASET_LABELS[name], "learner": kind, "clean_test_error": err[di, li, 0],
             "attacked_test_error": err[di, li, -1], "poison_fraction": cfg.poison_fractions[-1],
             "increase": err[di, li, -1] - err[di, li, 0]}
            for di, name in enumerate(cfg.datasets) for li, kind in enumerate(cfg.learners)]
    table = pd.DataFrame(rows).set_index(["dataset", "learner"])
    res.save_table(table, "MG-3")
    return table


def table_transfer(cfg, tr, res: Results) -> pd.DataFrame:
    clean, poisoned = tr["clean"].numpy().mean(1), tr["poisoned"].numpy().mean(2)
    table = pd.DataFrame(poisoned - clean[None, :], index=pd.Index(cfg.learners, name="source (attacked) learner"),
                         columns=[f"victim {v}" for v in cfg.learners])
    res.save_table(table, "MG-5")
    return table


def fig_transfer(cfg, tr, table, res: Results):
    clean = tr["clean"].numpy().mean(1)
    fig, ax = plt.subplots(figsize=(5.2, 4))
    sns.heatmap(table, annot=True, fmt=".3f", cmap="Reds", ax=ax, cbar_kws={"label": "test error increase"})
    ax.set_xticklabels([f"{v}\n(clean {c:.3f})" for v, c in zip(cfg.learners, clean)], fontsize=8, rotation=0)
    P.title(ax, f"MG-5 transferability, {DATASET_LABELS[cfg.transfer_dataset]}, "
                 f"{100 * cfg.poison_fractions[-1]:.0f}% poisons", fontsize=10)
    res.save_figure(fig, "MG-5")
    return fig


# --------------------------------------------------------------------------- MG-4
def fig_multiclass(cfg, mc, res: Results):
    frac = 100 * np.asarray(cfg.mc_fractions)
    fig, axes = plt.subplots(1, 2, figsize=(P.WIDTH, 3.2))
    for oi, name in enumerate(("error-generic", "error-specific")):
        _band(axes[0], frac, mc["error"][oi].numpy(), name)
        _band(axes[1], frac, mc["rate"][oi].numpy(), name)
    axes[0].set_ylabel("test error (10 classes)")
    axes[1].set_ylabel(f"test {cfg.mc_source}s classified as {cfg.mc_target}")
    for ax in axes:
        ax.set_xlabel("poisoning points (% of the training set)")
        ax.legend(fontsize=8)
    P.suptitle(fig, f"MG-4 multiclass MNIST logistic regression, {cfg.mc_n_train} training digits", fontsize=10)
    res.save_figure(fig, "MG-4")
    return fig


def table_multiclass(cfg, mc, res: Results) -> pd.DataFrame:
    e, r = mc["error"].numpy().mean(1), mc["rate"].numpy().mean(1)
    table = pd.DataFrame({"clean_test_error": e[:, 0], "attacked_test_error": e[:, -1],
                          f"clean_{cfg.mc_source}_as_{cfg.mc_target}": r[:, 0],
                          f"attacked_{cfg.mc_source}_as_{cfg.mc_target}": r[:, -1]},
                         index=pd.Index(["error-generic", "error-specific"], name="objective"))
    res.save_table(table, "MG-4")
    return table


# --------------------------------------------------------------------------- MG-6, MG-10
def _variants(cfg):
    return [f"radius {r:g}" for r in cfg.constraint_radii] + ["unconstrained"]


def fig_outlier(cfg, od, res: Results):
    err = od["error"].numpy()
    fig, axes = P.panels(len(cfg.defence_datasets), 3.0, sharey=True)
    for di, name in enumerate(cfg.defence_datasets):
        ax = axes[di]
        _band(ax, _fractions(cfg), err[di, -1, :, :, 0], "no defence", color="tab:red")
        _band(ax, _fractions(cfg), err[di, -1, :, :, 1], "outlier detection", color="tab:blue")
        P.title(ax, DATASET_LABELS[name], fontsize=10)
        ax.set_xlabel("poisoning points (% of the training set)")
    for ax in P.first_in_row(axes):
        ax.set_ylabel("test error, logistic regression")
    axes[0].legend(fontsize=8)
    P.suptitle(fig, "MG-6 outlier detection against the optimal (unconstrained) attack", fontsize=10)
    res.save_figure(fig, "MG-6")
    return fig


def fig_constrained(cfg, od, res: Results):
    err, flagged = od["error"].numpy()[:, :, :, -1].mean(2), od["flagged"].numpy()[:, :, :, -1].mean(2)
    labels = _variants(cfg)
    x = np.arange(len(labels))
    fig, axes = P.panels(len(cfg.defence_datasets), 3.4)
    for di, name in enumerate(cfg.defence_datasets):
        ax = axes[di]
        ax.plot(x, err[di, :, 0], "o-", color="tab:red", label="no defence")
        ax.plot(x, err[di, :, 1], "s-", color="tab:blue", label="outlier detection")
        ax.plot(x, flagged[di], "^--", color="tab:gray", label="share of poisons the defender flags")
        for xi, f in zip(x, flagged[di]):
            ax.annotate(f"{f:.2f}", (xi, f), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=P.SMALL,
                        color="tab:gray")
        ax.set_xticks(x, labels, rotation=20, fontsize=8)
        P.title(ax, f"{DATASET_LABELS[name]}, {100 * cfg.poison_fractions[-1]:.0f}% poisons", fontsize=10)
    for ax in P.first_in_row(axes):
        ax.set_ylabel("test error / share flagged")
    axes[0].legend(fontsize=8)
    P.suptitle(fig, "MG-10 detectability constraint: poisons kept within radius x the attacker's own threshold "
                 "estimate\n(a detector fitted on its validation data) of their label's centroid; the defender's "
                 "detector decides", fontsize=10)
    res.save_figure(fig, "MG-10")
    return fig


def table_outlier(cfg, od, res: Results) -> pd.DataFrame:
    err, flagged = od["error"].numpy().mean(2), od["flagged"].numpy().mean(2)
    rows = []
    for di, name in enumerate(cfg.defence_datasets):
        for vi, variant in enumerate(_variants(cfg)):
            rows.append({"dataset": DATASET_LABELS[name], "attack": variant,
                         "clean": err[di, vi, 0, 0], "clean_with_detector": err[di, vi, 0, 1],
                         "attacked": err[di, vi, -1, 0], "attacked_with_detector": err[di, vi, -1, 1],
                         "poisons_flagged_by_defender": flagged[di, vi, -1]})
    table = pd.DataFrame(rows)
    # the radii differ between profiles: the variants go in a column, rows are numbered
    table.index.name = "row"
    res.save_table(table, "MG-6")
    return table


# --------------------------------------------------------------------------- MG-7, MG-8
def _flip_panels(cfg, lf, res: Results, artifact: str, attacks, curves, title: str):
    """One panel per attack of ``attacks`` (indices into FLIP_ATTACKS), one curve per
    (label, defence name, style) of ``curves``: test error against the poisoning fraction."""
    err = lf["error"].numpy()
    names = flip_defences(cfg)
    fig, axes = P.panels(len(attacks), 3.0, sharey=True)
    for ax, ai in zip(axes, attacks):
        for label, defence, style in curves:
            _band(ax, _fractions(cfg), err[ai, :, :, names.index(defence)], label, **style)
        P.title(ax, FLIP_ATTACKS[ai], fontsize=10)
        ax.set_xlabel("poisoning points (% of the training set)")
    for ax in P.first_in_row(axes):
        ax.set_ylabel("test error, logistic regression")
    axes[0].legend(fontsize=8)
    P.suptitle(fig, title, fontsize=10)
    res.save_figure(fig, artifact)
    return fig


def fig_flipping(cfg, lf, res: Results):
    curves = [(d, d, {}) for d in ("no defence", "outlier detection", "noise-robust loss", f"k-NN k={cfg.knn_k}")]
    return _flip_panels(cfg, lf, res, "MG-7", (0, 1, 2), curves, f"MG-7 optimal attack vs label flipping on "
                        f"{DATASET_LABELS[cfg.flip_dataset]}, with defences")


def fig_knn(cfg, lf, res: Results):
    curves = [("no defence", "no defence", {"color": "k"})] + [(f"k-NN, k={k}", f"k-NN k={k}", {}) for k in cfg.knn_ks]
    return _flip_panels(cfg, lf, res, "MG-8", (1, 2), curves, f"MG-8 k-NN label sanitisation (confidence "
                        f"{cfg.knn_confidence}) and its sensitivity to k")


def table_flipping(cfg, lf, res: Results) -> pd.DataFrame:
    err = lf["error"].numpy().mean(1)
    names = flip_defences(cfg)
    cols = {"no defence": 0, "outlier detection": 1, "noise-robust loss": 2, "k-NN sanitisation": names.index(
        f"k-NN k={cfg.knn_k}")}
    table = pd.DataFrame({f"{c} (clean)": err[:, 0, i] for c, i in cols.items()} |
                         {f"{c} (attacked)": err[:, -1, i] for c, i in cols.items()},
                         index=pd.Index(FLIP_ATTACKS, name="attack"))
    res.save_table(table, "MG-7")
    knn = pd.DataFrame({f"{FLIP_ATTACKS[ai]} ({when})": [err[ai, ci, names.index(f"k-NN k={k}")] for k in cfg.knn_ks]
                        for ai in (1, 2) for ci, when in ((0, "clean"), (-1, "attacked"))},
                       index=pd.Index(cfg.knn_ks, name="k"))
    res.save_table(knn, "MG-8")
    return table


# --------------------------------------------------------------------------- LF-1
def fig_label_noise(cfg, ln, res: Results):
    frac = 100 * np.asarray(cfg.lf_fractions)
    fig, axes = plt.subplots(1, 2, figsize=(P.WIDTH, 3.2), sharey=True)
    names = {"random": "random labels", "flip": "label flipping (y -> y+1)",
             "partial": f"partial flipping ({cfg.lf_source} -> {cfg.lf_target})"}
    for vi, variant in enumerate(LF_VARIANTS):
        _band(axes[0], frac, ln["accuracy"][vi].numpy(), names[variant])
        _band(axes[1], frac, ln["source_accuracy"][vi].numpy(), names[variant])
    axes[0].set_ylabel("test accuracy")
    P.title(axes[0], "all ten classes", fontsize=10)
    P.title(axes[1], f"test digits {cfg.lf_source}", fontsize=10)
    # one x label shared by both panels (two per-axes labels overlapped), at the axes labels' size
    fig.supxlabel("poisoned labels (% of the training set; partial: of the source class)",
                  fontsize=axes[0].xaxis.label.get_size())
    axes[0].legend(fontsize=8)
    P.suptitle(fig, f"LF-1 label poisoning, MNIST logistic regression (scikit-learn), {cfg.lf_n_train} digits",
                 fontsize=10)
    res.save_figure(fig, "LF-1")
    table = pd.DataFrame({names[v]: ln["accuracy"][vi].numpy().mean(0) for vi, v in enumerate(LF_VARIANTS)},
                         index=pd.Index(cfg.lf_fractions, name="fraction"))
    res.save_table(table, "LF-1")
    return fig


# --------------------------------------------------------------------------- claims
# Minimum effects, fixed from the claims' wording before any run (an effect below them does not count):
MIN_INCREASE = 0.05   # MG-3, MG-4: an attack "raises the error": by at least 5 points at the largest budget
MIN_RATE = 0.1        # MG-4 error-specific: at least 10 more points of the source class read as the target
CLEARLY_MORE = 0.05   # MG-7: the optimal attack raises the error "clearly more" than RLF: by 5 points more
MORE_HARM = 0.02      # MG-10: "more harm": at least 2 points more test error
LITTLE_COST = 0.03    # MG-8: "costs little": at most 3 points of clean test error
MIN_FALL = 0.02       # LF-1: accuracy falls by at least 2 points over the sweep of poisoned fractions
MOST = 0.5            # "most" of an effect: a share above one half; "keeps its effect": below one half


def _recovered(attacked_def, attacked, clean) -> float:
    """The share of the attack's error increase (over the undefended clean model) that a
    defence takes back: 1 = all of it, 0 = none, negative = the defence makes it worse. The
    defence's own cost on clean data counts against it."""
    base = attacked - clean
    return (attacked - attacked_def) / base if base > 0 else float("nan")


RECOVERED = "share of the attack's error increase the defence recovers"


def _increase(err, last=-1):
    """Per split: error at the largest budget minus the clean error (err[split, count])."""
    return err[:, last] - err[:, 0]


def _effect(res: Results, artifact: str, claim: str, attacked, clean, *, key: str = "", setting: str) -> dict:
    """A precondition of a defence's claims (supporting): the attack raises the error of the
    undefended model by at least ``MIN_INCREASE`` (paired over splits). The share of an effect
    that a defence takes back (or leaves) is only a test where there is an effect to take back."""
    return res.claim(artifact, claim, "test error increase without the defence",
                     S.paired_difference_test(attacked, clean, MIN_INCREASE, ">"), role="supporting", key=key,
                     setting=f"{setting}; min. +{MIN_INCREASE}")


def _role(name: str) -> str:
    """Claims on the Ransomware stand-in (synthetic data) support; they cannot reproduce a paper result."""
    return "supporting" if "standin" in name else "headline"


def record_claims(cfg, ind, tr, mc, od, lf, ln, res: Results, sources: dict):
    """Roles: the headline family is the paper's indiscriminate attack (MG-3, each real dataset and
    learner), the outlier detector removing it (MG-6) and a detectability-constrained attack that
    stays effective and mostly undetected (MG-10, a joint claim), each on the real datasets. The
    rest (stand-in data, transfer, the multiclass attacks, label flipping and its defences,
    label noise) supports them. A defence's claims require the attack to raise the undefended
    error first (``_effect``). Keys name the dataset, learner, attack and k: the same at every
    profile."""
    top = f"{100 * cfg.poison_fractions[-1]:.0f}% poisons, {cfg.splits} splits"
    err = ind["test_error"].numpy()  # [dataset, learner, split, count]
    for di, name in enumerate(cfg.datasets):
        if name not in MAIN_DATASETS:
            continue  # the continuous Ransomware variant is shown, not claimed
        standin = "; STAND-IN data, binary poisons" if "STAND-IN" in sources[name] else ""
        for li, kind in enumerate(cfg.learners):
            e = err[di, li]
            res.claim("MG-3", "the optimal attack raises the test error", "test error increase",
                      S.paired_difference_test(e[:, -1], e[:, 0], MIN_INCREASE, ">"), role=_role(name),
                      key=f"{name}-{kind}",
                      setting=f"{DATASET_LABELS[name]}, {kind}, {top}; min. +{MIN_INCREASE}{standin}")
    clean, poisoned = tr["clean"].numpy(), tr["poisoned"].numpy()  # [victim, split], [source, victim, split]
    inc = poisoned - clean[None]
    off = ~np.eye(len(cfg.learners), dtype=bool)
    own = np.stack([inc[i, i] for i in range(len(inc))]).mean(0)  # per split: the poisons on their own learner
    transfer_setting = f"{DATASET_LABELS[cfg.transfer_dataset]}, {top}"
    works = res.claim("MG-5", "the poisons raise the error of the learner they were crafted for",
                      "mean diagonal increase", S.mean_test(own, MIN_INCREASE, ">"), role="supporting",
                      setting=f"{transfer_setting}; min. +{MIN_INCREASE}")
    res.claim("MG-5", "poisons crafted for one learner transfer to the others",
              "mean off-diagonal / mean diagonal increase", S.ratio_test(inc[off].mean(0), own, MOST, ">"),
              role="supporting", requires=[works], setting=f"{transfer_setting}; transfer keeps over half the effect")
    e, r = mc["error"].numpy(), mc["rate"].numpy()  # [objective, split, count]
    mc_top = f"MNIST 10 classes, {100 * cfg.mc_fractions[-1]:.0f}% poisons, {cfg.mc_splits} splits"
    res.claim("MG-4", "error-generic poisoning raises the multiclass error", "test error increase",
              S.paired_difference_test(e[0, :, -1], e[0, :, 0], MIN_INCREASE, ">"), role="supporting",
              setting=f"{mc_top}; min. +{MIN_INCREASE}")
    res.claim("MG-4", f"error-specific poisoning makes {cfg.mc_source}s look like {cfg.mc_target}s",
              f"increase of {cfg.mc_source}-as-{cfg.mc_target} rate",
              S.paired_difference_test(r[1, :, -1], r[1, :, 0], MIN_RATE, ">"), role="supporting",
              setting=f"{mc_top}; min. +{MIN_RATE}")
    oe, fl = od["error"].numpy(), od["flagged"].numpy()  # [dataset, variant, split, count, defence]
    r1 = _variants(cfg).index("radius 1")
    for di, name in enumerate(cfg.defence_datasets):
        u, c = oe[di, -1], oe[di, r1]  # [split, count, defence]
        setting = f"{DATASET_LABELS[name]}, logistic, {top}"
        effective = _effect(res, "MG-6", "the unconstrained attack raises the error without the defence",
                            u[:, -1, 0], u[:, 0, 0], key=name, setting=setting)
        res.claim("MG-6", "outlier detection removes most of the unconstrained attack's effect", RECOVERED,
                  S.ratio_test(u[:, -1, 0] - u[:, -1, 1], u[:, -1, 0] - u[:, 0, 0], MOST, ">"), role=_role(name),
                  key=name, requires=[effective], setting=setting)
        constrained = _effect(res, "MG-10", "the constrained attack (radius 1) raises the error without the defence",
                              c[:, -1, 0], c[:, 0, 0], key=name, setting=setting)
        unflagged = res.claim("MG-10", "the defender's detector flags fewer than half of the constrained poisons "
                              "(radius 1 of the attacker's own threshold estimate)", "share of poisons flagged",
                              S.mean_test(fl[di, r1, :, -1], MOST, "<"), role="supporting", key=name, setting=setting)
        kept = res.claim("MG-10", "a constrained attack (radius 1 of the attacker's threshold estimate) keeps its "
                         "effect under outlier detection", RECOVERED,
                         S.ratio_test(c[:, -1, 0] - c[:, -1, 1], c[:, -1, 0] - c[:, 0, 0], MOST, "<"),
                         role="supporting", key=name, requires=[constrained], setting=setting)
        res.joint("MG-10", "a constrained attack (radius 1) is effective and mostly undetected: the detector flags "
                  "fewer than half of its poisons and takes back less than half of its effect",
                  [unflagged, kept], role=_role(name), key=name, setting=setting)
        res.claim("MG-10", "with the detector on, the constrained attack does more harm than the unconstrained",
                  "error with detector: constrained minus unconstrained",
                  S.paired_difference_test(c[:, -1, 1], u[:, -1, 1], MORE_HARM, ">"), role="supporting", key=name,
                  setting=f"{setting}; min. +{MORE_HARM}")
    le = lf["error"].numpy()  # [attack, split, count, defence]
    kk = flip_defences(cfg).index(f"k-NN k={cfg.knn_k}")
    setting = f"{DATASET_LABELS[cfg.flip_dataset]}, logistic, {top}"
    res.claim("MG-7", "the optimal attack raises the error clearly more than random label flipping",
              "optimal minus RLF error increase",
              S.paired_difference_test(_increase(le[0, ..., 0]), _increase(le[2, ..., 0]), CLEARLY_MORE, ">"),
              role="supporting", setting=f"{setting}; min. +{CLEARLY_MORE}")
    for ai in (1, 2):
        a = le[ai]
        short = "ILF" if ai == 1 else "RLF"
        flips = _effect(res, "MG-7", f"{short} raises the error without the defence", a[:, -1, 0], a[:, 0, 0],
                        key=short, setting=setting)
        res.claim("MG-7", f"outlier detection does not remove label flipping ({short})", RECOVERED,
                  S.ratio_test(a[:, -1, 0] - a[:, -1, 1], _increase(a[..., 0]), MOST, "<"), role="supporting",
                  key=short, requires=[flips], setting=setting)
        res.claim("MG-8", f"k-NN sanitisation (k={cfg.knn_k}) recovers most accuracy against {short}", RECOVERED,
                  S.ratio_test(a[:, -1, 0] - a[:, -1, kk], _increase(a[..., 0]), MOST, ">"), role="supporting",
                  key=f"{short}-k{cfg.knn_k}", requires=[flips], setting=setting)
    res.claim("MG-8", "k-NN sanitisation costs little accuracy without attack", "clean error increase",
              S.paired_difference_test(le[0, :, 0, kk], le[0, :, 0, 0], LITTLE_COST, "<"), role="supporting",
              key=f"k{cfg.knn_k}", setting=f"{setting}; at most +{LITTLE_COST}")
    acc = ln["accuracy"].numpy()  # [variant, split, fraction]
    x = np.tile(cfg.lf_fractions, cfg.splits)
    for vi, variant in enumerate(LF_VARIANTS):
        res.claim("LF-1", f"accuracy falls as more labels are poisoned ({variant})",
                  "change of test accuracy over the sweep", S.slope_trend_test(x, acc[vi].ravel(), "<", -MIN_FALL),
                  role="supporting", key=variant,
                  setting=f"MNIST, {cfg.lf_n_train} digits, {cfg.splits} splits, fractions "
                          f"{cfg.lf_fractions[0]:g}-{cfg.lf_fractions[-1]:g}; min. fall {MIN_FALL}")
