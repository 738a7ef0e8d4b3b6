"""Notebook 14, Transferable Unlearnable Examples (Ren et al., ICLR 2023): figures, tables and claims
from the results of ``tue.experiments`` (every table is saved here). Nothing here is cached.

The unit of every victim claim is the victim training (a seed), paired by seed where two arms are
compared (the victims of one seed share their initial weights and batch order), never the test
images. The separability test and the budget are exact measurements of the one crafted set each
(every image of it): their claims are decided by the threshold, with no sampling test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ... import models as M
from ... import plots as P
from ... import stats as S
from ...data import CIFAR10_CLASSES
from ...evaluation import cifar10_training_set
from ...reference import get
from ...results import Results
from ...seedwise import per_seed, seed_row
from . import svhn_standin as SVHN
from .correspondence import SWAPS, interpolate
from .experiments import METHOD_NAME, SSL_NAME

plt = P.plt
PAPER = "tue"
COLOR = {"clean": "0.3", "emn": "tab:purple", "sn": "tab:olive", "ucl": "tab:cyan", "tue": "tab:red",
         "emaxn": "tab:green", "tensorclog": "tab:pink", "alignment": "tab:blue", "deepconfuse": "tab:brown",
         "ntga": "tab:orange"}
#: the reference data's name of each protection (TUE's rows are its SimCLR version)
REF = {"clean": "clean", "emn": "emn", "sn": "synthetic", "emaxn": "emaxn", "tensorclog": "tensorclog",
       "alignment": "alignment", "deepconfuse": "deepconfuse", "ntga": "ntga"}
SSL_REF = {"simclr": "simclr", "moco_v2": "moco", "simsiam": "simsiam"}


def standin_label(cfg) -> str:
    return (f"CIFAR-10, {10 * cfg.train_per_class:,} training images; {M.display_name(cfg.model)} supervised victims, "
            f"{cfg.epochs:g} epochs (paper: ResNet-18, 200); contrastive encoders {M.display_name(cfg.encoder)}, "
            f"{cfg.ssl_epochs:g} epochs, batched views (paper: ResNet-18)")


def paper_value(key: str) -> float:
    try:
        return get(PAPER, key).value
    except KeyError:
        return np.nan


def _name(m: str) -> str:
    return METHOD_NAME[m]


# --------------------------------------------------------------------------- the protections
def budget_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """TUE-SNa (saved): per protection, whether it used labels, its budget and the largest and median
    L-inf distance of the spoiled training images from their originals (pixel levels, after clipping);
    for TUE the class-wise separability discriminant of its random start and of its crafted noise."""
    rows = []
    for name, art in run["protections"].items():
        linf = art["linf_255"].float()
        rows.append({"protection": _name(name), "labels used": "none" if name == "ucl" else "CIFAR-10's 10",
                     "budget (/255)": round(255 * float(art["eps"]), 3), "largest L-inf (/255)": float(linf.max()),
                     "median L-inf (/255)": float(linf.median()),
                     # TUE's objective: the CSD of its uniform random start and of the crafted noise (added after
                     # the first cpu run, to show how far the crafting went)
                     "CSD at the start": float(art["csd_clean"]) if "csd_clean" in art else np.nan,
                     "CSD crafted": float(art["csd_final"]) if "csd_final" in art else np.nan})
    table = pd.DataFrame(rows).set_index("protection")
    res.save_table(table, "TUE-SNa")
    return table


def fig_protections(cfg, run: dict, res: Results, count: int = 3):
    """TUE-SNb: ``count`` training images with each protection's noise, amplified (+-budget as black
    and white)."""
    x, y = cifar10_training_set(cfg.train_per_class)
    picks = [int(np.flatnonzero(y.numpy() == c)[0]) for c in range(min(count, 10))]
    kinds = list(cfg.methods)
    fig, axes = plt.subplots(len(picks), 1 + len(kinds), figsize=(P.WIDTH, 0.95 * len(picks) + 1.0), squeeze=False)
    for r, i in enumerate(picks):
        axes[r, 0].imshow(P.to_image(x[i]), interpolation="nearest")
        for c, kind in enumerate(kinds, start=1):
            art = run["protections"][kind]
            delta = art["delta_levels"][int(art["groups"][i])].float()
            axes[r, c].imshow(P.to_image(0.5 + 0.5 * delta / (255 * float(art["eps"]))), interpolation="nearest")
    short = {"deepconfuse": "DeepConf.*", "tensorclog": "TClog", "alignment": "Align.", "ntga": "NTGA*"}
    for c, kind in enumerate(["image"] + kinds):
        axes[0, c].set_title(kind if c == 0 else short.get(kind, _name(kind)), fontsize=P.SMALL)
    for ax in axes.flat:
        ax.axis("off")
    for r, i in enumerate(picks):  # after axis("off"): row_label shows its axes' y label
        P.row_label(axes[r, 0], CIFAR10_CLASSES[int(y[i])], width_in=0.7)
    title = ("TUE-SNb: the noise of each protection (amplified; * a stand-in; TClog TensorClog, Align. Alignment, "
             "DeepConf. DeepConfuse)")
    return P.finish(fig, res, "TUE-SNb", title, standin_label(cfg))


# --------------------------------------------------------------------------- TUE-LS
def separability_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """TUE-LS (saved): the training accuracy of a linear model and of a two-layer network fit to the
    clean images and to each protection's perturbations, with their labels, beside the deck's table."""
    sep = run["separability"]
    rows = []
    for name in ("clean",) + tuple(cfg.methods):
        row = {"set": "clean images" if name == "clean" else _name(name)}
        for model in cfg.separability_models:
            row[f"{model} (measured)"] = sep.get((name, model), np.nan)  # two-layer: the deck's sets only
            row[f"{model} (paper)"] = paper_value(f"ls.{model}.{REF.get(name, name)}")
        rows.append(row)
    table = pd.DataFrame(rows).set_index("set")
    res.save_table(table, "TUE-LS")
    return table


def _grouped_bars(ax, groups: int, series: list[dict], paper_label: str, star_size: float = 6):
    """Bars of each series side by side over ``groups`` positions, the paper's values as stars above
    them (labelled once). A series: ``label``, ``values``, ``paper``, ``color``, and ``lows`` and
    ``highs`` for error bars where it has them."""
    width = 0.8 / len(series)
    for j, one in enumerate(series):
        xs = np.arange(groups) + (j - (len(series) - 1) / 2) * width
        bars = {}
        if "lows" in one:
            bars = {"yerr": P.error_bars(one["values"], one["lows"], one["highs"]), "capsize": 2}
        ax.bar(xs, one["values"], width, color=one["color"], label=one["label"], **bars)
        ax.plot(xs, one["paper"], "k*", ms=star_size, label=paper_label if j == 0 else None)


def _accuracy_axes(ax, ylabel: str, top: float, ncol: int):
    """The y axis of an accuracy from 0 to 1, with room up to ``top`` for the legend above the bars."""
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, top)
    ax.set_yticks(np.arange(0, 1.01, 0.2))
    ax.legend(fontsize=P.SMALL, loc="upper center", ncol=ncol)


def fig_separability(cfg, table: pd.DataFrame, res: Results):
    fig, ax = plt.subplots(figsize=(P.WIDTH, 3.2))
    _grouped_bars(ax, len(table), [{"label": f"{model.replace('_', '-')} (measured)",
                                    "values": table[f"{model} (measured)"], "paper": table[f"{model} (paper)"],
                                    "color": ["0.35", "0.7"][j % 2]}
                                   for j, model in enumerate(cfg.separability_models)],
                  "paper (deck's table)", star_size=7)
    ax.axhline(cfg.separable, color="tab:red", ls="--", lw=1, label=f"the claim's {cfg.separable:.0%}")
    ax.set_xticks(np.arange(len(table)), [s.replace(" (stand-in)", "*") for s in table.index], fontsize=P.SMALL,
                  rotation=30, ha="right")
    _accuracy_axes(ax, "training accuracy on the perturbations", 1.25, 2)
    title = "TUE-LS: how linearly separable each protection's perturbations are by class (* a stand-in)"
    return P.finish(fig, res, "TUE-LS", title, standin_label(cfg))


# --------------------------------------------------------------------------- TUE-SN and TUE-TT
def supervised_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """TUE-SN (saved): supervised victims trained on each protected set, beside the deck's table."""
    vic = run["victims"]
    rows = [seed_row({"protection": "clean"}, vic["sup:clean"], paper_value("sn.clean"))]
    for m in cfg.methods:
        rows.append(seed_row({"protection": _name(m)}, vic[f"sup:{m}"], paper_value(f"sn.{REF.get(m, m)}")))
    table = pd.DataFrame(rows).set_index("protection")
    res.save_table(table, "TUE-SN")
    return table


def transfer_learning_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """TUE-TT (saved): each learner (supervised; each contrastive learner and its linear probe; the
    random-feature probe) on the clean set and each protection of Ren et al.'s table, beside it."""
    vic = run["victims"]
    sets = [m for m in ("clean", "emn", "sn", "ucl", "tue") if m == "clean" or m in cfg.methods]
    rows = []
    for m in sets:
        arm = "sup:clean" if m == "clean" else f"sup:{m}"
        rows.append(seed_row({"learner": "supervised", "training set": _name(m)}, vic[arm],
                         paper_value(f"tt.cifar10.simclr.supervised.{m}")))
    for name in cfg.ssl_learners:
        for m in sets:
            rows.append(seed_row({"learner": f"{SSL_NAME[name]} + linear probe", "training set": _name(m)},
                             vic[f"{name}:{m}"], paper_value(f"tt.cifar10.{SSL_REF[name]}.unsupervised.{m}")))
    rows.append(seed_row({"learner": "random features + linear probe", "training set": "clean"},
                     vic["random_features:clean"], np.nan))
    table = pd.DataFrame(rows).set_index(["learner", "training set"])
    res.save_table(table, "TUE-TT")
    return table


def fig_transfer_learning(cfg, table: pd.DataFrame, res: Results):
    """TUE-TT: the table as grouped bars (intervals where 2+ seeds), the paper's as stars."""
    learners = list(dict.fromkeys(table.index.get_level_values("learner")))
    learners = [name for name in learners if not name.startswith("random")]
    sets = list(dict.fromkeys(table.index.get_level_values("training set")))
    fig, ax = plt.subplots(figsize=(P.WIDTH, 3.4))
    series = []
    for s in sets:
        part = [table.loc[(name, s)] for name in learners]
        key = next(k for k, v in METHOD_NAME.items() if v == s)
        series.append({"label": s, "values": np.array([p.test_accuracy for p in part]),
                       "paper": [p.paper for p in part], "color": COLOR[key],
                       "lows": [p.ci_low for p in part], "highs": [p.ci_high for p in part]})
    _grouped_bars(ax, len(learners), series, "paper (Ren et al.'s table)")
    rf = table.loc[("random features + linear probe", "clean")].test_accuracy
    ax.axhline(rf, color="0.5", ls=":", lw=1, label="random-feature probe (clean)")
    ax.set_xticks(np.arange(len(learners)), learners, fontsize=P.SMALL)
    _accuracy_axes(ax, "clean test accuracy", 1.3, 4)
    title = "TUE-TT: training-wise transferability: supervised and contrastive learners on each protected set"
    return P.finish(fig, res, "TUE-TT", title, standin_label(cfg))


# --------------------------------------------------------------------------- TUE-T2 and TUE-T5
def swap_table(cfg, run: dict, res: Results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """TUE-T5 (saved): supervised victims with each of ``swap_methods``' perturbations given to their
    own images (original), to others of the same class (intra) or another class's (inter), beside
    Table 5; TUE-T2 (saved): its EMN and SN rows, beside Table 2."""
    vic = run["victims"]
    rows = []
    for m in cfg.swap_methods:
        for swap in SWAPS:
            arm = f"sup:{m}" if swap == "original" else f"sup:{m}:{swap}"
            ref = "tue_simclr" if m == "tue" else m
            rows.append(seed_row({"protection": _name(m), "correspondence": swap}, vic[arm],
                             paper_value(f"t5.cifar10.{ref}.{swap}")) | {"paper (Table 2)":
                                                                         paper_value(f"t2.cifar10.{m}.{swap}")})
    t5 = pd.DataFrame(rows).set_index(["protection", "correspondence"])
    t2 = t5[[p in ("EMN", "SN") for p in t5.index.get_level_values("protection")]].drop(columns="paper")
    t2 = t2.rename(columns={"paper (Table 2)": "paper"})
    t5 = t5.drop(columns="paper (Table 2)")
    res.save_table(t2, "TUE-T2")
    res.save_table(t5, "TUE-T5")
    return t2, t5


def fig_swaps(cfg, t5: pd.DataFrame, res: Results):
    fig, ax = plt.subplots(figsize=(P.WIDTH * 0.8, 3.0))
    prots = list(dict.fromkeys(t5.index.get_level_values("protection")))
    _grouped_bars(ax, len(prots), [{"label": swap, "values": [t5.loc[(p, swap)].test_accuracy for p in prots],
                                    "paper": [t5.loc[(p, swap)].paper for p in prots],
                                    "color": ["0.3", "0.55", "0.8"][j]} for j, swap in enumerate(SWAPS)],
                  "paper (Table 5)")
    ax.set_xticks(np.arange(len(prots)), prots, fontsize=P.SMALL)
    _accuracy_axes(ax, "clean test accuracy", 1.2, 4)
    title = "TUE-T5: supervised victims when the perturbations go to other images of the class (intra) or class (inter)"
    return P.finish(fig, res, "TUE-T5", title, standin_label(cfg))


# --------------------------------------------------------------------------- TUE-T6 and TUE-INT
def transfer_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """TUE-T6 (saved): supervised victims on the SVHN stand-in carrying CIFAR-10's perturbations."""
    vic = run["victims"]
    rows = [seed_row({"protection": "clean"}, vic["transfer:clean"], np.nan) | {"dataset": SVHN.LABEL}]
    for m in cfg.transfer_methods:
        ref = "tue_simclr" if m == "tue" else m
        rows.append(seed_row({"protection": _name(m)}, vic[f"transfer:{m}"], paper_value(f"t6.{ref}.svhn_small"))
                    | {"dataset": SVHN.LABEL})
    table = pd.DataFrame(rows).set_index("protection")
    res.save_table(table, "TUE-T6")
    return table


def _class_means(artifact: dict, y: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each training image's perturbation (pixel levels / ``scale``, floats) and each class's mean
    perturbation, flattened [10, C*H*W]."""
    delta = artifact["delta_levels"][artifact["groups"].long()].float() / scale
    return delta, torch.stack([delta[y == c].mean(0) for c in range(10)]).flatten(1)


def fig_interpolation(cfg, run: dict, res: Results, steps: int = 6):
    """TUE-INT: TUE's (and EMN's) perturbations interpolated within one class and between two
    classes, (1 - t) delta_a + t delta_b, amplified; above each the class whose mean perturbation is
    nearest (the class-wise structure that TUE's separability term builds)."""
    _, y = cifar10_training_set(cfg.train_per_class)
    kinds = [m for m in ("tue", "emn") if m in cfg.methods]
    ts = torch.linspace(0, 1, steps)
    fig, axes = plt.subplots(2 * len(kinds), steps, figsize=(P.WIDTH, 1.25 * 2 * len(kinds) + 0.8), squeeze=False)
    labels = {}
    for k, kind in enumerate(kinds):
        art = run["protections"][kind]
        delta, centres = _class_means(art, y, 255)  # on the [0, 1] scale, as the images are shown
        a = int(np.flatnonzero(y.numpy() == 0)[0])
        pairs = {"within class": (a, int(np.flatnonzero(y.numpy() == 0)[1])),
                 "between classes": (a, int(np.flatnonzero(y.numpy() == 1)[0]))}
        for r, (what, (i, j)) in enumerate(pairs.items()):
            row = 2 * k + r
            for c, t in enumerate(ts):
                mixed = (1 - t) * delta[i] + t * delta[j]
                nearest = int(torch.cdist(mixed.flatten()[None], centres).argmin())
                axes[row, c].imshow(P.to_image(0.5 + 0.5 * mixed / float(art["eps"])), interpolation="nearest")
                axes[row, c].set_title(f"t={float(t):.1f}: {CIFAR10_CLASSES[nearest]}", fontsize=P.SMALL)
            labels[row] = f"{_name(kind)}, {what}: {CIFAR10_CLASSES[int(y[i])]} to {CIFAR10_CLASSES[int(y[j])]}"
    for ax in axes.flat:
        ax.axis("off")
    for row, text in labels.items():  # after axis("off"): row_label shows its axes' y label
        P.row_label(axes[row, 0], text, width_in=1.1)
    title = "TUE-INT: interpolated perturbations within a class and between classes (nearest class mean above)"
    return P.finish(fig, res, "TUE-INT", title, standin_label(cfg))


def interpolation_check(cfg, run: dict, count: int = 200, seed: int = 0) -> pd.DataFrame:
    """How often an interpolated TUE perturbation (``correspondence.interpolate`` within a class,
    TUE-T6's rule for a larger target class) is nearest its own class's mean perturbation: the share
    over ``count`` interpolants of every class (shown beside TUE-INT, not saved)."""
    _, y = cifar10_training_set(cfg.train_per_class)
    rows = []
    for kind in [m for m in ("tue", "emn", "sn") if m in cfg.methods]:
        delta, centres = _class_means(run["protections"][kind], y)
        gen = torch.Generator().manual_seed(seed)
        hits = 0
        for c in range(10):
            mixed, _ = interpolate(delta[y == c], count, gen)
            hits += int((torch.cdist(mixed.flatten(1), centres).argmin(1) == c).sum())
        rows.append({"protection": _name(kind), "interpolants nearest their own class": hits / (10 * count)})
    return pd.DataFrame(rows).set_index("protection")


# --------------------------------------------------------------------------- claims
def _exact(measured: float, threshold: float, side: str, n: int, what: str) -> S.Decision:
    return S.decide(measured, measured, measured, threshold, side, n=n, test=f"exact: {what}")


def record_claims(cfg, run: dict, res: Results):
    """The claims of issue 25 §3 for TUE.

    Supporting preconditions: every protection keeps its budget (exact); the clean supervised
    victims reach the accuracy floor; the SimCLR probe on clean data beats the random-feature probe
    by ``ssl_margin`` (paired by seed). Headlines: TUE-LS (joint, exact: EMN's and SN's perturbations
    are linearly separable at ``separable`` while the clean images are not); TUE-TT (joint, paired by
    seed: TUE lowers SimCLR's probe at least ``drop_margin`` below clean, EMN less than that)."""
    vic, n_images = run["victims"], 10 * cfg.train_per_class
    budget = {}
    for name, art in run["protections"].items():
        worst = float(art["linf_255"].max())
        eps = 255 * float(art["eps"])
        budget[name] = res.claim("TUE-SNa", f"{_name(name)} respects its budget: every spoiled image within L-inf "
                                            f"{eps:g}/255 of its original (precondition)",
                                 "largest L-inf distance (/255)",
                                 _exact(worst, eps + 0.5, "<", n_images,
                                        "the largest L-inf distance over every spoiled image and pixel"),
                                 role="supporting", key=name, unit="pixels_255",
                                 setting=f"{n_images:,} spoiled training images, clipped to [0, 1]")
    sup_clean = per_seed(vic["sup:clean"])
    res.claim("TUE-SN", f"the clean supervised victims reach the accuracy floor: above {cfg.accuracy_floor:.0%} "
                        "(precondition of the supervised tables)", "clean accuracy of the clean supervised victims",
              S.mean_test(sup_clean, cfg.accuracy_floor, ">"), role="supporting",
              setting=f"{len(sup_clean)} victim seed(s), {M.display_name(cfg.model)}, {n_images:,} images, "
                      f"{cfg.epochs:g} epochs")
    # TUE-LS: exact measurements of the crafted sets
    sep = run["separability"]
    parts = []
    for name, side in (("emn", ">"), ("sn", ">"), ("clean", "<")):
        what = "the clean images" if name == "clean" else f"{_name(name)}'s perturbations"
        verb = "are not" if side == "<" else "are"
        parts.append(res.claim("TUE-LS", f"{what} {verb} linearly separable by class: a linear model fits "
                                         f"{'under' if side == '<' else 'at least'} {cfg.separable:.0%} of them",
                               "training accuracy of the linear model",
                               _exact(sep[(name, "linear")], cfg.separable, side, n_images,
                                      f"the training accuracy over all {n_images:,} samples"),
                               role="supporting", key=name,
                               paper_key=None if name == "sn" else f"ls.linear.{name}",  # the deck has no SN row
                               setting=f"{n_images:,} CIFAR-10 training images, {cfg.separability_steps} L-BFGS steps"))
    res.joint("TUE-LS", f"error-minimising and synthetic perturbations are linearly separable (at least "
                        f"{cfg.separable:.0%}) while the clean data are not", parts, role="headline")
    # TUE-TT: SimCLR's probe, paired by seed
    simclr, rf = per_seed(vic["simclr:clean"]), per_seed(vic["random_features:clean"])
    setting = (f"{len(simclr)} victim seeds, SimCLR on {M.display_name(cfg.encoder)}, {cfg.ssl_epochs:g} epochs, "
               f"{n_images:,} images, then a linear probe; paired by seed")
    floor = res.claim("TUE-TT", f"SimCLR learns from clean data: its linear probe at least {100 * cfg.ssl_margin:g} "
                                "points above the random-feature probe (precondition)",
                      "clean accuracy, SimCLR - random features",
                      S.paired_difference_test(simclr, rf, cfg.ssl_margin, ">"), role="supporting", setting=setting)
    tue = res.claim("TUE-TT", f"TUE lowers SimCLR's linear-probe accuracy at least {100 * cfg.drop_margin:g} points "
                              "below clean", "clean accuracy, SimCLR clean - TUE",
                    S.paired_difference_test(simclr, per_seed(vic["simclr:tue"]), cfg.drop_margin, ">"),
                    role="supporting", key="tue", setting=setting, requires=[floor, budget["tue"]],
                    paper_key="derived.simclr.drop.tue")
    emn = res.claim("TUE-TT", f"EMN does not: SimCLR's linear-probe accuracy less than {100 * cfg.drop_margin:g} points "
                              "below clean", "clean accuracy, SimCLR clean - EMN",
                    S.paired_difference_test(simclr, per_seed(vic["simclr:emn"]), cfg.drop_margin, "<"),
                    role="supporting", key="emn", setting=setting, requires=[floor, budget["emn"]],
                    paper_key="derived.simclr.drop.emn")
    res.joint("TUE-TT", "TUE lowers the linear-probe accuracy of a contrastive learner (SimCLR) where EMN does not",
              [tue, emn], role="headline")


# --------------------------------------------------------------------------- power (before the run)
SPREAD = 0.03  # assumed SD over seeds of a SimCLR probe's accuracy (3 points; not measured)


def power_analysis(cfg) -> pd.DataFrame:
    """The power of each part of the TUE-TT headline at this profile, before the run: the paper's
    SimCLR differences as the effects (clean - TUE 37.7 points, clean - EMN 0.3), an assumed spread of
    the paired difference over seeds, the victim seeds as the units (``poisonrepro.power``: the
    one-sided paired t test the claims use). TUE-LS is an exact measurement (no sampling test) and
    the only other headline; the joint claim's p is its parts' largest, so the family is one."""
    from ... import power as PW
    n, sd = cfg.victim_seeds, SPREAD * 2 ** 0.5
    drop_tue, drop_emn = paper_value("derived.simclr.drop.tue"), paper_value("derived.simclr.drop.emn")
    margin = cfg.drop_margin
    rows = [PW.plan_row(f"SimCLR clean - TUE at least {100 * margin:g} points", "a victim seed (paired)", n,
                        "paired t bound over the seeds", f"{100 * drop_tue:.1f} points (TUE-TT, SimCLR, CIFAR-10)",
                        f"SD of the paired difference {100 * sd:.1f} points (assumed)",
                        lambda k, level: PW.mean_difference_power(k, drop_tue, sd, margin, level), 1),
            # the "<" side: the difference below the margin, i.e. margin - difference above 0
            PW.plan_row(f"SimCLR clean - EMN under {100 * margin:g} points", "a victim seed (paired)", n,
                        "paired t bound over the seeds", f"{100 * drop_emn:.1f} points (TUE-TT, SimCLR, CIFAR-10)",
                        f"SD of the paired difference {100 * sd:.1f} points (assumed)",
                        lambda k, level: PW.mean_difference_power(k, margin - drop_emn, sd, 0.0, level), 1)]
    return PW.power_table(rows)
