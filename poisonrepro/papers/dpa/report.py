"""Notebook 10, Deep Partition Aggregation (Levine and Feizi, ICLR 2021): figures, tables and
claims from the results of ``dpa.experiments`` (every table is saved here). Nothing here is cached.

Each run's k stands for the row of the paper's Table 1 (DPA on CIFAR-10 at k = 50, 250, 1000 of
50,000 images; on MNIST at k = 1200, 3000 of 60,000 digits) whose partitions are as large on
average (within a factor ``MATCH_FACTOR``; ``paper_k``): on CIFAR-10 at the ``cpu`` profile, the
same k. Its claims are that row's: the base classifiers are as accurate as the paper's (a floor,
the precondition), and at least half of the test images are certified against the row's median
certified robustness, scaled by k / the paper's k where the k differs (a radius can never exceed
k / 2), the headline. A row without a median (CIFAR-10 at k = 1000: N/A) claims no radius.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import plots as P
from ... import stats as S
from ...defenses import dpa
from ...reference import get as reference
from ...results import Results
from . import experiments as E
from .experiments import DATASETS, NUM_CLASSES

plt = P.plt
NAME = {"cifar": "CIFAR-10", "mnist": "MNIST (STAND-IN: 5,000 training digits)"}
#: Table 1's DPA rows: each dataset's training-set size and its k
PAPER_ROWS = {"cifar": (50_000, (50, 250, 1000)), "mnist": (60_000, (1200, 3000))}
#: a run's k stands for the Table 1 row with the nearest mean partition size, if within this factor
MATCH_FACTOR = 1.5


def radii(result: dict) -> np.ndarray:
    """rho(x) of every test point, -1 where the vote is wrong."""
    counts = dpa.vote_counts(result["votes"].long(), NUM_CLASSES)
    return dpa.certified_radius(counts, result["test_y"]).numpy()


def base_accuracies(result: dict) -> np.ndarray:
    """Each base classifier's test accuracy [k] (the independent units: each trained alone on its
    own partition from its own seed)."""
    return (result["votes"].long() == result["test_y"].long()[None]).float().mean(1).numpy()


def paper_k(name: str, k: int, n_train: int) -> int | None:
    """The k of the Table 1 row that a run of k partitions of ``n_train`` samples stands for: the
    one with the nearest mean partition size, None if none is within ``MATCH_FACTOR``."""
    n_paper, ks = PAPER_ROWS[name]
    gap = {pk: abs(math.log((n_train / k) / (n_paper / pk))) for pk in ks}
    best = min(gap, key=gap.get)
    return best if gap[best] <= math.log(MATCH_FACTOR) else None


def paper_radius(name: str, k: int, pk: int) -> int | None:
    """The paper's median certified robustness at its k = ``pk``, scaled to this run's k (the
    same share of k, rounded up); None where Table 1 has none (N/A)."""
    median = reference("dpa", f"{name}_k{pk}_median_robustness").value
    return None if math.isnan(median) else math.ceil(median * k / pk)


def _n_train(result: dict) -> int:
    return int(result["partition_sizes"].sum())


def standin_label(cfg) -> str:
    return (f"STAND-IN: base classifiers are the project's ConvNet without batch norm (width {cfg.cifar_width} on CIFAR-10, "
            f"{cfg.mnist_width} on MNIST) trained {cfg.cifar_epochs} / {cfg.mnist_epochs} epochs, for the code's NiN "
            f"(200 epochs); MNIST: 5,000 training digits for 60,000; {cfg.cifar_test} / {cfg.mnist_test} test images")


# --------------------------------------------------------------------------- tables
def summary_table(cfg, results: dict, res: Results) -> pd.DataFrame:
    """DPA-1 (saved): per dataset and k, the partitions, clean accuracy of the vote and of the
    base classifiers beside the Table 1 row it stands for (its k, clean and base classifier
    accuracy, median certified robustness scaled to this k), the median certified robustness,
    the certified accuracy at a few sizes, and the timing of batched training against a loop
    (extrapolated from ``loop_partitions``), with how often the loop's and a re-batched
    training's votes match the batch's."""
    rows = []
    for name in DATASETS:
        for k, r in sorted(results[name].items()):
            rad = radii(r)
            sizes = r["partition_sizes"].float()
            pk = paper_k(name, k, _n_train(r))
            paper = {"paper k (Table 1 row)": pk or np.nan, "paper clean accuracy": np.nan,
                     "paper base classifier accuracy": np.nan, "paper median radius, scaled to k": np.nan}
            if pk:
                radius = paper_radius(name, k, pk)
                paper.update({**_paper_row(name, pk), "paper median radius, scaled to k": np.nan if radius is None else radius})
            loop_s = float(r["loop_s_per_partition"]) * k
            rows.append({"dataset": NAME[name], "k": k, "partition size (mean)": sizes.mean().item(),
                         "empty partitions": int((sizes == 0).sum()), "test images": len(rad),
                         "clean accuracy (vote)": float((rad >= 0).mean()),
                         "base classifier accuracy": float(base_accuracies(r).mean()), **paper,
                         "median certified robustness": dpa.median_certified_robustness(rad),
                         **{f"certified at {s}": float((rad >= s).mean()) for s in (1, 5, 10)},
                         "batched train+vote (s)": float(r["batched_s"]), "loop, extrapolated (s)": loop_s,
                         "speed-up": loop_s / float(r["batched_s"]),
                         "loop (alone) votes = batch votes": float(r["loop_agreement"]),
                         "re-batched votes = batch votes": float(r["rebatched_agreement"]), "note": ""})
        rows += _not_run_rows(cfg, name, results[name])
    table = pd.DataFrame(rows).set_index(["dataset", "k"])
    res.save_table(table, "DPA-1")
    return table


def _paper_row(name: str, pk: int) -> dict:
    return {"paper k (Table 1 row)": pk, "paper clean accuracy": reference("dpa", f"{name}_k{pk}_clean_accuracy").value,
            "paper base classifier accuracy": reference("dpa", f"{name}_k{pk}_base_accuracy").value,
            "paper median radius, scaled to k": reference("dpa", f"{name}_k{pk}_median_robustness").value}


def _not_run_rows(cfg, name: str, results: dict) -> list[dict]:
    """The Table 1 rows of ``name`` that no k of this profile stands for (cut for the budget):
    listed with the paper's values, never silently dropped."""
    stood = {paper_k(name, k, _n_train(r)) for k, r in results.items()}
    return [{"dataset": NAME[name], "k": pk, **_paper_row(name, pk), "note": f"not run at {cfg.profile} (paper profile)"}
            for pk in PAPER_ROWS[name][1] if pk not in stood]


def planted_table(cfg, rows: list[dict], res: Results) -> pd.DataFrame:
    """DPA-1a (saved): the planted attack, one row per certified test point attacked."""
    table = pd.DataFrame(rows, columns=["test_point", "rho", "inserted", "runner_up", "votes_flipped",
                                        "prediction_stands"])
    # typed, so that an attack with no certified point to attack (a smoke run) still sums to 0
    table = table.astype({"test_point": int, "rho": int, "inserted": int, "runner_up": int, "votes_flipped": int,
                          "prediction_stands": bool}).set_index("test_point")
    res.save_table(table, "DPA-1a")
    return table


# --------------------------------------------------------------------------- figures
def fig_certified(cfg, results: dict, res: Results):
    """DPA-1: certified accuracy against the number of poisoned samples (insertions or removals),
    one curve per k, each dataset a panel; the Table 1 row each k stands for marked at 50% (its
    median certified robustness, scaled to k)."""
    fig, axes = plt.subplots(1, 2, figsize=(P.WIDTH, 3.4))
    for ax, name in zip(axes, DATASETS):
        for k, r in sorted(results[name].items()):
            rad = radii(r)
            sizes = np.arange(0, max(1, int(rad.max()) + 2))
            line, = ax.plot(sizes, dpa.certified_accuracy(rad, sizes), label=f"k = {k}")
            pk = paper_k(name, k, _n_train(r))
            radius = paper_radius(name, k, pk) if pk else None
            if radius is not None:
                median = reference("dpa", f"{name}_k{pk}_median_robustness").value
                ax.plot([radius], [0.5], "*", color=line.get_color(), ms=10, mec="k",
                        label=f"paper (k = {pk}): 50% at {median:g}" + ("" if pk == k else f", scaled to {radius}"))
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel("poisoned samples (insertions or removals)")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 1)
        P.title(ax, NAME[name], fontsize=9)
        ax.legend(fontsize=P.SMALL)
    P.suptitle(fig, "DPA-1: certified accuracy against the number of poisoned training samples, per number of "
                 "partitions k (stars: the paper's median certified robustness, Table 1)", fontsize=9)
    P.tight(fig)
    P.standin_note(fig, standin_label(cfg))
    res.save_figure(fig, "DPA-1")
    return fig


# --------------------------------------------------------------------------- power
def assumed_share(name: str, k: int, pk: int) -> float:
    """The certified share at this k's radius if the paper's ensemble were reproduced exactly.

    Table 1 gives a median m (paper units), not the share there: by its definition the share is
    at least half at m and below half at m + 1. Assumed: the certified-accuracy curve falls
    linearly from the clean accuracy at 0 to half at m + 1/2 (its mean slope s, per paper unit),
    read at this k's radius r, which is ``paper_radius`` = ceil(m k / pk) in units of pk / k paper
    units: 0.5 + s (m + 1/2 - r pk / k). At r = m (the paper's own k) that is half a step above 0.5;
    where the ceiling moves r past m k / pk it can fall below 0.5, and no ensemble as good as the
    paper's would then hold the claim (clipped to [0, 1]: a small k's radius is far from the row's)."""
    median = reference("dpa", f"{name}_k{pk}_median_robustness").value
    clean = reference("dpa", f"{name}_k{pk}_clean_accuracy").value
    slope = (clean - 0.5) / (median + 0.5)
    return float(np.clip(0.5 + slope * (median + 0.5 - paper_radius(name, k, pk) * pk / k), 0.0, 1.0))


def share_power(n: int, share: float, threshold: float, level: float) -> float:
    """The power of ``stats.rate_test`` (the headline's test) over ``n`` test images each certified
    with probability ``share``: the binomial tail above the smallest count that holds at ``level``
    (found by bisection: whether a count holds is monotone in the count)."""
    from scipy.stats import binom

    def holds(count: int) -> bool:
        d = S.rate_test(count, n, threshold)
        return d.verdict == "holds" and not d.p > level
    lo, hi = 0, n + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid) if mid <= n else True:
            hi = mid
        else:
            lo = mid + 1
    return float(binom.sf(lo - 1, n, share)) if lo <= n else 0.0


def images_for(share: float, threshold: float, level: float, target: float = 0.8, n_max: int = 10_000) -> float:
    """The fewest test images giving ``target`` power (inf above ``n_max``, the test set's size)."""
    if share <= threshold or share_power(n_max, share, threshold, level) < target:
        return math.inf
    lo, hi = 1, n_max
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if share_power(mid, share, threshold, level) >= target else (mid + 1, hi)
    return lo


def power_analysis(cfg) -> pd.DataFrame:
    """Before the run: for each headline (a k standing for a Table 1 row with a median), the
    units (the test images this one ensemble certifies or not), the share assumed for an exact
    reproduction (``assumed_share``), and the power of the headline's test at 0.05 and at Holm's
    level over the headlines. The precondition (the base classifiers' floor) is listed beside it:
    its units are the k base classifiers."""
    from ... import power as PW
    share = reference("dpa", "certified_share_at_median").value
    heads = []
    for name, ks, n_train, n_test in (("cifar", cfg.cifar_ks, cfg.cifar_train, cfg.cifar_test),
                                      ("mnist", cfg.mnist_ks, len(E.dataset("mnist", cfg.mnist_train or None, cfg.mnist_test)["y"]),
                                       cfg.mnist_test)):
        for k in ks:
            pk = paper_k(name, k, n_train)
            if pk is not None and paper_radius(name, k, pk) is not None:
                heads.append((name, k, pk, n_test))
    holm = S.ALPHA / max(len(heads), 1)
    rows = []
    for name, k, pk, n_test in heads:
        assumed = assumed_share(name, k, pk)
        radius = paper_radius(name, k, pk)
        rows.append({"claim": f"{NAME[name]}, k = {k}: at least half certified against {radius}",
                     "Table 1 row": f"k = {pk}: median {reference('dpa', f'{name}_k{pk}_median_robustness').value:g}, "
                                    f"clean {reference('dpa', f'{name}_k{pk}_clean_accuracy').value:.1%}",
                     "unit": "a test image (certified or not by this one ensemble)", "units (this profile)": n_test,
                     "assumed certified share (exact reproduction)": round(assumed, 4),
                     f"power at {S.ALPHA:g}": round(share_power(n_test, assumed, share, S.ALPHA), 2),
                     f"power at {holm:.3g} (Holm, {len(heads)} headlines)": round(share_power(n_test, assumed, share, holm), 2),
                     f"test images for {PW.TARGET_POWER:.0%} at {holm:.3g}": images_for(assumed, share, holm, PW.TARGET_POWER),
                     "precondition": f"{k} base classifiers at >= {reference('dpa', f'{name}_k{pk}_base_accuracy').value - cfg.base_floor_margin:.1%} "
                                     f"(paper {reference('dpa', f'{name}_k{pk}_base_accuracy').value:.1%} less "
                                     f"{100 * cfg.base_floor_margin:g} points)"})
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame(columns=["claim"]).set_index("claim")


# --------------------------------------------------------------------------- claims
def record_claims(cfg, results: dict, res: Results):
    """DPA-1's claims. For each k that stands for a Table 1 row: the base classifiers reach the
    floor of that row's base classifier accuracy less ``base_floor_margin`` (supporting, over the
    k base classifiers: the independent units), and, where the row has a median certified
    robustness, at least half of the test images are certified against it (headline, over the
    test images of this ensemble, requiring the floor). Then the trade-off over k (supporting)."""
    share = reference("dpa", "certified_share_at_median").value
    for name in DATASETS:
        for k, r in sorted(results[name].items()):
            pk = paper_k(name, k, _n_train(r))
            if pk is None:
                continue
            rad = radii(r)
            base = base_accuracies(r)
            paper_base = reference("dpa", f"{name}_k{pk}_base_accuracy").value
            floor = paper_base - cfg.base_floor_margin
            stands = f"k = {k}" + ("" if pk == k else f", for Table 1's k = {pk} (same partition size)")
            floor_row = res.claim(
                "DPA-1", f"{NAME[name]}: the base classifiers reach the paper's accuracy less "
                         f"{100 * cfg.base_floor_margin:g} points", "base classifier accuracy",
                S.mean_test(base, floor, ">"), role="supporting", key=f"{name}-k{k}",
                setting=f"{stands}; floor {floor:.3f}; {k} base classifiers, {len(rad)} test images",
                paper_key=f"{name}_k{pk}_base_accuracy")
            radius = paper_radius(name, k, pk)
            if radius is None:  # Table 1: N/A, no radius certifies half the test set
                continue
            res.claim("DPA-1", f"{NAME[name]}: at least half the test images certified against {radius} poisoned "
                               "samples (the paper's median certified robustness"
                               + (")" if pk == k else f" at k = {pk}, as the same share of k)"),
                      "certified accuracy at the paper's median radius",
                      S.rate_test(int((rad >= radius).sum()), len(rad), share), role="headline", key=f"{name}-k{k}",
                      setting=f"{stands}; radius {radius}; {len(rad)} test images", paper_key="certified_share_at_median",
                      requires=[floor_row])
    for name in DATASETS:
        ks = sorted(results[name])
        if len(ks) < 2:
            continue
        rads = [radii(results[name][k]) for k in ks]
        res.claim("DPA-1", f"{NAME[name]}: clean accuracy falls as k grows (the trade-off of Table 1)",
                  "change of the vote's clean accuracy over log k",
                  S.count_trend_test(np.log10(ks), [int((r >= 0).sum()) for r in rads], [len(r) for r in rads], side="<"),
                  role="supporting", key=name, setting=f"k = {', '.join(map(str, ks))}")
