"""Notebook 12, Unlearnable Examples (Huang et al., ICLR 2021): figures, tables and claims from the
results of ``unlearnable_examples.experiments`` (every table is saved here). Nothing here is cached.

The unit of every claim is the victim training (a seed): each victim is scored on the clean test
images, and a claim tests the per-seed accuracies (a t test over seeds, paired by seed where two
arms are compared: the victims of one seed share their initial weights and batch order), never the
test images as trials. The budget's precondition is exact: the largest L-inf distance of any
spoiled training image from its original, over every image and pixel.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import models as M
from ... import plots as P
from ... import stats as S
from ...data import CIFAR10_CLASSES, class_index
from ...evaluation import cifar10_test_set, cifar10_training_set
from ...reference import get
from ...results import Results
from .experiments import NOISE_NAME

plt = P.plt
ARM_COLOR = {"clean": "0.2", "error_min": "tab:red", "error_min_class": "tab:purple", "random": "tab:blue",
             "error_max": "tab:green"}
PAPER = "unlearnable_examples"
SHORT_NAME = {"error_min": "error-min.\nsample-wise", "error_min_class": "error-min.\nclass-wise",
              "random": "random\nsample-wise", "error_max": "error-max.\nsample-wise"}
#: the reference value of each arm's accuracy (Table 1, Fig. 1, Table 3)
ARM_PAPER = {"clean": "rn18_c10_clean", "error_min": "rn18_c10_sample", "error_min_class": "rn18_c10_class",
             "random": "fig1_random_sample", "error_max": "fig1_error_max_sample", "augment:cutout": "cutout_sample",
             "augment:mixup": "mixup_sample", "augment:cutmix": "cutmix_sample", "arch:vgg11": "vgg11_c10_sample"}


def standin_label(cfg) -> str:
    return (f"STAND-IN scale: {M.display_name(cfg.model)} victims for the paper's ResNet-18, noise made with "
            f"{M.display_name(cfg.surrogate)}, {10 * cfg.train_per_class:,} CIFAR-10 training images (paper: 50,000), "
            f"{cfg.epochs:g} epochs (paper: 60), error-minimising noise capped at {cfg.max_rounds} min-min rounds")


def arm_label(arm: str) -> str:
    if arm == "clean":
        return "clean"
    if arm in NOISE_NAME:
        return NOISE_NAME[arm]
    kind, _, value = arm.partition(":")
    if kind == "fraction":
        return f"{float(value):.0%} unlearnable (sample-wise)"
    if kind == "augment":
        return f"sample-wise + {value}"
    if kind == "arch":
        return f"sample-wise, victim {M.display_name(value)}"
    return f"{cfg_class_word(value)} unlearnable"


def cfg_class_word(noise: str) -> str:
    """The one-class arms' label: which noise made the class unlearnable."""
    return "one class, " + NOISE_NAME.get(noise, noise).split(", ")[-1]


def per_seed(rs, key: str = "test_accuracy") -> np.ndarray:
    """Each victim's (seed's) score ``key``, in seed order."""
    return np.array([float(r[key]) for r in rs])


def seed_interval(values) -> tuple[float, float]:
    """The two-sided 95% t interval of the mean over seeds (NaN with fewer than two seeds)."""
    from statsmodels.stats.weightstats import DescrStatsW
    v = np.asarray(values, float)
    if len(v) < 2:
        return (np.nan, np.nan)
    if np.ptp(v) == 0:
        return (float(v[0]), float(v[0]))
    lo, hi = DescrStatsW(v).tconfint_mean(alpha=0.05)
    return float(lo), float(hi)


def _paper(arm: str) -> float:
    return get(PAPER, ARM_PAPER[arm]).value if arm in ARM_PAPER else np.nan


# --------------------------------------------------------------------------- UE-1
def budget_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UE-1a (saved): per noise, the number of deltas, the budget and the largest and median L-inf
    distance of the spoiled training images from their originals (pixel levels, after clipping), the
    min-min rounds and the surrogate's final error on the noisy set (error-minimising noise)."""
    rows = []
    for kind, art in run["noises"].items():
        linf = art["linf_255"].float()
        rows.append({"noise": NOISE_NAME[kind], "deltas": int(art["delta_levels"].shape[0]),
                     "budget_255": round(255 * cfg.eps, 6), "max_linf_255": float(linf.max()),
                     "median_linf_255": float(linf.median()),
                     "rounds": int(art["rounds"]) if "rounds" in art else np.nan,
                     "surrogate_error": float(art["train_error"]) if "train_error" in art else np.nan})
    table = pd.DataFrame(rows).set_index("noise")
    res.save_table(table, "UE-1a")
    return table


def fig_noise(cfg, run: dict, res: Results, count: int = 3):
    """UE-1: ``count`` training images of different classes with each noise (the spoiled image, and its
    noise amplified to fill the grey range: +-eps as black and white)."""
    x, y = cifar10_training_set(cfg.train_per_class)
    picks = [int(np.flatnonzero(y.numpy() == c)[0]) for c in range(min(count, 10))]
    kinds = list(run["noises"])
    fig, axes = plt.subplots(1 + len(kinds), 2 * len(picks), figsize=(P.WIDTH, 1.25 * (1 + len(kinds)) + 0.6),
                             squeeze=False)
    levels = 255 * cfg.eps
    for j, i in enumerate(picks):
        axes[0, 2 * j].imshow(P.to_image(x[i]), interpolation="nearest")
        axes[0, 2 * j].set_title(CIFAR10_CLASSES[int(y[i])], fontsize=P.SMALL)
        axes[0, 2 * j + 1].axis("off")
        for r, kind in enumerate(kinds, start=1):
            art = run["noises"][kind]
            row = int(y[i]) if bool(art["by_class"]) else int(art["groups"][i])
            delta = art["delta_levels"][row].float()
            noisy = (x[i].float() + delta).clamp(0, 255) / 255
            axes[r, 2 * j].imshow(P.to_image(noisy), interpolation="nearest")
            axes[r, 2 * j + 1].imshow(P.to_image(0.5 + 0.5 * delta / levels), interpolation="nearest")
            if r == 1:
                axes[r, 2 * j].set_title("with noise", fontsize=P.SMALL)
                axes[r, 2 * j + 1].set_title("noise (x16)", fontsize=P.SMALL)
    for ax in axes.flat:
        ax.axis("off")
    P.row_label(axes[0, 0], "clean", width_in=1.0)
    for r, kind in enumerate(kinds, start=1):
        P.row_label(axes[r, 0], SHORT_NAME[kind], width_in=1.2)
    title = (f"UE-1: the noises at L-inf {255 * cfg.eps:g}/255; sample-wise: one pattern per image, class-wise: "
             "one per class (the same on every image of it)")
    return P.finish(fig, res, "UE-1", title, standin_label(cfg))


# --------------------------------------------------------------------------- UE-2
def outcome_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UE-2 (saved): per arm (clean and each noise on the whole training set), the clean test accuracy
    of the victims (mean over seeds, its 95% t interval, the seeds) beside the paper's."""
    rows = []
    for arm in ["clean", *run["noises"]]:
        acc = per_seed(run["victims"][arm])
        lo, hi = seed_interval(acc)
        rows.append({"training set": arm_label(arm), "seeds": len(acc), "test_accuracy": float(acc.mean()),
                     "ci_low": lo, "ci_high": hi, "paper": _paper(arm)})
    table = pd.DataFrame(rows).set_index("training set")
    res.save_table(table, "UE-2")
    return table


def fig_curves(cfg, run: dict, res: Results):
    """UE-2: test accuracy after every epoch (on the first ``curve_images`` test images), each seed
    thin and the mean thick, for the clean set and each noise on the whole set."""
    fig, ax = plt.subplots(figsize=(P.WIDTH, 3.6))
    for arm in ["clean", *run["noises"]]:
        curves = np.stack([r["curve"].numpy() for r in run["victims"][arm]])
        epochs = np.arange(1, curves.shape[1] + 1) * cfg.epochs / curves.shape[1]
        color = ARM_COLOR.get(arm, "0.5")
        for c in curves:
            ax.plot(epochs, c, color=color, lw=0.6, alpha=0.5)
        ax.plot(epochs, curves.mean(0), color=color, lw=2, marker=".", label=f"{arm_label(arm)} ({len(curves)})")
    ax.axhline(0.1, color="0.5", ls=":", lw=1, label="chance")
    ax.axhline(cfg.unlearnable_ceiling, color="tab:red", ls="--", lw=1,
               label=f"claim: below {cfg.unlearnable_ceiling:.0%}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test accuracy ({cfg.curve_images:,} test images)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=P.SMALL, loc="center right")
    ax.tick_params(labelsize=P.SMALL)
    title = "UE-2: learning curves on the clean set and with each noise on every training image (seeds)"
    return P.finish(fig, res, "UE-2", title, standin_label(cfg))


# --------------------------------------------------------------------------- UE-3
def transfer_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UE-3 (saved): the sample-wise error-minimising noise against another architecture and under
    each augmentation (the data user's defences), with the plain victim and the clean one for
    reference; accuracy means over seeds, the paper's Table 1 and 3 numbers beside."""
    arms = ["clean", "error_min", *[a for a in run["victims"] if a.startswith(("augment:", "arch:"))]]
    rows = []
    for arm in arms:
        acc = per_seed(run["victims"][arm])
        kind, _, value = arm.partition(":")
        rows.append({"victim": M.display_name(value if kind == "arch" else cfg.model),
                     "augmentation": value if kind == "augment" else "crop and flip",
                     "training set": "clean" if arm == "clean" else "sample-wise unlearnable", "seeds": len(acc),
                     "test_accuracy": float(acc.mean()), "paper": _paper(arm)})
    table = pd.DataFrame(rows).set_index(["victim", "augmentation", "training set"])
    res.save_table(table, "UE-3")
    return table


# --------------------------------------------------------------------------- UE-4
def fraction_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UE-4 (saved): clean test accuracy against the share of the training set made unlearnable
    (sample-wise): 0 (the clean victims), each of ``fractions``, 1 (UE-2's victims); means over seeds."""
    arms = [(0.0, "clean"), *[(f, f"fraction:{f:g}") for f in cfg.fractions], (1.0, "error_min")]
    rows = []
    for share, arm in arms:
        acc = per_seed(run["victims"][arm])
        lo, hi = seed_interval(acc)
        rows.append({"unlearnable share": share, "seeds": len(acc), "test_accuracy": float(acc.mean()),
                     "ci_low": lo, "ci_high": hi})
    table = pd.DataFrame(rows).set_index("unlearnable share")
    res.save_table(table, "UE-4")
    return table


def fig_fraction(cfg, run: dict, table: pd.DataFrame, res: Results):
    """UE-4: accuracy against the unlearnable share, every seed a dot, the mean with its interval."""
    fig, ax = plt.subplots(figsize=(P.WIDTH * 0.7, 3.2))
    shares = table.index.to_numpy(float)
    ax.errorbar(shares, table.test_accuracy, yerr=P.error_bars(table.test_accuracy, table.ci_low, table.ci_high),
                marker="o", capsize=3, color="tab:red", label="mean over seeds (95% t interval)")
    arms = ["clean", *[f"fraction:{f:g}" for f in cfg.fractions], "error_min"]
    for share, arm in zip(shares, arms):
        acc = per_seed(run["victims"][arm])
        ax.plot(np.full(len(acc), share), acc, ".", color="0.4")
    ax.plot([0, 1], [_paper("clean"), _paper("error_min")], "k*", ms=9, label="paper (Table 1)")
    ax.set_xlabel("share of the training set unlearnable (sample-wise)")
    ax.set_ylabel("clean test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=P.SMALL)
    ax.tick_params(labelsize=P.SMALL)
    title = "UE-4: how much of the data must be unlearnable"
    return P.finish(fig, res, "UE-4", title, standin_label(cfg))


# --------------------------------------------------------------------------- UE-5
def class_accuracy(r: dict, labels: np.ndarray) -> np.ndarray:
    """Per class, the share of its test images that a victim classifies correctly."""
    pred = r["test_prediction"].numpy()
    return np.array([float((pred[labels == c] == c).mean()) for c in range(10)])


def class_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UE-5 (saved): per class, the clean victims' test accuracy and that of the victims trained with
    the class ``protect_class`` alone made unlearnable (sample-wise and class-wise; means over seeds)."""
    _, labels = cifar10_test_set(10 * cfg.test_per_class)
    labels = labels.numpy()
    arms = ["clean", *[a for a in run["victims"] if a.startswith("protect:")]]
    table = pd.DataFrame({arm_label(a): np.mean([class_accuracy(r, labels) for r in run["victims"][a]], axis=0)
                          for a in arms}, index=pd.Index(CIFAR10_CLASSES, name="class"))
    res.save_table(table, "UE-5")
    return table


def fig_classes(cfg, table: pd.DataFrame, res: Results):
    """UE-5: per-class test accuracy with one class made unlearnable, beside the clean victims."""
    fig, ax = plt.subplots(figsize=(P.WIDTH, 3.2))
    x = np.arange(len(table))
    width = 0.8 / len(table.columns)
    colors = ["0.6", "tab:red", "tab:purple"]
    for k, col in enumerate(table.columns):
        ax.bar(x + (k - (len(table.columns) - 1) / 2) * width, table[col], width=width, color=colors[k % 3], label=col)
    bird = class_index(cfg.protect_class)
    marks = [("protect:error_min", "bird_sample_correct"), ("protect:error_min_class", "bird_class_correct")]
    for k, (arm, key) in enumerate(marks, start=1):
        if arm_label(arm) in table.columns:
            ax.plot([bird + (k - (len(table.columns) - 1) / 2) * width], [get(PAPER, key).value], "k*", ms=9,
                    label="paper" if k == 1 else None)
    ax.set_xticks(x, table.index, fontsize=P.SMALL, rotation=30)
    ax.set_ylabel("test accuracy of the class")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=P.SMALL, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: bars and stars stay clear
    title = f"UE-5: protecting one class: the {cfg.protect_class} training images made unlearnable"
    return P.finish(fig, res, "UE-5", title, standin_label(cfg))


# --------------------------------------------------------------------------- claims
def record_claims(cfg, run: dict, res: Results):
    """The claims of issue 25 §3, each tested over the victim seeds.

    Supporting preconditions: every noise keeps its budget (exact), and the clean victims reach the
    accuracy floor. Headlines (Holm over the three): sample-wise and class-wise error-minimising noise
    on every training image hold the victims' clean accuracy below the ceiling; below 100% the effect
    largely vanishes (the victims with ``max(fractions)`` unlearnable beat those with all of it by
    ``vanish_margin``, paired by seed). Supporting controls: random and error-maximising noise keep
    the accuracy within ``learnable_margin`` of clean (paired by seed)."""
    vic = run["victims"]
    budget = {}
    for kind, art in run["noises"].items():
        worst, n = float(art["linf_255"].max()), int(art["linf_255"].numel())
        limit = 255 * cfg.eps + 0.5  # whole pixel levels: at most the budget is less than half a level over it
        decision = S.decide(worst, worst, worst, limit, "<", n=n, p=0.0 if worst < limit else 1.0,
                            test="exact: the largest L-inf distance over every spoiled image and pixel")
        budget[kind] = res.claim("UE-1a", f"the {NOISE_NAME[kind]} noise respects its budget: every spoiled image "
                                          f"within L-inf {255 * cfg.eps:g}/255 of its original (precondition)",
                                 "largest L-inf distance (/255)", decision, role="supporting", key=kind,
                                 unit="pixels_255", setting=f"{n:,} spoiled training images, clipped to [0, 1]")
    clean = per_seed(vic["clean"])
    setting = lambda arm: (f"{len(vic[arm])} victim seed(s), {M.display_name(cfg.model)}, "  # noqa: E731
                           f"{10 * cfg.train_per_class:,} training images, {cfg.epochs:g} epochs")
    floor = res.claim("UE-2", f"the clean victims reach the accuracy floor: clean accuracy above "
                              f"{cfg.accuracy_floor:.0%} (precondition)", "clean accuracy of the clean victims",
                      S.mean_test(clean, cfg.accuracy_floor, ">"), role="supporting", setting=setting("clean"),
                      paper_key="rn18_c10_clean")
    for kind, key in (("error_min", "rn18_c10_sample"), ("error_min_class", "rn18_c10_class")):
        if kind in vic:
            res.claim("UE-2", f"{NOISE_NAME[kind]} noise on every training image holds the victims' clean accuracy "
                              f"below {cfg.unlearnable_ceiling:.0%} (near chance; paper: about 20% and 16%)",
                      f"clean accuracy, {NOISE_NAME[kind]}", S.mean_test(per_seed(vic[kind]), cfg.unlearnable_ceiling,
                                                                          "<"),
                      role="headline", key=kind, setting=setting(kind), requires=[floor, budget[kind]], paper_key=key)
    for kind, key in (("random", "fig1_random_drop"), ("error_max", "fig1_error_max_drop")):
        if kind in vic:
            noisy = per_seed(vic[kind])
            res.claim("UE-2", f"{NOISE_NAME[kind]} noise leaves the data learnable: clean accuracy within "
                              f"{100 * cfg.learnable_margin:g} points of the clean victims'",
                      f"clean accuracy, clean - {NOISE_NAME[kind]}",
                      S.paired_difference_test(clean[:len(noisy)], noisy, cfg.learnable_margin, "<"),
                      role="supporting", key=kind, setting=setting(kind) + "; paired by seed",
                      requires=[floor, budget[kind]], paper_key=key)
    top = max(cfg.fractions)
    part, whole = per_seed(vic[f"fraction:{top:g}"]), per_seed(vic["error_min"])
    res.claim("UE-4", f"the protection largely vanishes below 100%: with {top:.0%} of the training set unlearnable, "
                      f"clean accuracy is at least {100 * cfg.vanish_margin:g} points above that with all of it",
              f"clean accuracy, {top:.0%} - 100% unlearnable", S.paired_difference_test(part, whole, cfg.vanish_margin,
                                                                                         ">"),
              role="headline", setting=setting("error_min") + "; paired by seed (each seed's own random share)",
              requires=[floor, budget["error_min"]])


# --------------------------------------------------------------------------- power (before the run)
SPREAD = 0.05  # assumed SD over seeds of an unlearnable victim's accuracy (5 points; not measured)
#: assumed clean accuracy with 80% unlearnable at the cpu scale: what 10,000 clean images teach the victim
#: (UNCONFIRMED: the paper's Table 2 numbers are not in the project's notes)
PARTIAL_ACCURACY = 0.6


def power_analysis(cfg) -> pd.DataFrame:
    """The power of each headline claim at this profile, before the run: the paper's Table 1 numbers as
    the effect (19.93% sample-wise, 16.42% class-wise; UE-4: an assumed accuracy with the top share
    unlearnable), an assumed spread over seeds, the victim seeds as the units, Holm over the three
    headlines (``poisonrepro.power``: the one-sided t test the claims use)."""
    from ... import power as PW
    sample, klass = get(PAPER, "rn18_c10_sample").value, get(PAPER, "rn18_c10_class").value
    ceiling, n, family = cfg.unlearnable_ceiling, cfg.victim_seeds, 3

    def below(effect):
        return lambda k, level: PW.mean_difference_power(k, ceiling - effect, SPREAD, 0.0, level)
    rows = [PW.plan_row(f"{NOISE_NAME[kind]} noise: clean accuracy below {ceiling:.0%}", "a victim seed", n,
                        "t bound over the seeds", f"{effect:.1%} (Table 1, ResNet-18)",
                        f"SD {100 * SPREAD:g} points over seeds (assumed)", below(effect), family)
            for kind, effect in (("error_min", sample), ("error_min_class", klass))]
    top = max(cfg.fractions)
    rows.append(PW.plan_row(f"{top:.0%} unlearnable: accuracy at least {100 * cfg.vanish_margin:g} points above 100%",
                            "a victim seed (the two arms paired)", n, "paired t bound over the seeds",
                            f"{PARTIAL_ACCURACY:.0%} - {sample:.1%} (assumed at this scale; Table 1)",
                            f"SD of the paired difference {100 * SPREAD * 2 ** 0.5:.0f} points (assumed)",
                            lambda k, level: PW.mean_difference_power(k, PARTIAL_ACCURACY - sample, SPREAD * 2 ** 0.5,
                                                                      cfg.vanish_margin, level), family))
    return PW.power_table(rows)
