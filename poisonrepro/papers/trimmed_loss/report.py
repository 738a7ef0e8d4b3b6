"""Notebook 09, iterative trimmed loss minimisation: figures, tables and claims from the results of
``trimmed_loss.experiments`` (every table is saved here). Nothing here is cached.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import roc_auc_score

from ... import models as M
from ... import plots as P
from ... import stats as S
from ...results import Results
from .experiments import ARMS, KINDS

plt = P.plt
LABEL = {"random": "random labels", "systematic": "systematic labels (y -> y+1)", "badnets": "BadNets backdoor"}
ARM_LABEL = {"clean": "clean labels", "plain": "plain training", "itlm": "ITLM"}


def _rate(cfg, kind):
    return 1 - cfg.alpha_of(kind)


def standin_label(cfg) -> str:
    return (f"STAND-IN scale: {M.display_name(cfg.model)} for the paper's WRN-16, {10 * cfg.train_per_class:,} CIFAR-10 "
            f"training images (paper: 50,000), {cfg.epochs:g} epochs, ITLM {cfg.rounds} rounds x {cfg.round_epochs:g} "
            f"epochs (paper: UNCONFIRMED)")


def early_auroc(result: dict) -> float:
    """How well the first round's losses (after ``round_epochs`` on everything) tell bad from
    clean samples: the probability that a bad sample's loss exceeds a clean one's."""
    bad = result["bad"].numpy()
    return float(roc_auc_score(bad, result["round_loss"][0].numpy())) if 0 < bad.sum() < len(bad) else float("nan")


def trim_scores(result: dict) -> tuple[float, float]:
    """(precision, recall) of what the last trim removed: the share of removed samples that are
    bad, and the share of bad samples removed."""
    bad, removed = result["bad"], ~result["kept"][-1]
    precision = float((bad & removed).sum() / removed.sum()) if removed.any() else float("nan")
    recall = float((bad & removed).sum() / bad.sum()) if bad.any() else float("nan")
    return precision, recall


# --------------------------------------------------------------------------- tables
def accuracy_table(cfg, vic: dict, res: Results) -> pd.DataFrame:
    """TL-1 (saved): per bad-data kind and arm, test accuracy (mean over seeds, and its range),
    the backdoor's attack success rate, the early-loss AUROC and what ITLM's trim removed."""
    rows = []
    for kind in cfg.kinds:
        for arm in ARMS:
            rs = vic[kind][arm]
            acc = np.array([float(r["test_accuracy"]) for r in rs])
            row = {"bad data": LABEL[kind], "bad share": round(_rate(cfg, kind), 3), "arm": ARM_LABEL[arm], "seeds": len(rs),
                   "test_accuracy": acc.mean(), "min": acc.min(), "max": acc.max(),
                   "attack_success_rate": np.mean([float(r["attack_success_rate"]) for r in rs]) if kind == "badnets"
                   else np.nan,
                   "truly_bad": np.mean([float(r["bad"].float().mean()) for r in vic[kind]["plain"]])}
            if arm == "itlm":
                pr = np.array([trim_scores(r) for r in rs])
                row.update(alpha=cfg.alpha_of(kind), early_auroc=np.mean([early_auroc(r) for r in rs]),
                           removed_bad_precision=pr[:, 0].mean(), bad_removed_recall=pr[:, 1].mean())
            rows.append(row)
    for kind in KINDS:
        if kind not in cfg.kinds:  # supporting cells cut for the budget: listed, never silently dropped
            rows += [{"bad data": LABEL[kind], "bad share": round(_rate(cfg, kind), 3), "arm": ARM_LABEL[arm], "seeds": 0,
                      "note": f"not run at {cfg.profile} (paper profile only)"} for arm in ARMS]
    table = pd.DataFrame(rows).set_index(["bad data", "arm"])
    res.save_table(table, "TL-1")
    return table


# --------------------------------------------------------------------------- figures
def _finish(fig, cfg, res: Results, artifact: str, title: str):
    return P.finish(fig, res, artifact, title, standin_label(cfg))


def fig_loss_histograms(cfg, vic: dict, res: Results):
    """TL-1a: the losses ITLM ranks after each round (first seed), clean against bad samples."""
    fig, axes = plt.subplots(len(cfg.kinds), cfg.rounds, figsize=(min(P.WIDTH, 2.6 * cfg.rounds), 2.4 * len(cfg.kinds) + 0.4),
                             squeeze=False)
    for i, kind in enumerate(cfg.kinds):
        r = vic[kind]["itlm"][0]
        bad = r["bad"].numpy()
        for t in range(cfg.rounds):
            loss = np.clip(r["round_loss"][t].numpy(), 1e-4, None)
            frame = pd.DataFrame({"loss": loss, "sample": np.where(bad, "bad", "clean")})
            sns.histplot(frame, x="loss", hue="sample", hue_order=["clean", "bad"], log_scale=True, stat="density",
                         common_norm=False, element="step", bins=40, ax=axes[i, t], palette=["tab:blue", "tab:red"])
            kept = r["kept"][t + 1]
            cut = loss[kept.numpy()].max()
            axes[i, t].axvline(cut, color="0.3", ls="--", lw=1)
            auroc = roc_auc_score(bad, loss) if 0 < bad.sum() < len(bad) else float("nan")
            P.title(axes[i, t], f"{LABEL[kind]}\nafter round {t + 1} (AUROC {auroc:.2f})", fontsize=8)
            axes[i, t].set_xlabel("loss at the given label (log scale)", fontsize=8)
            axes[i, t].tick_params(labelsize=P.SMALL)
            axes[i, t].xaxis.set_minor_formatter(plt.NullFormatter())  # no crowded minor labels on short ranges
            if t:
                axes[i, t].set_ylabel("")
            if (i, t) != (0, 0):
                axes[i, t].get_legend().remove()
    return _finish(fig, cfg, res, "TL-1a", "TL-1a: training loss of clean and bad samples after each ITLM round (first seed); "
                   "dashed: the trim's cut (alpha = 1 - bad share)")


def fig_fitting(cfg, vic: dict, res: Results):
    """TL-1b: training accuracy at their own (bad) labels of clean and bad samples against the
    epoch, plain training (mean over seeds, band: min to max)."""
    fig, axes = plt.subplots(1, len(cfg.kinds), figsize=(min(P.WIDTH, max(5.5, 3.2 * len(cfg.kinds))), 3.0), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, kind in zip(axes, cfg.kinds):
        for part, color in (("clean", "tab:blue"), ("bad", "tab:red")):
            curves = np.stack([r["epoch_fitted"][:, (r["bad"] if part == "bad" else ~r["bad"])].float().mean(1).numpy()
                               for r in vic[kind]["plain"]])
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.mean(0), marker=".", color=color, label=f"{part} samples")
            ax.fill_between(epochs, curves.min(0), curves.max(0), color=color, alpha=0.2)
        P.title(ax, f"{LABEL[kind]} ({100 * _rate(cfg, kind):g}%)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("training accuracy at the given label")
    axes[0].legend(fontsize=8)
    return _finish(fig, cfg, res, "TL-1b", f"TL-1b: plain training fits the clean samples first ({cfg.victim_seeds} seeds; band: min-max)")


def fig_accuracy(cfg, vic: dict, res: Results):
    """TL-1c: test accuracy per kind and arm, and the backdoor's attack success rate, every seed
    shown."""
    rows = [{"bad data": LABEL[k], "arm": ARM_LABEL[a], "test accuracy": float(r["test_accuracy"]),
             "attack success rate": float(r.get("attack_success_rate", np.nan))}
            for k in cfg.kinds for a in ARMS for r in vic[k][a]]
    frame = pd.DataFrame(rows)
    backdoor = "badnets" in cfg.kinds
    fig, axes = plt.subplots(1, 2 if backdoor else 1, figsize=(P.WIDTH if backdoor else 6.5, 3.4), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1.2] if backdoor else [1]})
    axes = axes[0]
    sns.barplot(frame, x="bad data", y="test accuracy", hue="arm", errorbar=None, alpha=0.6, ax=axes[0])
    sns.stripplot(frame, x="bad data", y="test accuracy", hue="arm", dodge=True, palette="dark:k", size=4, legend=False,
                  ax=axes[0])
    axes[0].legend(fontsize=8, loc="lower left")
    axes[0].set_ylim(0, 1)
    if backdoor:
        back = frame[frame["bad data"] == LABEL["badnets"]]
        sns.barplot(back, x="arm", y="attack success rate", errorbar=None, alpha=0.6, ax=axes[1])
        sns.stripplot(back, x="arm", y="attack success rate", color="k", size=4, ax=axes[1])
        axes[1].set_ylim(0, 1)
        axes[1].tick_params(axis="x", labelsize=P.SMALL)
        P.title(axes[1], f"BadNets, target {cfg.target_class}", fontsize=9)
    cut = [LABEL[k] for k in KINDS if k not in cfg.kinds]
    return _finish(fig, cfg, res, "TL-1c", f"TL-1c: test accuracy with and without trimming ({cfg.victim_seeds} seeds, dots)"
                   + (", and the backdoor's attack success rate" if backdoor else "")
                   + (f"; not run at {cfg.profile}: {', '.join(cut)}" if cut else ""))


def fig_alpha(cfg, vic: dict, sweep: dict, res: Results):
    """TL-1d: ITLM's test accuracy on systematic noise against alpha (first seed), the bad share
    under- and over-estimated; the plain and clean victims of that seed for reference."""
    main = cfg.alpha_of("systematic")
    first = {a: sweep[a] for a in sweep}
    first.setdefault(main, vic["systematic"]["itlm"][0])
    alphas = sorted(first)
    acc = [float(first[a]["test_accuracy"]) for a in alphas]
    prec = [1 - float(first[a]["bad"][first[a]["kept"][-1]].float().mean()) for a in alphas]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(alphas, acc, marker="o", label="ITLM test accuracy")
    ax.plot(alphas, prec, marker="s", ls=":", label="share of the kept set that is clean")
    for arm, ls in (("plain", "--"), ("clean", "-.")):
        ax.axhline(float(vic["systematic"][arm][0]["test_accuracy"]), color="0.4", ls=ls, lw=1,
                   label=f"{ARM_LABEL[arm]} test accuracy")
    ax.axvline(main, color="tab:red", lw=1, alpha=0.5, label=f"1 - bad share = {main:.2f}")
    ax.set_xlabel("alpha (fraction kept)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=P.SMALL)
    return _finish(fig, cfg, res, "TL-1d",
                   f"TL-1d: sensitivity to alpha, {100 * cfg.systematic_rate:g}% systematic noise (one seed; no claim)")


# --------------------------------------------------------------------------- power
RECOVERY_SPREAD = 0.05  # assumed SD over seeds of ITLM - plain (5 points; not measured before the run)


def power_analysis(cfg) -> pd.DataFrame:
    """The power of the headline claim at this profile, before the run: the paper's motivating
    drop (>90% -> ~70%) as what ITLM recovers, against the claim's margin, paired over the victim
    seeds, with an assumed spread; one headline, so Holm changes nothing (``poisonrepro.power``)."""
    from ... import power as PW
    from ...reference import get
    drop = get("trimmed_loss", "motivating_accuracy_drop").value
    return PW.power_table([PW.plan_row(
        f"ITLM beats plain training by at least {100 * cfg.recovery_margin:g} points at "
        f"{100 * cfg.systematic_rate:g}% systematic noise", "a victim seed (its own bad set; one plain and one ITLM "
        "training)", cfg.victim_seeds, "one-sided paired t bound over the seeds", f"recovers the motivating drop: "
        f"+{100 * drop:g} points (Sec. 1, approximate)", f"plain training on the bad set (margin {100 * cfg.recovery_margin:g} "
        f"points); SD of the paired difference {100 * RECOVERY_SPREAD:g} points (assumed)",
        lambda n, level: PW.mean_difference_power(n, drop, RECOVERY_SPREAD, cfg.recovery_margin, level), 1)])


# --------------------------------------------------------------------------- claims
def record_claims(cfg, vic: dict, res: Results):
    """TL-1's claims, each over the seeds (each seed: its own bad set and training seed, shared by
    the arms, so the comparisons are paired).

    The headline (Sec. 1 and 5: ITLM recovers the accuracy that systematic label noise costs)
    is tested only where plain training on the clean labels reaches ``accuracy_floor`` and the
    noise does cost plain training accuracy (two supporting preconditions); the early losses'
    separation of bad from clean samples (Fig. 1) is supporting, one claim per kind."""
    n = cfg.victim_seeds
    sys_ = vic["systematic"]
    itlm = [float(r["test_accuracy"]) for r in sys_["itlm"]]
    plain = [float(r["test_accuracy"]) for r in sys_["plain"]]
    clean = [float(r["test_accuracy"]) for r in sys_["clean"]]
    noise = f"{100 * cfg.systematic_rate:g}% systematic noise"
    floor = res.claim("TL-1", f"plain training on the clean labels reaches the accuracy floor ({cfg.accuracy_floor:g})",
                      "clean-label test accuracy", S.mean_test(clean, cfg.accuracy_floor, ">"), role="supporting",
                      setting=f"{M.display_name(cfg.model)}, {10 * cfg.train_per_class:,} training images, {n} seeds",
                      paper_key="motivating_clean_accuracy")
    costs = res.claim("TL-1", "systematic noise costs plain training accuracy (paper: >90% -> ~70% at 30%)",
                      "test accuracy, clean labels - plain", S.paired_difference_test(clean, plain, 0.0),
                      role="supporting", setting=f"{noise}, {n} seeds (paired)", paper_key="motivating_accuracy_drop")
    res.claim("TL-1", f"ITLM recovers accuracy lost to systematic label noise: at least "
                      f"{100 * cfg.recovery_margin:g} points over plain training",
              "test accuracy, ITLM - plain", S.paired_difference_test(itlm, plain, cfg.recovery_margin), role="headline",
              setting=f"{noise}, alpha {cfg.alpha_of('systematic'):.2f}, {n} seeds (paired: ITLM and plain share each "
                      "seed's bad set)", requires=[floor, costs])
    for kind in cfg.kinds:
        aurocs = [early_auroc(r) for r in vic[kind]["itlm"]]
        res.claim("TL-1", "bad samples have higher loss than clean ones early in training",
                  "AUROC of the first round's losses (bad vs clean)", S.mean_test(aurocs, 0.5), role="supporting",
                  key=kind, setting=f"{LABEL[kind]}, {100 * _rate(cfg, kind):g}%, after {cfg.round_epochs:g} epochs on "
                                    f"everything; {n} seeds")
