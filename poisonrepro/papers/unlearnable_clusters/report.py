"""Notebook 13, Unlearnable Clusters (Zhang et al., CVPR 2023): figures, tables and claims from the
results of ``unlearnable_clusters.experiments`` (every table is saved here). Nothing here is cached.

The unit of every claim is the victim training (a seed): each victim is scored on the clean test
images relabelled as its training set was, and a claim tests the per-seed accuracies, paired by seed
where two arms are compared (the victims of one seed share their initial weights and batch order),
never the test images as trials. The budget's precondition is exact: the largest L-inf distance of
any spoiled training image from its original, over every image and pixel.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import models as M
from ... import plots as P
from ... import stats as S
from ...data import CIFAR10_CLASSES
from ...evaluation import cifar10_training_set
from ...reference import get
from ...results import Results
from ...seedwise import per_seed, seed_row
from .experiments import METHOD_NAME

plt = P.plt
PAPER = "unlearnable_clusters"
COLOR = {"clean": "0.2", "uc": "tab:red", "synper": "tab:olive", "emaxn": "tab:green", "eminn": "tab:purple",
         "advpoison": "tab:blue", "deepconfuse": "tab:brown"}
#: UC Table 3's column of each defence ("Gaussian": the blur, as the authors' code smooths)
DEFENCE_PAPER = {"mixup": "mixup", "gaussian_blur": "gaussian", "cutmix": "cutmix", "cutout": "cutout"}


def standin_label(cfg) -> str:
    return (f"STAND-IN: CIFAR-10 ({10 * cfg.train_per_class:,} training images) relabelled by the hacker into "
            f"{cfg.hacker_classes} classes (c mod {cfg.hacker_classes}) for the paper's Pets; "
            f"{M.display_name(cfg.model)} victims, {cfg.epochs:g} epochs (paper: ResNet-18, 90); UC's surrogate is the "
            f"protector's {M.display_name(cfg.surrogate)} trained on its 10 labels (paper: ImageNet ResNet-50)")


def paper_value(key: str) -> float:
    return get(PAPER, key).value


# --------------------------------------------------------------------------- the protections
def budget_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UC-T1a (saved): per protection, its deltas, whether it used labels, its budget and the largest
    and median L-inf distance of the spoiled training images from their originals (pixel levels,
    after clipping); for UC the clusters' sizes and how pure they are in the protector's classes."""
    _, y = cifar10_training_set(cfg.train_per_class)
    rows = []
    for name, art in run["protections"].items():
        kind = name.split(":")[0]
        linf = art["linf_255"].float()
        row = {"protection": METHOD_NAME[kind] + (f", p = {name.split(':p')[1]}" if ":p" in name else ""),
               "deltas": int(art["delta_levels"].shape[0]), "labels used": "none" if kind == "uc" else "protector's 10",
               "budget (/255)": round(255 * float(art["eps"]), 3), "largest L-inf (/255)": float(linf.max()),
               "median L-inf (/255)": float(linf.median())}
        if kind == "uc":
            groups = art["groups"]
            purity = sum(int(np.bincount(y[groups == g].numpy(), minlength=10).max()) for g in groups.unique())
            row.update({"cluster sizes": f"{int(art['cluster_sizes'].min())}-{int(art['cluster_sizes'].max())}",
                        "cluster purity": purity / len(groups)})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("protection")
    res.save_table(table, "UC-T1a")
    return table


def fig_protections(cfg, run: dict, res: Results, count: int = 3):
    """UC-T1b: ``count`` training images with each protection (the spoiled image, and its noise
    amplified: +-budget as black and white)."""
    x, y = cifar10_training_set(cfg.train_per_class)
    picks = [int(np.flatnonzero(y.numpy() == c)[0]) for c in range(min(count, 10))]
    kinds = list(cfg.methods)
    fig, axes = plt.subplots(1 + len(kinds), 2 * len(picks), figsize=(P.WIDTH, 1.1 * (1 + len(kinds)) + 0.6),
                             squeeze=False)
    for j, i in enumerate(picks):
        axes[0, 2 * j].imshow(P.to_image(x[i]), interpolation="nearest")
        axes[0, 2 * j].set_title(CIFAR10_CLASSES[int(y[i])], fontsize=P.SMALL)
        for r, kind in enumerate(kinds, start=1):
            art = run["protections"][kind]
            row = int(y[i]) if bool(art["by_class"]) else int(art["groups"][i])
            delta = art["delta_levels"][row].float()
            noisy = (x[i].float() + delta).clamp(0, 255) / 255
            axes[r, 2 * j].imshow(P.to_image(noisy), interpolation="nearest")
            axes[r, 2 * j + 1].imshow(P.to_image(0.5 + 0.5 * delta / (255 * float(art["eps"]))),
                                      interpolation="nearest")
            if r == 1:
                axes[r, 2 * j + 1].set_title("noise (amplified)", fontsize=P.SMALL)
    for ax in axes.flat:
        ax.axis("off")
    P.row_label(axes[0, 0], "clean", width_in=1.2)
    for r, kind in enumerate(kinds, start=1):
        P.row_label(axes[r, 0], f"{METHOD_NAME[kind]}\n{255 * float(run['protections'][kind]['eps']):g}/255",
                    width_in=1.2)
    title = ("UC-T1b: the protections; UC adds one pattern per cluster of the surrogate's features, the baselines "
             "one per image")
    return P.finish(fig, res, "UC-T1b", title, standin_label(cfg))


# --------------------------------------------------------------------------- UC-T1
def outcome_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UC-T1 (saved): the hacker's victims' clean accuracy (means over seeds, 95% t intervals) with
    each protection, beside the paper's ResNet-18 on Pets: the clean and UC victims and the strongest
    baseline on the headline seeds, every baseline on its screening seed(s)."""
    vic = run["victims"]
    rows = [seed_row({"protection": "clean", "seeds used": "headline"}, vic["clean"], paper_value("t1.rn18.pets.clean"))
            | {"method": "clean"},
            seed_row({"protection": METHOD_NAME["uc"], "seeds used": "headline"}, vic["uc"],
                     paper_value("t1.rn18.pets.uc")) | {"method": METHOD_NAME["uc"]}]
    strongest = run["strongest"]
    # the row's label is the same at every profile (the notebook's regenerated list is compared by nbval);
    # which baseline it is, is the data's choice: its own column
    rows.append(seed_row({"protection": "the strongest baseline", "seeds used": "headline"},
                         vic[f"baseline:{strongest}"], paper_value(f"t1.rn18.pets.{strongest}")) | {"method": METHOD_NAME[strongest]})
    for arm, rs in vic.items():
        if arm.startswith("screen:"):
            kind = arm.split(":")[1]
            rows.append(seed_row({"protection": METHOD_NAME[kind], "seeds used": "screening"}, rs,
                                 paper_value(f"t1.rn18.pets.{kind}")) | {"method": METHOD_NAME[kind]})
    table = pd.DataFrame(rows).set_index(["protection", "seeds used"])
    res.save_table(table, "UC-T1")
    return table


def fig_outcome(cfg, table: pd.DataFrame, res: Results):
    """UC-T1: the accuracies of the table as bars with their intervals, the paper's as stars."""
    fig, ax = plt.subplots(figsize=(P.WIDTH, 3.4))
    labels = [f"{m}\n({'strongest, ' if p.startswith('the strongest') else ''}{s})"
              for (p, s), m in zip(table.index, table.method)]
    xs = np.arange(len(table))
    ax.bar(xs, table.test_accuracy, color="0.75",
           yerr=P.error_bars(table.test_accuracy, table.ci_low, table.ci_high), capsize=3,
           label="measured: mean over seeds (95% t interval where 2+ seeds)")
    ax.plot(xs, table.paper, "k*", ms=9, label="paper: ResNet-18 on Pets (Table 1)")
    ax.axhline(1 / cfg.hacker_classes, color="0.5", ls=":", lw=1, label=f"chance ({cfg.hacker_classes} classes)")
    ax.set_xticks(xs, labels, fontsize=P.SMALL, rotation=30, ha="right")
    ax.set_ylabel("clean test accuracy (hacker's labels)")
    ax.set_ylim(0, 1.3)  # room above the bars for the legend, which hid the last bar
    ax.set_yticks(np.arange(0, 1.01, 0.2))
    ax.legend(fontsize=P.SMALL, loc="upper center", ncol=2)
    title = (f"UC-T1: the hacker's victims trained on each protected set, relabelled into {cfg.hacker_classes} "
             "classes the protector did not know")
    return P.finish(fig, res, "UC-T1", title, standin_label(cfg))


# --------------------------------------------------------------------------- UC-T3 and UC-AT
def defence_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UC-T3 (saved): UC's victims under each defence of the data user (no defence: the headline's
    flip-and-crop victims), beside Table 3."""
    vic = run["victims"]
    rows = [seed_row({"defence": "none (flip and crop)"}, vic["uc"], paper_value("t3.uc.none"))]
    for d in cfg.defences:
        paper = paper_value(f"t3.uc.{DEFENCE_PAPER[d]}") if d in DEFENCE_PAPER else np.nan
        rows.append(seed_row({"defence": d.replace("_", " ")}, vic[f"defence:{d}"], paper))
    table = pd.DataFrame(rows).set_index("defence")
    res.save_table(table, "UC-T3")
    return table


def at_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UC-AT (saved): victims adversarially trained at each rho (L-inf rho/255), on the clean set and
    each protection of ``at_methods``, beside the AT table."""
    rows = []
    for rho in cfg.at_rhos:
        for m in cfg.at_methods:
            key = f"at.rho{rho:g}.{m}"
            rows.append(seed_row({"rho (/255)": rho, "training set": METHOD_NAME[m]}, run["victims"][f"at:{rho:g}:{m}"],
                                 paper_value(key) if rho in (1, 2) else np.nan))
    table = pd.DataFrame(rows).set_index(["rho (/255)", "training set"])
    res.save_table(table, "UC-AT")
    return table


# --------------------------------------------------------------------------- UC-F4 and UC-P
def relabel_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UC-F4a (saved): clean and UC victims' accuracy for each number of hacker classes n, with
    chance (1/n)."""
    vic = run["victims"]
    rows = []
    for n in sorted((cfg.hacker_classes,) + cfg.relabel_grid):
        for m in ("clean", "uc"):
            rs = vic[m] if n == cfg.hacker_classes else vic[f"relabel:{n}:{m}"]
            rows.append(seed_row({"hacker classes": n, "training set": METHOD_NAME[m]}, rs, np.nan) | {"chance": 1 / n})
    table = pd.DataFrame(rows).set_index(["hacker classes", "training set"]).drop(columns="paper")
    res.save_table(table, "UC-F4a")
    return table


def simclr_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UC-F4b (saved): SimCLR pre-training and a linear probe on each protected set."""
    rows = [seed_row({"training set": METHOD_NAME[m]}, run["victims"][f"simclr:{m}"], np.nan)
            for m in cfg.simclr_methods]
    table = pd.DataFrame(rows).set_index("training set").drop(columns="paper")
    res.save_table(table, "UC-F4b")
    return table


def fig_f4(cfg, relabel: pd.DataFrame, simclr: pd.DataFrame, res: Results):
    """UC-F4: (a) accuracy against the number of hacker classes, clean and UC; (b) SimCLR's probe."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(P.WIDTH, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    for m in ("clean", "uc"):
        part = relabel.xs(METHOD_NAME[m], level="training set")
        a.plot(part.index, part.test_accuracy, marker="o", color=COLOR[m], label=METHOD_NAME[m])
    chance = relabel.xs(METHOD_NAME["clean"], level="training set").chance
    a.plot(chance.index, chance, ":", color="0.5", label="chance (1/n)")
    a.set_xlabel("classes the hacker relabels into (n)")
    a.set_ylabel("clean test accuracy")
    a.set_ylim(0, 1)
    a.legend(fontsize=P.SMALL)
    P.title(a, "(a) different labellings", fontsize=P.SMALL + 1)
    b.bar(np.arange(len(simclr)), simclr.test_accuracy, color=[COLOR.get(k, "0.5") for k in cfg.simclr_methods])
    b.set_xticks(np.arange(len(simclr)), simclr.index, fontsize=P.SMALL)
    b.set_ylim(0, 1)
    b.set_ylabel("linear-probe accuracy")
    P.title(b, f"(b) SimCLR ({cfg.simclr_epochs:g} epochs), {cfg.hacker_classes} classes", fontsize=P.SMALL + 1)
    for ax in (a, b):
        ax.tick_params(labelsize=P.SMALL)
    title = "UC-F4: UC under other labellings and under self-supervised exploitation (one seed each)"
    return P.finish(fig, res, "UC-F4", title, standin_label(cfg))


def clusters_table(cfg, run: dict, res: Results) -> pd.DataFrame:
    """UC-P (saved): UC's victims' accuracy for each number of clusters p."""
    vic = run["victims"]
    rows = [seed_row({"clusters p": p}, vic["uc"] if p == cfg.clusters else vic[f"clusters:{p}"], np.nan)
            for p in sorted((cfg.clusters,) + cfg.cluster_grid)]
    table = pd.DataFrame(rows).set_index("clusters p").drop(columns="paper")
    res.save_table(table, "UC-P")
    return table


def fig_clusters(cfg, table: pd.DataFrame, clean: float, res: Results):
    fig, ax = plt.subplots(figsize=(P.WIDTH * 0.7, 3.0))
    ax.errorbar(table.index, table.test_accuracy, yerr=P.error_bars(table.test_accuracy, table.ci_low, table.ci_high),
                marker="o", capsize=3, color=COLOR["uc"], label="UC (mean over seeds)")
    ax.axhline(clean, color=COLOR["clean"], ls="--", lw=1, label="clean victims")
    ax.set_xlabel("clusters p")
    ax.set_ylabel("clean test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=P.SMALL)
    ax.tick_params(labelsize=P.SMALL)
    return P.finish(fig, res, "UC-P", "UC-P: the effect of the number of clusters p", standin_label(cfg))


# --------------------------------------------------------------------------- claims
def record_claims(cfg, run: dict, res: Results):
    """The claims of issue 25 §3 for UC, each tested over the victim seeds.

    Supporting preconditions: every protection keeps its budget (exact), and the clean victims reach
    the accuracy floor on the hacker's labels. Headlines (Holm over the two): UC lowers the hacker's
    accuracy at least ``drop_margin`` below clean, and at least ``gap_margin`` below the strongest
    baseline (screened), each paired by seed."""
    vic = run["victims"]
    budget = {}
    for name, art in run["protections"].items():
        worst, n = float(art["linf_255"].max()), int(art["linf_255"].numel())
        eps = 255 * float(art["eps"])
        limit = eps + 0.5  # whole pixel levels: at most the budget is less than half a level over it
        decision = S.decide(worst, worst, worst, limit, "<", n=n, p=0.0 if worst < limit else 1.0,
                            test="exact: the largest L-inf distance over every spoiled image and pixel")
        label = METHOD_NAME[name.split(":")[0]] + (f" (p = {name.split(':p')[1]})" if ":p" in name else "")
        budget[name] = res.claim("UC-T1a", f"{label} respects its budget: every spoiled image within L-inf "
                                           f"{eps:g}/255 of its original (precondition)",
                                 "largest L-inf distance (/255)", decision, role="supporting", key=name,
                                 unit="pixels_255", setting=f"{n:,} spoiled training images, clipped to [0, 1]")
    setting = lambda arm: (f"{len(vic[arm])} victim seed(s), {M.display_name(cfg.model)}, "  # noqa: E731
                           f"{10 * cfg.train_per_class:,} CIFAR-10 images in {cfg.hacker_classes} hacker classes, "
                           f"{cfg.epochs:g} epochs")
    clean, uc = per_seed(vic["clean"]), per_seed(vic["uc"])
    floor = res.claim("UC-T1", f"the clean victims reach the accuracy floor on the hacker's {cfg.hacker_classes} "
                               f"classes: clean accuracy above {cfg.accuracy_floor:.0%} (precondition)",
                      "clean accuracy of the clean victims", S.mean_test(clean, cfg.accuracy_floor, ">"),
                      role="supporting", setting=setting("clean"))
    res.claim("UC-T1", f"unlearnable clusters lower the hacker's accuracy under labels the protector did not know: at "
                       f"least {100 * cfg.drop_margin:g} points below the clean victims'",
              "clean accuracy, clean - UC", S.paired_difference_test(clean, uc, cfg.drop_margin, ">"),
              role="headline", setting=setting("uc") + "; paired by seed", requires=[floor, budget["uc"]],
              paper_key="derived.rn18.pets.drop.uc")
    strongest = run["strongest"]
    base = per_seed(vic[f"baseline:{strongest}"])
    res.claim("UC-T1", f"unlearnable clusters beat every baseline: the hacker's accuracy with UC is at least "
                       f"{100 * cfg.gap_margin:g} points below that with the strongest baseline "
                       f"({METHOD_NAME[strongest]}, chosen on the screening seeds)",
              "clean accuracy, strongest baseline - UC", S.paired_difference_test(base, uc, cfg.gap_margin, ">"),
              role="headline", key=strongest, setting=setting("uc") + "; paired by seed; the baseline chosen on "
                                                                      "seeds the comparison does not use",
              requires=[floor, budget["uc"], budget[strongest]], paper_key=f"derived.rn18.pets.gap.{strongest}")


# --------------------------------------------------------------------------- power (before the run)
SPREAD = 0.05  # assumed SD over seeds of a victim's accuracy (5 points; not measured)


def power_analysis(cfg) -> pd.DataFrame:
    """The power of each headline at this profile, before the run: the paper's ResNet-18 Pets
    differences as the effects (clean - UC 50.1 points; the strongest baseline (AdvPoison) - UC 38.7),
    an assumed spread of the paired difference over seeds, the victim seeds as the units, Holm over
    the two headlines (``poisonrepro.power``: the one-sided paired t test the claims use)."""
    from ... import power as PW
    n, family, sd = cfg.victim_seeds, 2, SPREAD * 2 ** 0.5
    drop, gap = paper_value("derived.rn18.pets.drop.uc"), paper_value("derived.rn18.pets.gap.advpoison")
    rows = [PW.plan_row(f"clean - UC at least {100 * cfg.drop_margin:g} points", "a victim seed (paired)", n,
                        "paired t bound over the seeds", f"{100 * drop:.1f} points (Table 1, ResNet-18, Pets)",
                        f"SD of the paired difference {100 * sd:.0f} points (assumed)",
                        lambda k, level: PW.mean_difference_power(k, drop, sd, cfg.drop_margin, level), family),
            PW.plan_row(f"strongest baseline - UC at least {100 * cfg.gap_margin:g} points", "a victim seed (paired)",
                        n, "paired t bound over the seeds",
                        f"{100 * gap:.1f} points (Table 1: AdvPoison, the paper's strongest, on Pets)",
                        f"SD of the paired difference {100 * sd:.0f} points (assumed)",
                        lambda k, level: PW.mean_difference_power(k, gap, sd, cfg.gap_margin, level), family)]
    return PW.power_table(rows)
