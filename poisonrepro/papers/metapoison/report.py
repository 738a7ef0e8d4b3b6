"""Notebook 03, MetaPoison: figures, tables and claims from the results of
``metapoison.experiments`` (every table is saved here). Nothing here is cached.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from ... import plots as P
from ... import stats as S
from ...results import Results, success_columns
from ...results import budget_table as measured_budgets
from .experiments import ARCH

plt = P.plt
ACCURACY_MARGIN = -0.02  # poisoned victims' clean accuracy within 2 points of the clean victims'
FINETUNE = ("no poisons", "MetaPoison", "Poison Frogs")


def _pct(b: float) -> str:
    return f"{100 * b:g}%"


def success_table(cfg, vic: dict, res: Results) -> pd.DataFrame:
    """MP-1 (saved): success (the target classified as the poison class) per budget, every
    target x victim seed, with 95% Wilson intervals; first the clean victims' base rate."""
    rows = []
    clean = vic["clean_success"]
    rows.append({"budget": 0.0, "poisons": 0, "victims": clean.numel(), "successes": int(clean.sum()),
                 **success_columns(int(clean.sum()), clean.numel()), "test_accuracy": float(vic["clean_accuracy"].mean())})
    for b, budget in enumerate(cfg.budgets):
        s = vic["success"][b]
        rows.append({"budget": budget, "poisons": cfg.poisons_at(budget), "victims": s.numel(),
                     "successes": int(s.sum()), **success_columns(int(s.sum()), s.numel()),
                     "test_accuracy": float(vic["accuracy"][b].mean())})
    table = pd.DataFrame(rows).set_index("budget")
    res.save_table(table, "MP-1")
    return table


def fig_mp1(cfg, data, poisons: dict, table: pd.DataFrame, res: Results, target: int = 0, count: int = 4):
    """MP-1: the target (a bird), dog poisons at the largest budget with their perturbations
    amplified, and success against the budget with the clean base rate."""
    budget = cfg.budgets[-1]
    k = min(count, cfg.poisons_at(budget))
    # the images in two rows above the curve (beside it, the figure was too wide for the book's column)
    fig = plt.figure(figsize=(P.WIDTH, 6.6))
    grid = fig.add_gridspec(3, k + 1, height_ratios=[1, 1, 2.2])
    bases = data["train_x"][data["poison_pos"][:k]].float() / 255
    p = poisons[budget]["poisons"][target][:k].float() / 255
    P.image_row([fig.add_subplot(grid[0, 0])], [data["targets"][target].float() / 255],
                [f"target ({cfg.target_class})"], fontsize=P.SMALL)
    fig.add_subplot(grid[1, 0]).axis("off")
    P.image_row([fig.add_subplot(grid[0, j + 1]) for j in range(k)], p,
                [f"poison {j + 1} ({cfg.poison_class})" for j in range(k)], fontsize=P.SMALL)
    changes = [fig.add_subplot(grid[1, j + 1]) for j in range(k)]
    P.image_row(changes, [P.amplified(d) for d in p - bases], [""] * k)
    P.row_label(changes[0], "poison - base (amplified)")
    ax = fig.add_subplot(grid[2, :])
    curve = table.drop(index=0.0)
    P.success_curve(ax, 100 * np.asarray(curve.index), curve.success_rate, curve.ci_low, curve.ci_high, "MetaPoison")
    base = table.loc[0.0]
    ax.axhspan(base.ci_low, base.ci_high, color="0.85", label="clean victims (95% interval)")
    ax.axhline(base.success_rate, color="0.4", lw=1)
    ax.set_xscale("log")
    ax.set_xticks(100 * np.asarray(curve.index), [_pct(b) for b in curve.index])
    ax.set_xlabel("poisoned share of the training set")
    ax.set_ylabel(f"{cfg.target_class} target classified as {cfg.poison_class}")
    ax.legend(fontsize=P.SMALL)
    P.suptitle(fig, f"MP-1 {cfg.poison_class}-poisoned-as-{cfg.target_class}: poisons at {_pct(budget)}, eps "
                 f"{255 * cfg.eps:.0f}/255 + colour shift {cfg.color_eps:g}; success of {ARCH} victims from scratch "
                 f"({10 * cfg.train_per_class} training images), 95% Wilson intervals", fontsize=9)
    P.standin_note(fig, standin_label(cfg))
    res.save_figure(fig, "MP-1")
    return fig


def budget_table(cfg, poisons: dict, res: Results) -> pd.DataFrame:
    """MP-1b (saved): the measured budgets of every poison: the additive part (0-255 scale,
    against the recoloured base) and the colour grid's largest offset (0-255 of a YUV unit)."""
    measured = {f"additive, {_pct(b)}": (poisons[b]["linf_255"], 255 * cfg.eps) for b in cfg.budgets}
    measured.update({f"colour grid, {_pct(b)}": (255 * poisons[b]["color"], 255 * cfg.color_eps) for b in cfg.budgets})
    return measured_budgets(res, "MP-1b", measured)


def finetune_table(cfg, ft: dict, res: Results) -> pd.DataFrame:
    """MP-1a (saved): Fig. 3's fine-tuning comparison at an equal number of poisons (empty
    without it)."""
    rows = []
    if not ft:
        return pd.DataFrame(rows)
    for a, name in enumerate(FINETUNE):
        s = ft["success"][a]
        row = {"attack": name, "poisons": 0 if a == 0 else cfg.poisons_at(cfg.finetune_budget), "victims": s.numel(),
               "successes": int(s.sum()), **success_columns(int(s.sum()), s.numel()),
               "test_accuracy": float(ft["accuracy"][a].mean())}
        # from the raw base: MetaPoison's includes its colour shift, Poison Frogs has no L-inf budget
        row["median_linf_255_from_base"] = float(ft["linf_255"][a - 1].median()) if a else 0.0
        rows.append(row)
    table = pd.DataFrame(rows).set_index("attack")
    res.save_table(table, "MP-1a")
    return table


def loss_curves(cfg, poisons: dict):
    """The mean meta-loss (unrolled CW loss of the target) per crafting step, per budget."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for b in cfg.budgets:
        loss = poisons[b]["adversarial_loss"]
        ax.plot(np.arange(1, loss.shape[1] + 1), loss.mean(0).numpy(), marker=".", label=_pct(b))
    ax.set_xlabel("crafting step")
    ax.set_ylabel("CW loss of the target (mean over targets)")
    ax.legend(fontsize=P.SMALL, title="budget")
    return fig


# --------------------------------------------------------------------------- claims
def per_seed_accuracy(accuracy) -> np.ndarray:
    """Clean test accuracy per victim seed (the last axis), averaged over everything else (the
    budgets and targets of the poisoned victims of that seed)."""
    a = np.asarray(accuracy, float)
    return a.reshape(-1, a.shape[-1]).mean(0)


def record_claims(cfg, vic: dict, ft: dict, res: Results):
    """The claims of MP-1, each decided by its test.

    Every poisoned victim shares its seed with a clean victim (``experiments.victims``), so the
    comparisons with the base rate are paired per target and seed (exact McNemar, Newcombe's
    paired bound), and clean accuracy is compared per seed (paired t over the seeds, the
    independent unit). The victims of one poison set share it: success rates pool the targets x
    seeds as if independent, which the setting says.

    Headline (the paper's "1% poisoned, misclassified 90% of the time"): MetaPoison at 1% beats
    the clean base rate, and succeeds most of the time. Supporting: the precondition that the
    clean victims reach the accuracy floor (over the seeds), which every other claim requires;
    the trend over the budgets; clean accuracy kept; the fine-tuning comparison with Poison Frogs
    (equal numbers of poisons, unequal perturbations, as its setting says) and its own floor."""
    clean = vic["clean_success"]            # [seeds, targets]
    top = vic["success"][-1]                # [targets, seeds] at the largest budget
    clean_acc = np.asarray(vic["clean_accuracy"], float)
    seeds = len(clean_acc)
    setting = (f"{cfg.n_targets} targets x {seeds} victim seeds, from scratch; base rate: the clean victim of "
               f"each seed on the same targets (paired)")
    floor = res.claim("MP-1", f"the clean victims reach the accuracy floor: clean test accuracy above "
                              f"{cfg.accuracy_floor:.0%} (precondition)",
                      "clean test accuracy of the clean victims", S.mean_test(clean_acc, cfg.accuracy_floor, ">"),
                      role="supporting", setting=f"{seeds} clean victims (the victim seeds, the independent unit)")
    res.claim("MP-1", f"MetaPoison at {_pct(cfg.budgets[-1])} beats the un-poisoned base rate",
              "success rate difference, poisoned - clean victims",
              S.paired_rate_difference_test(top.flatten().numpy(), clean.T.flatten().numpy()),
              role="headline", setting=setting, requires=[floor])
    res.claim("MP-1", f"MetaPoison at {_pct(cfg.budgets[-1])} succeeds most of the time", "success rate",
              S.rate_test(int(top.sum()), top.numel(), 0.5), role="headline", setting=setting,
              paper_key="headline_success_1pct", requires=[floor])
    counts = [int(vic["success"][b].sum()) for b in range(len(cfg.budgets))]
    n = [vic["success"][b].numel() for b in range(len(cfg.budgets))]
    res.claim("MP-1", "success rises with the budget", "change of the success rate over the budgets",
              S.count_trend_test(np.log10(cfg.budgets), counts, n), role="supporting",
              setting=f"budgets {', '.join(map(_pct, cfg.budgets))}; " + setting, requires=[floor])
    res.claim("MP-1", "poisoned victims' clean accuracy stays within 2 points of the clean victims'",
              "clean accuracy, poisoned - clean victims",
              S.paired_difference_test(per_seed_accuracy(vic["accuracy"]), clean_acc, ACCURACY_MARGIN),
              role="supporting", requires=[floor],
              setting=f"per victim seed: the mean over every budget x target against the clean victim of the "
                      f"seed; {seeds} seeds")
    if ft:
        mp, pf = ft["success"][1], ft["success"][2]   # [targets, seeds], the same seeds
        ft_floor = res.claim("MP-1", f"the fine-tuned clean victims reach the accuracy floor: clean test accuracy "
                                     f"above {cfg.accuracy_floor:.0%} (precondition)",
                             "clean test accuracy of the fine-tuned clean victims",
                             S.mean_test(per_seed_accuracy(ft["accuracy"][0]), cfg.accuracy_floor, ">"),
                             role="supporting", setting=f"{seeds} fine-tuning seeds (the independent unit)")
        mp_linf, pf_linf = (float(ft["linf_255"][a].median()) for a in (0, 1))
        res.claim("MP-1", "fine-tuning: MetaPoison beats Poison Frogs at an equal number of poisons (not at an "
                          "equal perturbation: Poison Frogs' watermark has no L-inf bound)",
                  "success rate difference, MetaPoison - Poison Frogs (fine-tuning)",
                  S.paired_rate_difference_test(mp.flatten().numpy(), pf.flatten().numpy()),
                  role="supporting", requires=[ft_floor],
                  setting=f"{cfg.finetune_targets} targets x {seeds} fine-tuned victims (paired by target and "
                          f"seed), {cfg.poisons_at(cfg.finetune_budget)} poisons each; median L-inf from the base: "
                          f"MetaPoison {mp_linf:.1f}/255 (8/255 additive + colour shift), Poison Frogs "
                          f"{pf_linf:.1f}/255 ({cfg.pf_opacity:.0%} watermark)")


def standin_label(cfg) -> str:
    return (f"STAND-IN scale: the project's ConvNet-BN for the code's ConvNetBN, {10 * cfg.train_per_class} CIFAR-10 "
            f"training images, {cfg.epochs} epochs, {cfg.members} surrogates (paper: 50,000, 200, 24)")


# --------------------------------------------------------------------------- power (before the run)
HEADLINES = 2  # MetaPoison at the top budget beats the base rate; it succeeds most of the time


def power_analysis(cfg) -> pd.DataFrame:
    """The power of MP-1's two headline claims at this profile, before the run: the paper's 90%
    at 1% (the abstract), a clean victim at the accuracy floor as the base rate, the targets x
    victim seeds of the top budget as the units (``poisonrepro.power``)."""
    from ... import power as PW
    from ... import reference
    paper = reference.get("metapoison", "headline_success_1pct").value
    base = (1 - cfg.accuracy_floor) / 9
    n = cfg.n_targets * cfg.victim_seeds
    unit = "a victim training on a target's poisons (targets x seeds; a target's seeds share its poisons)"
    return PW.power_table([
        PW.plan_row(f"MetaPoison at {_pct(cfg.budgets[-1])} beats the un-poisoned base rate", unit, n,
                    "exact McNemar and Newcombe's paired bound", f"{paper:.0%} at 1% (abstract)",
                    f"clean victims ~{base:.1%} (a victim at the {cfg.accuracy_floor:.0%} floor)",
                    lambda k, level: PW.paired_success_power(k, paper, base, level), HEADLINES),
        PW.plan_row(f"MetaPoison at {_pct(cfg.budgets[-1])} succeeds most of the time", unit, n,
                    "Wilson bound and z-test against 50%", f"{paper:.0%} at 1% (abstract)", "50% (the claim's threshold)",
                    lambda k, level: PW.rate_power(k, paper, 0.5, level), HEADLINES)])
