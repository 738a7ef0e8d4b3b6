"""Notebook 11, Anti-Backdoor Learning: figures, tables and claims from the results of
``abl.experiments`` (every table is saved here). Nothing here is cached.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ... import models as M
from ... import plots as P
from ... import stats as S
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
    """Which of ``r``'s tracked samples are poisons."""
    return np.isin(r["tracked"].numpy(), r["poisoned"].numpy())


def _sum(rs, key) -> int:
    return int(sum(int(r[key]) for r in rs))


def isolation_counts(rs) -> tuple[int, int]:
    """(poisons among the isolated samples, isolated samples), summed over seeds."""
    hits = sum(int(np.isin(r["isolated"].numpy(), r["poisoned"].numpy()).sum()) for r in rs)
    return hits, sum(len(r["isolated"]) for r in rs)


def early_auroc(r: dict, key: str = "epoch_loss", epoch: int = 0) -> float:
    """The probability that a poison's training loss after ``epoch`` + 1 epochs is *lower* than a
    clean sample's (ABL's observation: backdoors are learned faster)."""
    bad = _poison_mask(r)
    if not 0 < bad.sum() < len(bad):
        return float("nan")
    return float(roc_auc_score(bad, -r[key][epoch].numpy()))


# --------------------------------------------------------------------------- tables
def loss_table(cfg, vic: dict, res: Results) -> pd.DataFrame:
    """ABL-1 (saved): per attack, the mean training loss of poisons and of clean samples after the
    first and the last epoch of plain training, the AUROC of "lower loss" for poisons after the
    first epoch, and the same after the first LGA epoch of ABL (means over seeds)."""
    rows = []
    for attack in cfg.attacks:
        plain, ablr = vic[attack]["plain"], vic[attack]["abl"]

        def mean_loss(rs, key, epoch, poison):
            return float(np.mean([r[key][epoch].numpy()[_poison_mask(r) == poison].mean() for r in rs]))
        rows.append({"attack": NAME[attack],
                     "poison loss, epoch 1": mean_loss(plain, "epoch_loss", 0, True),
                     "clean loss, epoch 1": mean_loss(plain, "epoch_loss", 0, False),
                     "poison loss, last epoch": mean_loss(plain, "epoch_loss", -1, True),
                     "clean loss, last epoch": mean_loss(plain, "epoch_loss", -1, False),
                     "AUROC poison lower, epoch 1": float(np.mean([early_auroc(r) for r in plain])),
                     "AUROC poison lower, LGA epoch 1": float(np.mean([early_auroc(r, "lga_loss") for r in ablr]))})
    table = pd.DataFrame(rows).set_index("attack")
    res.save_table(table, "ABL-1")
    return table


def outcome_table(cfg, vic: dict, attacker: list, res: Results) -> pd.DataFrame:
    """ABL-2 (saved): per attack, with and without ABL, clean accuracy and the attack success rate
    (summed over seeds, 95% Wilson intervals), and for ABL the isolation precision and the scores
    after each of its phases. The first row is the attacker's network trained on clean data (no
    attack): its accuracy, and the share of triggered images it sends to the target class anyway."""
    rows = [{"attack": "no attack", "arm": "clean training", "seeds": 1,
             "clean accuracy": float(attacker[0]["test_accuracy"]), "clean ci_low": np.nan, "clean ci_high": np.nan}]
    for attack in cfg.attacks:
        for arm in ("plain", "abl"):
            rs = vic[attack][arm]
            correct, tested, hits, trig = (_sum(rs, k) for k in ("correct", "tested", "hits", "triggered"))
            row = {"attack": NAME[attack], "arm": ARM_LABEL[arm], "seeds": len(rs), "clean accuracy": correct / tested,
                   **dict(zip(("clean ci_low", "clean ci_high"), S.wilson(correct, tested))),
                   "attack success rate": hits / trig if trig else np.nan,
                   **dict(zip(("asr ci_low", "asr ci_high"), S.wilson(hits, trig))),
                   "trigger on the clean network": _sum(rs, "clean_hits") / trig if trig else np.nan}
            if arm == "abl":
                k, n = isolation_counts(rs)
                row.update({"isolated": n, "isolation precision": k / n if n else np.nan,
                            "LGA ascent steps": _sum(rs, "ascent_steps")})
                for phase in ("isolation", "finetune"):
                    row[f"clean accuracy after {phase}"] = _sum(rs, f"{phase}.correct") / _sum(rs, f"{phase}.tested")
                    row[f"ASR after {phase}"] = _sum(rs, f"{phase}.hits") / max(1, _sum(rs, f"{phase}.triggered"))
            rows.append(row)
    table = pd.DataFrame(rows).set_index(["attack", "arm"])
    res.save_table(table, "ABL-2")
    return table


# --------------------------------------------------------------------------- figures
def fig_examples(cfg, vic: dict, res: Results):
    """ABL-1a: one poisoned training image of each attack (the first seed)."""
    attacks = [a for a in cfg.attacks if len(vic[a]["plain"][0]["examples"])]
    fig, axes = plt.subplots(1, max(1, len(attacks)), figsize=(1.9 * max(1, len(attacks)), 2.3), squeeze=False)
    P.image_row(axes[0], [vic[a]["plain"][0]["examples"][0] for a in attacks], [NAME[a] for a in attacks])
    title = f"ABL-1a: a poisoned training image of each attack (target class {cfg.target_class})"
    return P.finish(fig, res, "ABL-1a", title, standin_label(cfg))


def fig_losses(cfg, vic: dict, res: Results):
    """ABL-1: training loss of poisons and of clean samples (median and interquartile band over
    the tracked samples, first seed) after every epoch of plain training (top) and of ABL's LGA
    isolation (bottom, gamma marked)."""
    n = len(cfg.attacks)
    fig, axes = plt.subplots(2, n, figsize=(2.9 * n, 5.2), squeeze=False, sharey="row")
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
            ax.set_title(f"{NAME[attack]}\n{'plain training' if arm == 'plain' else 'ABL isolation (LGA)'}", fontsize=8)
            ax.set_xlabel("epoch")
            ax.set_yscale("symlog", linthresh=0.1)
            ax.tick_params(labelsize=7)
        axes[0, j].legend(fontsize=6)
    axes[0, 0].set_ylabel("training loss (median, IQR)")
    axes[1, 0].set_ylabel("training loss (median, IQR)")
    axes[1, 0].legend(fontsize=6)
    title = "ABL-1: training loss of poisoned and clean samples in the early epochs (first seed)"
    return P.finish(fig, res, "ABL-1", title, standin_label(cfg))


def fig_outcome(cfg, table: pd.DataFrame, res: Results):
    """ABL-2: clean accuracy and attack success rate with and without ABL (95% Wilson intervals),
    the ASR ceiling of the claim and the paper's BadNets numbers marked."""
    from ...reference import get
    body = table.drop(index="no attack", level="attack")
    attacks = list(dict.fromkeys(body.index.get_level_values("attack")))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.arange(len(attacks))
    for ax, (col, lo, hi, title) in zip(axes, (("clean accuracy", "clean ci_low", "clean ci_high", "clean accuracy"),
                                               ("attack success rate", "asr ci_low", "asr ci_high",
                                                "attack success rate"))):
        for k, (arm, color) in enumerate(((ARM_LABEL["plain"], "0.6"), (ARM_LABEL["abl"], "tab:green"))):
            sub = body.xs(arm, level="arm").reindex(attacks)
            ax.bar(x + (k - 0.5) * 0.38, sub[col], width=0.38, color=color, label=arm,
                   yerr=P.error_bars(sub[col], sub[lo], sub[hi]), capsize=3)
        ax.set_xticks(x, attacks, fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_title(title, fontsize=9)
    axes[1].axhline(cfg.asr_ceiling, color="tab:red", ls="--", lw=1, label=f"claim: <= {cfg.asr_ceiling:.0%} with ABL")
    if NAME["badnets"] in attacks:
        b = attacks.index(NAME["badnets"])
        axes[0].plot([b + 0.19], [get("abl", "badnets_clean").value], "k*", ms=9, label="paper, BadNets with ABL")
        axes[1].plot([b + 0.19], [get("abl", "badnets_asr").value], "k*", ms=9, label="paper, BadNets with ABL")
    for ax in axes:
        ax.legend(fontsize=7)
    title = f"ABL-2: with and without ABL, {cfg.poison_rate:.0%} poisoned, target {cfg.target_class}"
    return P.finish(fig, res, "ABL-2", title, standin_label(cfg))


# --------------------------------------------------------------------------- claims
def record_claims(cfg, vic: dict, res: Results):
    """ABL-2's claims per attack, each over the test images summed across seeds (each image one
    trial; the seeds' images are the same test subset, so the intervals ignore the seed's spread)."""
    target = class_index(cfg.target_class)
    for attack in cfg.attacks:
        plain, ablr = vic[attack]["plain"], vic[attack]["abl"]
        n_seeds = len(plain)
        trig = _sum(ablr, "triggered")
        setting = f"{NAME[attack]}, {cfg.poison_rate:.0%} poisoned, target {target}; {n_seeds} seed(s), {trig} triggered test images"
        res.claim("ABL-2", "without ABL the backdoor is learned: ASR above the ceiling (precondition; paper Table 1: "
                           "'No Defense' ASR near 100%)",
                  "attack success rate without ABL", S.rate_test(_sum(plain, "hits"), _sum(plain, "triggered"),
                                                                 cfg.asr_ceiling, ">"), setting=setting,
                  role="supporting", key=attack)
        res.claim("ABL-2", f"with ABL the attack success rate falls to at most {cfg.asr_ceiling:.0%}",
                  "attack success rate with ABL", S.rate_test(_sum(ablr, "hits"), trig, cfg.asr_ceiling, "<"),
                  setting=setting, paper_key="badnets_asr" if attack == "badnets" else None, role="headline", key=attack)
        tested = _sum(ablr, "tested")
        res.claim("ABL-2", f"with ABL clean accuracy stays within {cfg.clean_margin * 100:g} points of training "
                           "without it",
                  "clean accuracy, without ABL - with ABL",
                  S.rate_difference_test(_sum(plain, "correct"), _sum(plain, "tested"), _sum(ablr, "correct"), tested,
                                         margin=cfg.clean_margin, side="<"),
                  setting=f"{NAME[attack]}; {n_seeds} seed(s), {tested} test images per arm (unpaired bound)",
                  paper_key="badnets_clean_drop" if attack == "badnets" else None, role="headline", key=attack)
        k, n = isolation_counts(ablr)
        res.claim("ABL-2", "the isolated lowest-loss samples are mostly poisons: isolation precision above the "
                           "poisoning rate",
                  "isolation precision", S.rate_test(k, n, cfg.poison_rate, ">"),
                  setting=f"{NAME[attack]}; the {cfg.isolation_ratio:.0%} lowest-loss samples after "
                          f"{cfg.isolation_epochs:g} LGA epochs, {n_seeds} seed(s)", role="supporting", key=attack)
