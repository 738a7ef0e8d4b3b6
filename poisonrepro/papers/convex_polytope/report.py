"""Notebook 02, Convex Polytope: figures, tables and claims from the results of
``convex_polytope.experiments`` (every table is saved here). Nothing here is cached, so an edit
here changes no cache key.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ... import models as M
from ... import plots as P
from ... import stats as S
from ...results import Results, success_columns
from ...results import budget_table as measured_budgets
from .experiments import E2E_METHODS, METHODS

plt = P.plt
HEADLINE = 0.5         # "more than 50%" transferable success at 1% poisoned (abstract)
ACCURACY_MARGIN = -0.02  # poisoned victims' clean accuracy within 2 points of the clean victims'
LABELS = {"clean": "clean (no poisons)", "feature_collision": "feature collision (FC)",
          "convex_polytope": "convex polytope (CP)", "multi_layer": "multi-layer CP"}


def standin_label(networks) -> str:
    names = sorted({n["arch"] for n in networks if n["arch"] in M.STANDIN_OF})
    if not names:
        return ""
    return ("STAND-IN networks: " + ", ".join(M.display_name(n) for n in names)
            + "; pretrained on a CIFAR-10 subset")


# --------------------------------------------------------------------------- CP-1
def fig_toy(toy: dict, res: Results, instance: int = 0):
    """CP-1: the 2-D toy of Fig. 1 on its first random instance: collision poisons sit at the
    budget's nearest points to the target, polytope poisons around it; the linear SVM before
    (dashed) and after (solid) adding them."""
    X, y, t, b = toy["X"], toy["y"], toy["targets"][instance], toy["bases"][instance]
    fig, axes = plt.subplots(1, 2, figsize=(P.WIDTH, 3.8), sharex=True, sharey=True)
    grid = np.stack(np.meshgrid(np.linspace(0.15, 0.85, 300), np.linspace(0.25, 0.75, 300)), -1).reshape(-1, 2)
    for ax, name in zip(axes, ("feature_collision", "convex_polytope")):
        r = toy[name]
        p = r["poisons"][instance]
        ax.scatter(*X[y == 0].T, s=12, c="tab:blue", alpha=0.5, label="class 0 (target's class)")
        ax.scatter(*X[y == 1].T, s=12, c="tab:red", alpha=0.5, label="class 1 (poison class)")
        for before, after in zip(b, p):
            ax.annotate("", after, before, arrowprops=dict(arrowstyle="->", color="0.3", lw=0.8))
        ax.scatter(*b.T, s=50, facecolors="none", edgecolors="tab:red", label="bases")
        ax.scatter(*p.T, s=60, marker="X", c="darkred", label="poisons (labelled 1)")
        ax.scatter(*t, s=180, marker="*", c="tab:blue", edgecolors="k", label="target (class 0)", zorder=5)
        for svm, style, lab in ((toy["svm"], "--", "boundary before"), (r["svms"][instance], "-", "boundary after")):
            z = svm.decision_function(grid).reshape(300, 300)
            ax.contour(grid[:, 0].reshape(300, 300), grid[:, 1].reshape(300, 300), z, levels=[0],
                       colors="k", linestyles=style, linewidths=1.2)
            ax.plot([], [], "k" + style, label=lab)
        flipped = bool(r["flipped"][instance])
        P.title(ax, f"{LABELS[name]}: target {'misclassified' if flipped else 'still correct'}", fontsize=10)
        ax.set_xlabel("feature 1")
    axes[0].set_ylabel("feature 2")
    axes[1].legend(fontsize=P.SMALL, loc="upper right")
    P.suptitle(fig, f"CP-1 a linear SVM on 2-D features, {len(b)} poisons within an L-inf budget of {toy['eps']:g} "
                 f"(random instance {instance})", fontsize=10)
    res.save_figure(fig, "CP-1")
    return fig


def toy_table(toy: dict, res: Results) -> pd.DataFrame:
    """CP-1 (saved): how often the refit SVM misclassifies the target, over the random instances."""
    rows = []
    for name in ("feature_collision", "convex_polytope"):
        f = toy[name]["flipped"]
        rows.append({"attack": LABELS[name], "instances": len(f), "flipped": int(f.sum()),
                     **success_columns(int(f.sum()), len(f))})
    table = pd.DataFrame(rows).set_index("attack")
    res.save_table(table, "CP-1")
    return table


# --------------------------------------------------------------------------- CP-2
ROLE = {"substitute": "white-box (a substitute)", "gray-box": "gray-box", "black-box": "black-box"}


def _victims(networks):
    """The networks fine-tuned by the end-to-end stage (the victims, not the substitutes)."""
    return [n for n in networks if n["role"] != "substitute"]


def networks_table(networks) -> pd.DataFrame:
    """Every pretrained network: role, architecture (stand-ins labelled), dropout, clean accuracy."""
    return pd.DataFrame([{"role": n["role"], "network": M.display_name(n["arch"]), "dropout": n["dropout"],
                          "test_accuracy": n["test_accuracy"]} for n in networks])


def _success_table(victims, result: dict, methods, artifact: str, res: Results) -> pd.DataFrame:
    """Success of each attack on each network (``result["success"][network, method]`` over the
    targets) with 95% Wilson intervals and the mean clean accuracy after fine-tuning; saved."""
    rows = []
    for vi, v in enumerate(victims):
        for mi, method in enumerate(methods):
            s = result["success"][vi, mi]
            rows.append({"victim": f"{ROLE[v['role']]}: {M.display_name(v['arch'])}", "attack": LABELS[method],
                         "targets": len(s), "successes": int(s.sum()), **success_columns(int(s.sum()), len(s)),
                         "test_accuracy": float(result["test_accuracy"][vi, mi].mean())})
    table = pd.DataFrame(rows).set_index(["victim", "attack"])
    res.save_table(table, artifact)
    return table


def transfer_table(networks, tr: dict, res: Results) -> pd.DataFrame:
    """CP-2 (saved): every network with its last layer fine-tuned (the transfer stage fine-tunes
    the substitutes too: white-box, first, as a diagnostic), with the clean base rate."""
    return _success_table(networks, tr, METHODS, "CP-2", res)


def e2e_table(networks, e2e: dict, cfg, res: Results) -> pd.DataFrame:
    """CP-2a (saved): end-to-end fine-tuning (Fig. 7), last-layer vs multi-layer poisons."""
    victims = [n for n in _victims(networks) if n["arch"] in cfg.e2e_victims]
    return _success_table(victims, e2e, E2E_METHODS, "CP-2a", res)


def fig_success(transfer: pd.DataFrame, e2e: pd.DataFrame, res: Results, label: str):
    """CP-2: success per victim and attack with 95% intervals, transfer and end to end."""
    fig, axes = plt.subplots(2, 1, figsize=(P.WIDTH, 7.0))  # one above the other: each as wide as the column
    colors = {"clean (no poisons)": "0.6", "feature collision (FC)": "tab:orange",
              "convex polytope (CP)": "tab:green", "multi-layer CP": "tab:purple"}
    for ax, table, title in ((axes[0], transfer, "transfer: last layer fine-tuned"),
                             (axes[1], e2e, "end to end: every layer fine-tuned")):
        victims = list(dict.fromkeys(table.index.get_level_values(0)))
        attacks = list(dict.fromkeys(table.index.get_level_values(1)))
        width = 0.8 / len(attacks)
        for ai, attack in enumerate(attacks):
            sub = table.xs(attack, level=1).reindex(victims)
            x = np.arange(len(victims)) + (ai - (len(attacks) - 1) / 2) * width
            ax.bar(x, sub["success_rate"], width, color=colors[attack], label=attack,
                   yerr=P.error_bars(sub["success_rate"], sub["ci_low"], sub["ci_high"]), capsize=2)
        ax.axhline(HEADLINE, color="k", lw=0.8, ls=":")
        ax.set_xticks(range(len(victims)), [v.replace(" (a substitute)", "").replace(
            " (STAND-IN: narrowed, shortened)", "\n(STAND-IN)").replace(": ", ":\n", 1) for v in victims], fontsize=P.SMALL)
        ax.set_ylim(0, 1)
        ax.set_ylabel("targets classified as the poison class")
        P.title(ax, title, fontsize=10)
        ax.legend(fontsize=P.SMALL)
    P.suptitle(fig, "CP-2 success of 5 poisons (1% of the fine-tuning set), 95% Wilson intervals; dotted: the "
                 "paper's 50%", fontsize=10)
    if label:
        P.standin_note(fig, label)
    res.save_figure(fig, "CP-2")
    return fig


def budget_table(cfg, poisons: dict, e2e_poisons: dict, res: Results) -> pd.DataFrame:
    """CP-2b (saved): the measured L-inf distance of every poison from its base (0-255 scale)."""
    return measured_budgets(res, "CP-2b", {LABELS[name]: (255 * linf, 255 * cfg.eps) for name, linf in (
        ("feature_collision", poisons["feature_collision.linf"]), ("convex_polytope", poisons["convex_polytope.linf"]),
        ("multi_layer", e2e_poisons["linf"]))})


def fig_poisons(cfg, data, poisons: dict, res: Results, target: int = 0):
    """CP-2b: the target, the bases and both attacks' poisons for one target, with the
    perturbations amplified."""
    k = len(data["bases"])
    fig, axes = plt.subplots(5, k + 1, figsize=(min(P.WIDTH, 1.1 * (k + 1) + 0.5), 1.2 * 5 + 0.5), squeeze=False)
    P.image_row([axes[0, 0]], [data["targets"][target]], [f"target ({cfg.target_class})"], fontsize=P.SMALL)
    for r in range(1, 5):
        axes[r, 0].axis("off")
    # short column titles on the first row, each row named on its left: long titles overlapped
    P.image_row(axes[0, 1:], data["bases"], [f"base {j + 1}" for j in range(k)], fontsize=P.SMALL)
    P.row_label(axes[0, 1], f"bases ({cfg.poison_class})")
    for r, name in ((1, "feature_collision"), (3, "convex_polytope")):
        p = poisons[f"{name}.poisons"][target]
        short = "FC" if name == "feature_collision" else "CP"
        P.image_row(axes[r, 1:], p, [""] * k)
        P.row_label(axes[r, 1], f"{short} poisons")
        P.image_row(axes[r + 1, 1:], [P.amplified(d) for d in p - data["bases"]], [""] * k)
        P.row_label(axes[r + 1, 1], f"{short} perturbations (amplified)")
    P.suptitle(fig, f"CP-2b poisons for target 1 (L-inf budget {255 * cfg.eps:.1f}/255)", fontsize=10)
    res.save_figure(fig, "CP-2b")
    return fig


# --------------------------------------------------------------------------- claims
def _indices(networks, *roles) -> list[int]:
    return [i for i, n in enumerate(networks) if n["role"] in roles]


def _outcomes(success: torch.Tensor, idx: list[int], method: int) -> torch.Tensor:
    """[networks idx, T] successes of one method (``success`` [networks, methods, T])."""
    return success[idx, method]


def _shares(success: torch.Tensor) -> np.ndarray:
    """Per target, the share of the networks on which it is classified as the poison class ([T])
    from ``success`` [networks, T]. The target with its own poisons is the independent unit: its
    outcomes on several victims share its poisons, so they are averaged, never counted apart."""
    return success.float().mean(0).numpy()


def _difference(a: torch.Tensor, b: torch.Tensor) -> S.Decision:
    """Success under ``a`` minus success under ``b`` ([networks, T] each), paired per target (the
    same target on the same victims): with one victim the outcomes are binary (exact McNemar,
    Newcombe's paired bound); with several, each target's share of them (paired t)."""
    if len(a) == 1:
        return S.paired_rate_difference_test(a[0].numpy(), b[0].numpy(), 0.0, ">")
    return S.paired_difference_test(_shares(a), _shares(b), 0.0, ">")


def _level(a: torch.Tensor, threshold: float, side: str) -> S.Decision:
    """The success rate of ``a`` ([networks, T]) against a threshold, the target the unit: one
    victim, a rate (Wilson bound); several, each target's share of them (t bound)."""
    if len(a) == 1:
        return S.rate_test(int(a[0].sum()), a.shape[1], threshold, side)
    return S.mean_test(_shares(a), threshold, side)


def _network_name(n: dict) -> str:
    extra = f", dropout {n['dropout']:g}" if n["role"] == "substitute" else ""
    return f"{ROLE[n['role']]} {M.display_name(n['arch'])}{extra}"


def accuracy_floors(cfg, networks, res: Results) -> list[dict]:
    """One supporting claim per network (in the order of ``networks``): its clean test accuracy on
    CIFAR-10 (its own task) reaches ``cfg.accuracy_floor`` (issue 23). Each network is one fixed
    object, so its ``test_images`` test images are the units of this measurement."""
    floor = cfg.accuracy_floor
    rows = []
    for n in networks:
        k = int(round(n["test_accuracy"] * cfg.test_images))
        key = f"{n['role']} {n['arch']}" + (f" dropout {n['dropout']:g}" if n["role"] == "substitute" else "")
        rows.append(res.claim("CP-2", f"{_network_name(n)} reaches {floor:.0%} clean accuracy", "clean test accuracy",
                              S.rate_test(k, cfg.test_images, floor, ">"), role="supporting", key=key,
                              setting=f"pretrained on {cfg.pretrain_per_class} images per class; one fixed network, "
                                      f"so its {cfg.test_images} CIFAR-10 test images are the units"))
    return rows


# --------------------------------------------------------------------------- power (before the run)
HEADLINES = 2  # on black-box victims: CP beats FC; CP succeeds more than 50% of the time


def power_analysis(cfg) -> pd.DataFrame:
    """The power of CP-2's two headline claims at this profile, before the run: Fig. 5's black-box
    bars (the mean of its two victims) as the paper's effect, the targets (each with its own
    poisons) as the units, and the tests that will decide them (``poisonrepro.power``). With one
    black-box victim the tests are exact (McNemar, Wilson); with several, a target's share of them
    is its outcome, which only adds precision, so the one-victim power is a lower bound."""
    from ... import power as PW
    from ...reference import get as reference
    cp = reference("convex_polytope", "cp_blackbox_success").value
    fc = reference("convex_polytope", "fc_blackbox_success").value
    n = cfg.n_targets
    unit = f"a target with its own poisons ({len(cfg.blackbox_victims)} black-box victim(s) each)"
    several = "" if len(cfg.blackbox_victims) == 1 else " (for one victim: a lower bound on the t tests' power)"
    return PW.power_table([
        PW.plan_row("CP beats FC on black-box victims", unit, n, "exact McNemar and Newcombe's paired bound" + several,
                    f"CP {cp:.0%} (Fig. 5, black-box mean)", f"FC {fc:.0%} on the same targets (Fig. 5)",
                    lambda k, level: PW.paired_success_power(k, cp, fc, level), HEADLINES),
        PW.plan_row(f"CP succeeds more than {HEADLINE:.0%} of the time (black-box)", unit, n,
                    f"Wilson bound against {HEADLINE:.0%}" + several, f"CP {cp:.0%} (Fig. 5, black-box mean)",
                    f"{HEADLINE:.0%} (the abstract's threshold)",
                    lambda k, level: PW.rate_power(k, cp, HEADLINE, level), HEADLINES)])


def record_claims(cfg, networks, tr, e2e, res: Results):
    """The claims of Sec. 5 (Fig. 5, Fig. 7) and the clean-accuracy bound, each decided by its test.

    Headline (CP-2 of the seed artifacts): on black-box victims, CP beats FC, and CP succeeds more
    than 50% of the time. Everything else is supporting. Every claim about what the poisons do
    requires the accuracy floor of the substitutes that crafted them and of the victims that decide
    it (``accuracy_floors``); the white-box diagnostic pools only the substitutes that reach it.
    Success claims take the target (with its own poisons) as the unit: its share of the role's
    victims fooled, paired across attacks (the same target on the same victims)."""
    floors = accuracy_floors(cfg, networks, res)
    subs, gray, black = (_indices(networks, r) for r in ("substitute", "gray-box", "black-box"))
    victims = gray + black
    crafted = [floors[i] for i in subs]  # the poisons depend on every substitute
    k = cfg.n_targets
    per_target = f"{k} targets (the unit: a target's share of the victims fooled)"
    black_set = f"transfer, {len(black)} black-box victims x {per_target}"
    gray_set = f"transfer, {len(gray)} gray-box victims x {per_target}"
    all_set = f"transfer, the {len(victims)} gray-box and black-box victims x {per_target}"
    needs_black = crafted + [floors[i] for i in black]
    needs_victims = crafted + [floors[i] for i in victims]

    cp, fc, clean = (METHODS.index(m) for m in ("convex_polytope", "feature_collision", "clean"))
    success = tr["success"]
    cp_b, fc_b, cl_b = (_outcomes(success, black, m) for m in (cp, fc, clean))
    res.claim("CP-2", "CP beats FC on black-box victims", "success rate difference CP - FC",
              _difference(cp_b, fc_b), role="headline", key="black-box",
              setting=black_set + "; paired per target", paper_key="cp_minus_fc_blackbox", requires=needs_black)
    res.claim("CP-2", "CP succeeds more than 50% of the time at 1% poisoned (black-box)", "CP success rate",
              _level(cp_b, HEADLINE, ">"), role="headline", key="black-box", setting=black_set,
              paper_key="cp_headline_success", requires=needs_black)
    res.claim("CP-2", "CP on black-box victims beats their clean base rate", "success rate difference CP - clean",
              _difference(cp_b, cl_b), role="supporting", key="black-box",
              setting=black_set + "; paired per target", requires=needs_black)
    res.claim("CP-2", "CP beats FC on gray-box victims", "success rate difference CP - FC",
              _difference(_outcomes(success, gray, cp), _outcomes(success, gray, fc)), role="supporting",
              key="gray-box", setting=gray_set + "; paired per target", paper_key="cp_minus_fc_graybox",
              requires=crafted + [floors[i] for i in gray])

    # the diagnostic: does CP work where it was crafted? Only substitutes that reach the floor are
    # pooled (a chance-level network's "success" says nothing); with none, it is untested
    good = [i for i in subs if floors[i]["verdict"] == "holds"]
    pooled = good or subs
    names = ", ".join(M.display_name(networks[i]["arch"]) for i in good) or "none reaches the floor"
    res.claim("CP-2", "diagnostic: CP on the substitutes themselves beats their clean base rate",
              "success rate difference CP - clean",
              _difference(_outcomes(success, pooled, cp), _outcomes(success, pooled, clean)),
              role="supporting", key="white-box", requires=[floors[i] for i in pooled],
              setting=f"transfer, white-box (dropout off): the {len(good)} of {len(subs)} substitutes at the accuracy "
                      f"floor ({names}) x {per_target}; paired per target")

    # "FC stays below 50%" says something about FC only where poisons can transfer at all: CP's
    # success on the same victims must beat their clean base rate first
    cp_all, fc_all, cl_all = (_outcomes(success, victims, m) for m in (cp, fc, clean))
    transfers = res.claim(
        "CP-2", "CP's poisons transfer at all: CP beats the clean base rate on the same victims",
        "success rate difference CP - clean", _difference(cp_all, cl_all), role="supporting",
        key="gray-and-black-box", setting=all_set + "; paired per target", requires=needs_victims)
    res.claim("CP-2", "FC stays below 50% success where CP's poisons transfer", "FC success rate",
              _level(fc_all, HEADLINE, "<"), role="supporting", key="gray-and-black-box",
              setting=all_set, paper_key="fc_never_above", requires=needs_victims + [transfers])

    # the clean-accuracy bound: the unit is the victim (one network, one seed), each the mean over
    # its targets' poisoned fine-tunings, against its own clean fine-tuning
    acc = tr["test_accuracy"][victims]
    drop = (acc[:, METHODS.index("convex_polytope")] - acc[:, METHODS.index("clean"), :1]).mean(1)
    res.claim("CP-2", "CP poisons leave the victims' clean accuracy within 2 points",
              "clean accuracy, poisoned - clean victim", S.mean_test(drop.numpy(), ACCURACY_MARGIN, side=">"),
              role="supporting", requires=needs_victims,
              setting=f"transfer; the unit is the victim ({len(victims)} gray-box and black-box victims, one seed "
                      f"each), each the mean over its {k} targets' fine-tunings minus its clean fine-tuning")
    if cfg.e2e_targets:
        e2e_idx = [i for i in victims if networks[i]["arch"] in cfg.e2e_victims]
        ml = e2e["success"][:, E2E_METHODS.index("multi_layer")]
        ll = e2e["success"][:, E2E_METHODS.index("convex_polytope")]
        setting = (f"end to end, {len(e2e_idx)} victims x {cfg.e2e_targets} targets (the unit: a target's "
                   "share of the victims fooled); paired per target")
        res.claim("CP-2a", "multi-layer CP beats last-layer CP end to end", "success rate difference",
                  _difference(ml, ll), role="supporting", setting=setting,
                  paper_key="e2e_multilayer_minus_lastlayer", requires=crafted + [floors[i] for i in e2e_idx])
