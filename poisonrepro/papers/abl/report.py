"""Notebook 11, Anti-Backdoor Learning: figures, tables and claims from the results of
``abl.experiments`` (every table is saved here). Nothing here is cached.

The unit of every claim is the victim training: per attack and seed one plain and one ABL victim
(a pair, on the same poisoned set), each scored on the test subset; a claim tests the per-seed
scores (a t test over seeds, paired where it compares the two arms), never the test images as
trials, since the images of one network are not independent draws of its training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ... import models as M
from ... import plots as P
from ... import tracking
from ... import stats as S
from ...config.abl import ATTACKS
from ...data import class_index
from ...results import Results
from .experiments import NAME

plt = P.plt
ARM_LABEL = {"plain": "without ABL", "abl": "with ABL"}


def standin_label(cfg) -> str:
    return (f"STAND-IN scale: {M.display_name(cfg.model)} for the paper's WRN-16-1, {10 * cfg.train_per_class:,} CIFAR-10 "
            f"training images (paper: 50,000), {cfg.epochs:g} epochs plain, ABL {cfg.isolation_epochs:g} LGA + "
            f"{cfg.finetune_epochs:g} fine-tuning epochs (paper: 10 + 60)")


def _poison_mask(r: dict) -> np.ndarray:
    """Which of ``r``'s tracked training samples (``tracking``: those whose losses were recorded)
    are poisons."""
    return tracking.at_tracked(r, r["bad"].numpy())


def per_seed(rs, key: str) -> np.ndarray:
    """Each victim's (seed's) score ``key`` (e.g. ``test_accuracy``, ``attack_success_rate``), in seed order."""
    return np.array([float(r[key]) for r in rs])


def seed_interval(values) -> tuple[float, float]:
    """The two-sided 95% t interval of the mean over seeds (NaN with fewer than two seeds)."""
    from statsmodels.stats.weightstats import DescrStatsW
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return (np.nan, np.nan)
    lo, hi = DescrStatsW(v).tconfint_mean(alpha=0.05)
    return (float(lo), float(hi)) if np.isfinite(lo) else (float(v.mean()), float(v.mean()))


def isolation_precision(rs) -> np.ndarray:
    """Per seed, the share of the isolated samples that are poisons."""
    return np.array([float(r["bad"][r["isolated"]].float().mean()) for r in rs])


def poisoned_share(rs) -> np.ndarray:
    """Per seed, the share of the training set that is poisoned (a clean-label attack's varies
    with the draw): the isolation precision of a random pick."""
    return np.array([float(r["bad"].float().mean()) for r in rs])


def early_auroc(r: dict, key: str = "epoch_loss", epoch: int = 0) -> float:
    """The probability that a poison's training loss after ``epoch`` + 1 epochs is *lower* than a
    clean sample's (ABL's observation: backdoors are learned faster)."""
    bad = _poison_mask(r)
    if not 0 < bad.sum() < len(bad):
        return float("nan")
    return float(roc_auc_score(bad, -r[key][epoch].numpy()))


def _mean_defined(values) -> float:
    """The mean of the values that are defined (NaN where none is: no seed drew a poison)."""
    v = np.asarray(values, float)
    return float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else np.nan


# --------------------------------------------------------------------------- tables
def loss_table(cfg, vic: dict, res: Results) -> pd.DataFrame:
    """ABL-1 (saved): per attack, the mean training loss of poisons and of clean samples (those
    tracked: ``cfg.track_sample``) after the first and the last epoch of plain training, the AUROC of "lower loss" for poisons after the
    first epoch, and the same after the first LGA epoch of ABL (means over seeds)."""
    rows = []
    for attack in cfg.attacks:
        plain, ablr = vic[attack]["plain"], vic[attack]["abl"]

        # over the seeds that have such samples (a small clean-label draw may hold no poison)
        def mean_loss(rs, key, epoch, poison):
            means = [r[key][epoch].numpy()[_poison_mask(r) == poison].mean() for r in rs
                     if (_poison_mask(r) == poison).any()]
            return float(np.mean(means)) if means else np.nan
        rows.append({"attack": NAME[attack],
                     "poison loss, epoch 1": mean_loss(plain, "epoch_loss", 0, True),
                     "clean loss, epoch 1": mean_loss(plain, "epoch_loss", 0, False),
                     "poison loss, last epoch": mean_loss(plain, "epoch_loss", -1, True),
                     "clean loss, last epoch": mean_loss(plain, "epoch_loss", -1, False),
                     "AUROC poison lower, epoch 1": _mean_defined([early_auroc(r) for r in plain]),
                     "AUROC poison lower, LGA epoch 1": _mean_defined([early_auroc(r, "lga_loss") for r in ablr])})
    table = pd.DataFrame(rows).set_index("attack")
    res.save_table(table, "ABL-1")
    return table


def outcome_table(cfg, vic: dict, attacker: list, res: Results) -> pd.DataFrame:
    """ABL-2 (saved): per attack, with and without ABL, clean accuracy and the attack success rate
    (means over seeds with their 95% t intervals over seeds: NaN for one seed), the poisons per
    seed, and for ABL the isolation precision and the scores after each of its phases (means over
    seeds). The first row is the attacker's network trained on clean data (no attack): its
    accuracy, and the share of triggered images it sends to the target class anyway."""
    rows = [{"attack": "no attack", "arm": "clean training", "seeds": 1,
             "clean accuracy": float(attacker[0]["test_accuracy"]), "clean ci_low": np.nan, "clean ci_high": np.nan}]
    for attack in cfg.attacks:
        for arm in ("plain", "abl"):
            rs = vic[attack][arm]
            clean, asr = per_seed(rs, "test_accuracy"), per_seed(rs, "attack_success_rate")
            row = {"attack": NAME[attack], "arm": ARM_LABEL[arm], "seeds": len(rs),
                   "poisons": float(np.mean([int(r["bad"].sum()) for r in rs])),
                   "clean accuracy": float(np.mean(clean)),
                   **dict(zip(("clean ci_low", "clean ci_high"), seed_interval(clean))),
                   "attack success rate": float(np.mean(asr)),
                   **dict(zip(("asr ci_low", "asr ci_high"), seed_interval(asr))),
                   "trigger on the clean network": float(np.mean(per_seed(rs, "clean_asr")))}
            if arm == "abl":
                row.update({"isolated": float(np.mean([len(r["isolated"]) for r in rs])),
                            "isolation precision": float(np.mean(isolation_precision(rs))),
                            "LGA ascent steps": float(np.mean([int(r["ascent_steps"]) for r in rs]))})
                for phase in ("isolation", "finetune"):
                    row[f"clean accuracy after {phase}"] = float(np.mean(per_seed(rs, f"{phase}.test_accuracy")))
                    row[f"ASR after {phase}"] = float(np.mean(per_seed(rs, f"{phase}.attack_success_rate")))
            rows.append(row)
    for attack in ATTACKS:
        if attack not in cfg.attacks:  # cut from this profile for the budget: listed, never silently dropped
            rows += [{"attack": NAME[attack], "arm": ARM_LABEL[arm], "seeds": 0,
                      "note": f"not run at {cfg.profile} (paper profile)"} for arm in ("plain", "abl")]
    table = pd.DataFrame(rows).set_index(["attack", "arm"])
    res.save_table(table, "ABL-2")
    return table


# --------------------------------------------------------------------------- figures
def fig_examples(cfg, vic: dict, res: Results):
    """ABL-1a: one poisoned training image of each attack (the first seed)."""
    attacks = [a for a in cfg.attacks if len(vic[a]["plain"][0]["examples"])]
    fig, axes = plt.subplots(1, max(1, len(attacks)), figsize=(min(P.WIDTH, 1.9 * max(1, len(attacks))), 2.3), squeeze=False)
    P.image_row(axes[0], [vic[a]["plain"][0]["examples"][0] for a in attacks], [NAME[a] for a in attacks])
    title = f"ABL-1a: a poisoned training image of each attack (target class {cfg.target_class})"
    return P.finish(fig, res, "ABL-1a", title, standin_label(cfg))


def fig_losses(cfg, vic: dict, res: Results):
    """ABL-1: training loss of poisons and of clean samples (median and interquartile band over
    the training samples, first seed) after every epoch of plain training (top) and of ABL's LGA
    isolation (bottom, gamma marked)."""
    n = len(cfg.attacks)
    fig, axes = plt.subplots(2, n, figsize=(min(P.WIDTH, 2.9 * n), 5.2), squeeze=False, sharey="row")
    for j, attack in enumerate(cfg.attacks):
        for i, (arm, key) in enumerate((("plain", "epoch_loss"), ("abl", "lga_loss"))):
            r, ax = vic[attack][arm][0], axes[i, j]
            bad = _poison_mask(r)
            loss = r[key].numpy()
            epochs = np.arange(1, len(loss) + 1)
            for mask, label, color in ((bad, "poisoned", "tab:red"), (~bad, "clean", "tab:blue")):
                if mask.any():
                    q = np.quantile(loss[:, mask], [0.25, 0.5, 0.75], axis=1)
                    ax.plot(epochs, q[1], color=color, marker=".", label=f"{label} ({int(mask.sum())})")
                    ax.fill_between(epochs, q[0], q[2], color=color, alpha=0.2)
            if arm == "abl":
                ax.axhline(cfg.gamma, color="0.4", ls=":", lw=1, label=f"gamma = {cfg.gamma:g}")
            P.title(ax, f"{NAME[attack]}\n{'plain training' if arm == 'plain' else 'ABL isolation (LGA)'}", fontsize=8)
            ax.set_xlabel("epoch")
            ax.set_yscale("symlog", linthresh=0.1)
            ax.tick_params(labelsize=P.SMALL)
        axes[0, j].legend(fontsize=P.SMALL)
    axes[0, 0].set_ylabel("training loss (median, IQR)")
    axes[1, 0].set_ylabel("training loss (median, IQR)")
    axes[1, 0].legend(fontsize=P.SMALL)
    tracked = (f"a random {cfg.track_sample:,} of the training samples" if cfg.track_sample
               and cfg.track_sample < 10 * cfg.train_per_class else "every training sample")
    title = f"ABL-1: training loss of poisoned and clean samples in the early epochs (first seed; {tracked})"
    return P.finish(fig, res, "ABL-1", title, standin_label(cfg))


def fig_outcome(cfg, table: pd.DataFrame, res: Results):
    """ABL-2: clean accuracy and attack success rate with and without ABL (means over seeds, 95% t
    intervals over seeds), the ASR ceiling of the claim and the paper's BadNets numbers marked."""
    from ...reference import get
    body = table.drop(index="no attack", level="attack")
    body = body[body["seeds"] > 0]  # the attacks that ran
    attacks = list(dict.fromkeys(body.index.get_level_values("attack")))
    fig, axes = plt.subplots(1, 2, figsize=(P.WIDTH, 3.4))
    x = np.arange(len(attacks))
    for ax, (col, lo, hi, title) in zip(axes, (("clean accuracy", "clean ci_low", "clean ci_high", "clean accuracy"),
                                               ("attack success rate", "asr ci_low", "asr ci_high",
                                                "attack success rate"))):
        for k, (arm, color) in enumerate(((ARM_LABEL["plain"], "0.6"), (ARM_LABEL["abl"], "tab:green"))):
            sub = body.xs(arm, level="arm").reindex(attacks)
            ax.bar(x + (k - 0.5) * 0.38, sub[col], width=0.38, color=color, label=arm,
                   yerr=P.error_bars(sub[col], sub[lo], sub[hi]), capsize=3)
        ax.set_xticks(x, attacks, fontsize=P.SMALL)
        ax.set_ylim(0, 1.02)
        P.title(ax, f"{title} (mean over seeds, 95% t interval)", fontsize=9)
    axes[1].axhline(cfg.asr_ceiling, color="tab:red", ls="--", lw=1, label=f"claim: <= {cfg.asr_ceiling:.0%} with ABL")
    if NAME["badnets"] in attacks:
        b = attacks.index(NAME["badnets"])
        axes[0].plot([b + 0.19], [get("abl", "badnets_clean").value], "k*", ms=9, label="paper, BadNets with ABL")
        axes[1].plot([b + 0.19], [get("abl", "badnets_asr").value], "k*", ms=9, label="paper, BadNets with ABL")
    for ax in axes:
        ax.legend(fontsize=P.SMALL)
    title = f"ABL-2: with and without ABL, {cfg.poison_rate:.0%} poisoned, target {cfg.target_class}"
    return P.finish(fig, res, "ABL-2", title, standin_label(cfg))


# --------------------------------------------------------------------------- claims
def record_claims(cfg, vic: dict, res: Results):
    """ABL-2's claims per attack (``key`` = the attack), each tested over the victim seeds (the
    plain and the ABL victim of one seed are a pair, trained on the same poisoned set).

    Supporting preconditions: the plain victims reach the accuracy floor, and without ABL the
    backdoor is learned (ASR above the ceiling). The headline, per attack, is the joint claim
    "with ABL the ASR falls to at most the ceiling AND clean accuracy stays within the margin",
    whose parts are supporting claims that require the preconditions, so that an ASR falling
    while the network collapses never holds. The isolation precision is a supporting diagnostic."""
    target = class_index(cfg.target_class)
    for attack in cfg.attacks:
        plain, ablr = vic[attack]["plain"], vic[attack]["abl"]
        n_seeds = len(plain)
        setting = (f"{NAME[attack]}, {cfg.poison_rate:.0%} poisoned, target {target}; {n_seeds} seed(s), one plain "
                   "and one ABL victim each (the unit: a victim training)")
        plain_acc, abl_acc = per_seed(plain, "test_accuracy"), per_seed(ablr, "test_accuracy")
        plain_asr, abl_asr = per_seed(plain, "attack_success_rate"), per_seed(ablr, "attack_success_rate")
        floor = res.claim("ABL-2", f"the plain victims reach the accuracy floor: clean accuracy above "
                                   f"{cfg.accuracy_floor:.0%} (precondition)",
                          "clean accuracy without ABL", S.mean_test(plain_acc, cfg.accuracy_floor, ">"),
                          role="supporting", key=attack, setting=setting,
                          paper_key="badnets_no_defense_clean" if attack == "badnets" else None)
        learned = res.claim("ABL-2", "without ABL the backdoor is learned: ASR above the ceiling (precondition; "
                                     "undefended, the paper's backdoors succeed on nearly every triggered image)",
                            "attack success rate without ABL", S.mean_test(plain_asr, cfg.asr_ceiling, ">"),
                            role="supporting", key=attack, setting=setting,
                            paper_key="badnets_no_defense_asr" if attack == "badnets" else None)
        removed = res.claim("ABL-2", f"with ABL the attack success rate falls to at most {cfg.asr_ceiling:.0%}",
                            "attack success rate with ABL", S.mean_test(abl_asr, cfg.asr_ceiling, "<"),
                            role="supporting", key=attack, setting=setting, requires=[floor, learned],
                            paper_key="badnets_asr" if attack == "badnets" else None)
        kept = res.claim("ABL-2", f"with ABL clean accuracy stays within {cfg.clean_margin * 100:g} points of training "
                                  "without it",
                         "clean accuracy, without ABL - with ABL",
                         S.paired_difference_test(plain_acc, abl_acc, margin=cfg.clean_margin, side="<"),
                         role="supporting", key=attack, setting=setting + "; paired by seed", requires=[floor],
                         paper_key="badnets_clean_drop" if attack == "badnets" else None)
        res.joint("ABL-2", f"with ABL the attack success rate falls to at most {cfg.asr_ceiling:.0%} and clean "
                           f"accuracy stays within {cfg.clean_margin * 100:g} points of training without it",
                  [removed, kept], role="headline", key=attack, setting=setting)
        res.claim("ABL-2", "the isolated lowest-loss samples are mostly poisons: isolation precision above the "
                           "poisoned share of the training set (a random pick's precision)",
                  "isolation precision - poisoned share",
                  S.paired_difference_test(isolation_precision(ablr), poisoned_share(ablr), 0.0, ">"),
                  role="supporting", key=attack,
                  setting=f"{NAME[attack]}; the {cfg.isolation_ratio:.0%} lowest-loss samples after "
                          f"{cfg.isolation_epochs:g} LGA epochs, {n_seeds} seed(s)")


# --------------------------------------------------------------------------- power (before the run)
ASR_SPREAD = 0.03  # assumed SD over seeds of the ASR with ABL (3 points; not measured)
ACCURACY_SPREAD = 0.01  # assumed SD over seeds of the clean-accuracy drop (1 point; not measured)


def power_analysis(cfg) -> pd.DataFrame:
    """The power of each attack's headline joint claim at this profile, before the run: the
    repository's BadNets numbers as the effect (ASR 3.04% with ABL, clean accuracy 0.91 points
    lower), assumed spreads over seeds, the victim seeds as the units, Holm over one headline per
    attack; the joint's power is the product of its two parts' (``poisonrepro.power``)."""
    from ... import power as PW
    from ...reference import get
    asr, drop = get("abl", "badnets_asr").value, get("abl", "badnets_clean_drop").value

    def joint(k, level):
        removed = PW.mean_difference_power(k, -asr, ASR_SPREAD, -cfg.asr_ceiling, level)
        kept = PW.mean_difference_power(k, -drop, ACCURACY_SPREAD, -cfg.clean_margin, level)
        return removed * kept
    return PW.power_table([PW.plan_row(
        f"with ABL the ASR falls to at most {cfg.asr_ceiling:.0%} and clean accuracy stays within "
        f"{100 * cfg.clean_margin:g} points (each attack)", "a victim seed (one plain and one ABL training)",
        cfg.victim_seeds, "t bounds over the seeds, each part", f"BadNets: ASR {asr:.1%}, accuracy -{100 * drop:.2f} "
        "points (repository)", f"ASR SD {100 * ASR_SPREAD:g} points, accuracy SD {100 * ACCURACY_SPREAD:g} point "
        "(assumed)", joint, len(cfg.attacks))])
