"""Notebook 04, Witches' Brew: figures, tables and claims from the results of
``witches_brew.experiments`` (every table is saved here). Nothing here is cached.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ... import models as M
from ... import plots as P
from ... import reference
from ... import stats as S
from ...results import Results, success_columns
from ...results import budget_table as measured_budgets
from .experiments import TRIGGER_AT

plt = P.plt
ACCURACY_MARGIN = -0.02  # poisoned victims' clean accuracy within 2 points of the clean victims'
LABELS = {"feature_collision": "Poison Frogs (FC)", "convex_polytope": "Convex Polytope (CP)",
          "clean_label_backdoor": "Clean-Label Backdoor (CLBD)", "hidden_trigger_backdoor": "Hidden-Trigger Backdoor (HTBD)",
          "gradient_matching_K1": "gradient matching K=1", "gradient_matching_K4": "gradient matching K=4",
          "gradient_matching_K6het": "gradient matching K=6 heterogeneous"}
BASELINES = ("feature_collision", "convex_polytope", "clean_label_backdoor", "hidden_trigger_backdoor")
CLEAN_ROWS = {"clean": "no poisons (clean victims)", "clean_label_backdoor": "no poisons, CLBD trigger on the target",
              "hidden_trigger_backdoor": "no poisons, HTBD trigger on the target"}
PAPER_COLUMN = {"resnet18": "resnet18", "mobilenet_v2": "mobilenet_v2", "vgg11": "vgg11"}


#: architectures that stand in for a paper column without being a narrowed copy of it: the
#: ``cpu`` profile's ConvNet-BN, gray-box as the ResNet-18 column is (crafted on the same architecture)
COLUMN_STANDINS = {"convnet_bn": "resnet18"}


def _paper_arch(arch: str) -> str:
    return M.STANDIN_OF.get(arch, COLUMN_STANDINS.get(arch, arch))


def victim_name(arch: str) -> str:
    """How an architecture is labelled in tables and figures: every stand-in says so."""
    if arch in COLUMN_STANDINS:
        return f"{arch} (STAND-IN for {COLUMN_STANDINS[arch]})"
    return M.display_name(arch)


def standin_label(cfg) -> str:
    names = [a for a in cfg.victims if a in M.STANDIN_OF or a in COLUMN_STANDINS]
    if not names:
        return ""
    columns = ", ".join(f"{n} for {_paper_arch(n)}" for n in names)
    return (f"STAND-IN victims and attacker's networks: {columns}; "
            f"{10 * cfg.train_per_class:,} CIFAR-10 training images, {cfg.victim_epochs:g} epochs")


def surrogates_table(nets) -> pd.DataFrame:
    """The attacker's networks: role, architecture (stand-ins labelled), clean accuracy."""
    return pd.DataFrame([{"role": n["role"] + (f" #{n['member']}" if n["role"] == "crafting" else ""),
                          "network": victim_name(n["arch"]), "test_accuracy": n["test_accuracy"]} for n in nets])


def _paper(key: str) -> float:
    try:
        return reference.get("witches_brew", key).value
    except KeyError:
        return float("nan")


def table_t1(cfg, vic: dict, res: Results) -> pd.DataFrame:
    """WB-T1 (saved): success of every attack on every victim architecture and on average (all
    setups pooled over the architectures), 95% Wilson intervals, the paper's number beside it;
    then the clean victims' base rates (target plain, and with each trigger pasted)."""
    rows = []
    columns = [(vi, victim_name(a), _paper_arch(a)) for vi, a in enumerate(cfg.victims)]
    for ai, attack in enumerate(cfg.attacks):
        for vi, name, paper_arch in columns + [(None, "average", "average")]:
            s = vic["success"][ai] if vi is None else vic["success"][ai, vi]
            rows.append({"attack": LABELS[attack], "victim": name, "paper": _paper(f"{attack}.{paper_arch}"),
                         "setups": s.numel(), "successes": int(s.sum()), **success_columns(int(s.sum()), s.numel())})
    for row, label in CLEAN_ROWS.items():
        for vi, name, _ in columns + [(None, "average", "average")]:
            if row == "clean":
                s = vic["clean_success"] if vi is None else vic["clean_success"][vi]
            else:
                li = list(TRIGGER_AT).index(row)
                s = vic["clean_patched_success"][:, li] if vi is None else vic["clean_patched_success"][vi, li]
            rows.append({"attack": label, "victim": name, "paper": float("nan"), "setups": s.numel(),
                         "successes": int(s.sum()), **success_columns(int(s.sum()), s.numel())})
    table = pd.DataFrame(rows).set_index(["attack", "victim"])
    res.save_table(table, "WB-T1")
    return table


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """WB-T1 as the paper prints it: attacks x victims, 'measured [low, high] (paper)' in %."""
    def cell(r):
        paper = "" if np.isnan(r["paper"]) else f" ({100 * r['paper']:.0f})"
        return f"{100 * r['success_rate']:.0f} [{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}]{paper}"
    out = table.apply(cell, axis=1).unstack("victim")
    order = list(dict.fromkeys(table.index.get_level_values(0)))
    victims = list(dict.fromkeys(table.index.get_level_values(1)))
    return out.reindex(index=order, columns=victims)


def fig_t1(cfg, table: pd.DataFrame, res: Results):
    """WB-T1: success per attack and victim with 95% intervals; the paper's values as hollow
    black diamonds (bars' error caps are short lines: a line marker would read as one)."""
    attacks = [LABELS[a] for a in cfg.attacks] + [CLEAN_ROWS["clean"]]
    victims = list(dict.fromkeys(table.index.get_level_values(1)))
    fig, ax = plt.subplots(figsize=(P.WIDTH, 4.4))
    width = 0.8 / len(victims)
    colors = plt.get_cmap("tab10")
    for vi, victim in enumerate(victims):
        sub = table.xs(victim, level=1).reindex(attacks)
        x = np.arange(len(attacks)) + (vi - (len(victims) - 1) / 2) * width
        ax.bar(x, sub["success_rate"], width, color="0.35" if victim == "average" else colors(vi),
               label=victim, yerr=P.error_bars(sub["success_rate"], sub["ci_low"], sub["ci_high"]), capsize=2)
        ax.scatter(x, sub["paper"], marker="D", s=36, facecolors="none", edgecolors="k", linewidths=1.4,
                   zorder=5, label="paper" if vi == 0 else None)
    ax.set_xticks(range(len(attacks)), [P.wrap(a.replace(" (", "\n(").replace(" K=", "\nK="), 1.1, 9)
                                        for a in attacks], fontsize=P.SMALL)
    ax.set_ylim(0, 1)
    ax.set_ylabel("targets classified as\nthe adversarial class")
    ax.legend(fontsize=P.SMALL, ncol=2)
    P.title(ax, f"WB-T1 from scratch, {cfg.n_poisons} poisons ({100 * cfg.budget:g}% of the training set), eps "
                f"{255 * cfg.eps:.0f}/255, {cfg.n_targets} setups per cell; 95% Wilson intervals", fontsize=10)
    label = standin_label(cfg)
    if label:
        P.standin_note(fig, label)
    res.save_figure(fig, "WB-T1")
    return fig


def budget_table(cfg, poisons: dict, res: Results) -> pd.DataFrame:
    """WB-T1b (saved): every attack's measured L-inf distance from the bases (0-255 scale, on the
    uint8 pixels the victims train on) against the budget; over budget raises."""
    return measured_budgets(res, "WB-T1b", {LABELS[a]: (poisons[a]["linf_255"], 255 * cfg.eps) for a in cfg.attacks})


def accuracy_table(cfg, vic: dict, res: Results) -> pd.DataFrame:
    """WB-T1c (saved): mean clean accuracy of the clean and the poisoned victims per architecture."""
    rows = []
    for vi, arch in enumerate(cfg.victims):
        rows.append({"victims": "clean", "victim": victim_name(arch), "n": vic["clean_accuracy"][vi].numel(),
                     "test_accuracy": float(vic["clean_accuracy"][vi].mean())})
        for ai, attack in enumerate(cfg.attacks):
            acc = vic["poisoned_accuracy"][ai, vi]
            rows.append({"victims": LABELS[attack], "victim": victim_name(arch), "n": acc.numel(),
                         "test_accuracy": float(acc.mean())})
    table = pd.DataFrame(rows).set_index(["victims", "victim"])
    res.save_table(table, "WB-T1c")
    return table


def fig_poisons(cfg, data, poisons: dict, res: Results, setup: int = 0, count: int = 4):
    """WB-T1d: the target of one setup and the first poisons of every attack (a row each, named
    in full on its left), with their perturbations amplified."""
    from ... import data as D
    k = min(count, cfg.n_poisons)
    cols = 2 * k + 1
    fig, axes = plt.subplots(len(cfg.attacks), cols, figsize=(min(P.WIDTH, 0.8 * cols + 0.5), 0.95 * len(cfg.attacks) + 0.6),
                             squeeze=False)
    bases = data["train_x"][torch.as_tensor(data["base_pos"][setup][:k])].float() / 255
    for ai, attack in enumerate(cfg.attacks):
        p = poisons[attack]["poisons"][setup][:k].float() / 255
        top = ai == 0  # column titles once, on the first row
        if top:
            P.image_row([axes[ai, 0]], [data["targets"][setup].float() / 255], ["target"], fontsize=P.SMALL)
        else:
            axes[ai, 0].axis("off")
        P.image_row(axes[ai, 1:k + 1], p, [f"poison {i + 1}" if top else "" for i in range(k)], fontsize=P.SMALL)
        P.image_row(axes[ai, k + 1:], [P.amplified(d) for d in p - bases],
                    [f"change {i + 1}" if top else "" for i in range(k)], fontsize=P.SMALL)
        P.row_label(axes[ai, 1], LABELS[attack])  # in full, its K too
    target = D.CIFAR10_CLASSES[int(data["target_label"][setup])]
    adv = D.CIFAR10_CLASSES[int(data["adversarial"][setup])]
    P.suptitle(fig, f"WB-T1d poisons of setup {setup + 1} (target: a {target}; bases: {adv}, the adversarial class), "
                    f"L-inf budget {255 * cfg.eps:.0f}/255; change: the perturbation, amplified", fontsize=9)
    res.save_figure(fig, "WB-T1d")
    return fig


def wb_a_table(status: dict, res: Results) -> pd.DataFrame:
    """WB-A (saved): the ImageNet experiment's status (not among the claims ``cpu`` checks)."""
    table = pd.Series(status, name="WB-A").astype(str).to_frame()
    res.save_table(table, "WB-A")
    return table


# --------------------------------------------------------------------------- claims
HEADLINE_ATTACK = "gradient_matching_K1"
GRADIENT_MATCHING = ("gradient_matching_K1", "gradient_matching_K4", "gradient_matching_K6het")


def base_rate(vic: dict, attack: str) -> torch.Tensor:
    """The clean victims' outcome that ``attack``'s success is compared with, [victims, setups]:
    setup t's clean victim calls setup t's target the adversarial class (with the attack's trigger
    pasted at its location, for the backdoors)."""
    if attack in TRIGGER_AT:
        return vic["clean_patched_success"][:, list(TRIGGER_AT).index(attack)]
    return vic["clean_success"]


def _paired(a: torch.Tensor, b: torch.Tensor):
    """Paired outcomes of two arms on the same victim seeds (same shape: [victims, setups] or [setups])."""
    return S.paired_rate_difference_test(a.flatten().numpy(), b.flatten().numpy())


def accuracy_difference_per_seed(vic: dict, attacks: list[int], vi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clean accuracy of the poisoned victims (the mean over ``attacks``, indices into the
    attacks) and of the clean victim, per victim seed (setup, on architecture ``vi`` or on every
    architecture): the paired values of the clean-accuracy claims."""
    poisoned = vic["poisoned_accuracy"][attacks].mean(0)   # [victims, setups]
    clean = vic["clean_accuracy"]
    if vi is not None:
        poisoned, clean = poisoned[vi], clean[vi]
    return poisoned.flatten().numpy(), clean.flatten().numpy()


def record_claims(cfg, vic: dict, res: Results):
    """The claims of WB-T1, each decided by its test on the per-setup data.

    The design is paired: for each architecture and setup every attack's victim and the clean
    victim train with one seed (``experiments.victims``), so success is compared per setup and
    seed (exact McNemar, Newcombe's paired bound) and clean accuracy per seed (paired t over the
    seeds, the independent unit). Averages over the architectures pool their seeds; the poisons of
    a setup are shared by the architectures, as in the paper's average column.

    Headline (two, Holm-adjusted together; fixed with the power analysis before the run at this
    scale): gradient matching K=1 beats the clean base rate *and* every baseline that ran, on
    average over the architectures (a joint claim: it holds only where each of its supporting
    comparisons holds), and gradient matching keeps clean accuracy within 2 points. Every claim
    requires the supporting precondition that the clean victims of its architectures reach the
    accuracy floor (decided over their seeds); the rest is supporting: each attack against the
    base rate, K=1 against each baseline on average and per architecture, K=6 heterogeneous
    against K=1 on VGG-11, clean accuracy per architecture."""
    idx = {a: i for i, a in enumerate(cfg.attacks)}
    s = vic["success"]                                  # [attacks, victims, setups]
    n_v, n_t = s.shape[1], s.shape[2]
    arch_key = [_paper_arch(a) for a in cfg.victims]    # the same at every profile (stand-ins or not)
    names = [victim_name(a) for a in cfg.victims]
    floors = [res.claim("WB-T1", f"the clean {names[vi]} victims reach the accuracy floor: clean test accuracy above "
                                 f"{cfg.accuracy_floor:.0%} (precondition)",
                        "clean test accuracy of the clean victims",
                        S.mean_test(vic["clean_accuracy"][vi].numpy(), cfg.accuracy_floor, ">"),
                        role="supporting", key=arch_key[vi],
                        setting=f"{n_t} clean victims, one per setup seed (the independent unit)")
              for vi in range(n_v)]
    average = (f"from scratch, {n_v} victim architectures x {n_t} setups; paired by victim seed (a setup's "
               "victims share it); the architectures share each setup's poisons")
    per_arch = f"from scratch, {n_t} setups; paired by victim seed"

    beats_base = {}
    for attack in cfg.attacks:
        base = "the clean base rate" + (" (clean victims, the trigger on the target)" if attack in TRIGGER_AT else "")
        beats_base[attack] = res.claim(
            "WB-T1", f"{LABELS[attack]} beats {base} on average over the architectures",
            "success rate difference, attack - clean victims", _paired(s[idx[attack]], base_rate(vic, attack)),
            role="supporting", key=attack, setting=average, requires=floors)

    if HEADLINE_ATTACK in idx:
        k1 = s[idx[HEADLINE_ATTACK]]
        baselines = [b for b in BASELINES if b in idx]
        parts = [beats_base[HEADLINE_ATTACK]]
        for b in baselines:
            parts.append(res.claim("WB-T1", f"gradient matching K=1 beats {LABELS[b]} on average over the "
                                            "architectures", "success rate difference, gradient matching K1 - baseline",
                                   _paired(k1, s[idx[b]]), role="supporting", key=b, setting=average,
                                   paper_key=f"k1_minus_{b}", requires=floors))
            for vi in range(n_v):
                res.claim("WB-T1", f"gradient matching K=1 beats {LABELS[b]} on {names[vi]}",
                          "success rate difference, gradient matching K1 - baseline", _paired(k1[vi], s[idx[b], vi]),
                          role="supporting", key=f"{b} {arch_key[vi]}", setting=per_arch,
                          paper_key=f"k1_minus_{b}.{arch_key[vi]}", requires=[floors[vi]])
        every = "".join(f", {LABELS[b]}" for b in baselines)
        res.joint("WB-T1", f"gradient matching K=1 beats the clean base rate and every baseline that ran{every}, "
                  "on average over the architectures", parts, role="headline", key="K1 vs base rate and baselines",
                  setting=average)

    vgg = [vi for vi in range(n_v) if arch_key[vi] == "vgg11"]
    if {"gradient_matching_K1", "gradient_matching_K6het"} <= set(idx) and vgg:
        vi = vgg[0]
        res.claim("WB-T1", f"the heterogeneous ensemble beats K=1 on {names[vi]}, the architecture K=1 transfers to "
                  "worst in the paper", "success rate difference, K6 heterogeneous - K1",
                  _paired(s[idx["gradient_matching_K6het"], vi], s[idx["gradient_matching_K1"], vi]),
                  role="supporting", setting=per_arch, paper_key="k6het_minus_k1_vgg11", requires=[floors[vi]])

    every_attack = list(range(len(cfg.attacks)))
    for vi in range(n_v):
        poisoned, clean = accuracy_difference_per_seed(vic, every_attack, vi)
        res.claim("WB-T1", f"poisoned victims' clean accuracy stays within 2 points of the clean victims' on "
                  f"{names[vi]}",
                  "clean accuracy, poisoned - clean victims",
                  S.paired_difference_test(poisoned, clean, ACCURACY_MARGIN, side=">"), role="supporting",
                  key=arch_key[vi], requires=[floors[vi]],
                  setting=f"{n_t} victim seeds: per seed, the mean over the {len(every_attack)} attacks' victims "
                          "against the clean victim of that seed (paired t)")
    matching = [idx[a] for a in GRADIENT_MATCHING if a in idx]
    if matching:
        poisoned, clean = accuracy_difference_per_seed(vic, matching)
        res.claim("WB-T1", "gradient matching's poisoned victims keep their clean accuracy within 2 points of the "
                  "clean victims' on average over the architectures", "clean accuracy, poisoned - clean victims",
                  S.paired_difference_test(poisoned, clean, ACCURACY_MARGIN, side=">"), role="headline",
                  key="gradient matching", requires=floors,
                  setting=f"{n_v} architectures x {n_t} victim seeds: per seed, the mean over "
                          f"{', '.join(LABELS[cfg.attacks[i]] for i in matching)} against the clean victim of that "
                          "seed (paired t)")


# --------------------------------------------------------------------------- power (before the run)
HEADLINES = 2  # the joint success claim and the clean-accuracy claim (``record_claims``)
ACCURACY_SPREAD = 0.005  # assumed SD of a seed's poisoned - clean accuracy difference (0.5 points; not measured)


def expected_base_rate(cfg) -> float:
    """The clean victims' expected rate of calling a target the adversarial class: a victim at
    the accuracy floor spreads its errors over the nine other classes."""
    return (1 - cfg.accuracy_floor) / 9


def power_analysis(cfg) -> pd.DataFrame:
    """The power of the headline claims at this profile, computed before the run from the
    paper's effect (Table 1's column of the first victim architecture), the expected base rate
    and the number of setups, with the tests that will decide them (``poisonrepro.power``)."""
    from ... import power as PW
    column = _paper_arch(cfg.victims[0])
    k1 = _paper(f"{HEADLINE_ATTACK}.{column}")
    base = expected_base_rate(cfg)
    baselines = [b for b in BASELINES if b in cfg.attacks]
    strongest = max([_paper(f"{b}.{column}") for b in baselines] + [base])
    n = cfg.n_targets * len(cfg.victims)
    rows = [PW.plan_row(
        "gradient matching K=1 beats the clean base rate and every baseline",
        "a setup: a target with its own poisons and victims (paired by seed)", n,
        "exact McNemar and Newcombe's paired bound, each part", f"K=1 {k1:.0%} on {column} (Table 1)",
        f"clean victims ~{base:.1%} (a victim at the {cfg.accuracy_floor:.0%} floor); the strongest baseline "
        f"{strongest:.0%}", lambda k, level: PW.paired_success_power(k, k1, strongest, level), HEADLINES)]
    if HEADLINE_ATTACK in cfg.attacks:
        rows.append(PW.plan_row(
            "gradient matching keeps clean accuracy within 2 points", "a victim seed (poisoned vs clean victim)",
            n, "paired t, one-sided, margin -2 points", "no accuracy drop (the paper's premise of clean-label poisons)",
            f"no difference; assumed SD {100 * ACCURACY_SPREAD:.1f} points between seeds",
            lambda k, level: PW.mean_difference_power(k, 0.0, ACCURACY_SPREAD, ACCURACY_MARGIN, level), HEADLINES))
    return PW.power_table(rows)


def plain_answer(cfg, vic: dict, res: Results) -> str:
    """The answer to "does gradient matching beat the base rate with victims at the floor?" in
    one sentence, from this run's claims (after Holm)."""
    if HEADLINE_ATTACK not in cfg.attacks:
        return "Gradient matching K=1 did not run at this profile."
    frame = res.claims_frame().set_index("id")
    joint = frame.loc["WB-T1:joint:k1-vs-base-rate-and-baselines"]
    base = frame.loc["WB-T1:success-rate-difference-attack-clean-victims:gradient-matching-k1"]
    k1 = vic["success"][cfg.attacks.index(HEADLINE_ATTACK)]
    clean = vic["clean_accuracy"]
    return (f"Gradient matching K=1 against the clean base rate, victims at {float(clean.min()):.1%}-"
            f"{float(clean.max()):.1%} clean accuracy ({', '.join(victim_name(a) for a in cfg.victims)}): "
            f"{int(k1.sum())} of {k1.numel()} setups flipped, against {int(vic['clean_success'].sum())} of "
            f"{vic['clean_success'].numel()} for the clean victims of the same seeds; verdict "
            f"**{base.verdict}** (exact McNemar p = {base.p:.3g}). Beats the base rate and every baseline that "
            f"ran: **{joint.verdict}**" + (f" ({joint.reason})" if joint.verdict != "holds" else "") + ".")
