"""Notebook 10, Deep Partition Aggregation: figures, tables and claims from the results of
``dpa.experiments`` (every table is saved here). Nothing here is cached.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import plots as P
from ... import stats as S
from ...defenses import dpa
from ...results import Results
from .experiments import DATASETS, NUM_CLASSES

plt = P.plt
NAME = {"cifar": "CIFAR-10", "mnist": "MNIST (STAND-IN: 5,000 training digits)"}
#: MNIST: the paper's headline at its k = 1,200 on 60,000 digits, rescaled to the stand-in's k by
#: the share of k it is (a radius can never exceed k / 2)
PAPER_MNIST_K = 1200


def radii(result: dict) -> np.ndarray:
    """rho(x) of every test point, -1 where the vote is wrong."""
    counts = dpa.vote_counts(result["votes"].long(), NUM_CLASSES)
    return dpa.certified_radius(counts, result["test_y"]).numpy()


def mnist_threshold(k: int, paper: float) -> int:
    """The paper's MNIST radius (at k = 1,200) as the same share of the stand-in's k."""
    return math.ceil(paper * k / PAPER_MNIST_K)


def standin_label(cfg) -> str:
    return (f"STAND-IN: base classifiers are the project's ConvNet without batch norm (width {cfg.cifar_width} on CIFAR-10, "
            f"{cfg.mnist_width} on MNIST) trained {cfg.cifar_epochs} / {cfg.mnist_epochs} epochs, for the code's NiN "
            f"(200 epochs); MNIST: 5,000 training digits for 60,000; {cfg.cifar_test} / {cfg.mnist_test} test images")


# --------------------------------------------------------------------------- tables
def summary_table(cfg, results: dict, res: Results) -> pd.DataFrame:
    """DPA-1 (saved): per dataset and k, the partitions, clean accuracy of the vote and of the
    base classifiers, the median certified robustness, the certified accuracy at a few sizes, and
    the timing of batched training against a loop (extrapolated from ``loop_partitions``)."""
    rows = []
    for name in DATASETS:
        for k, r in sorted(results[name].items()):
            rad = radii(r)
            sizes = r["partition_sizes"].float()
            base_acc = (r["votes"].long() == r["test_y"].long()[None]).float().mean().item()
            loop_s = float(r["loop_s_per_partition"]) * k
            rows.append({"dataset": NAME[name], "k": k, "partition size (mean)": sizes.mean().item(),
                         "empty partitions": int((sizes == 0).sum()), "test images": len(rad),
                         "clean accuracy (vote)": float((rad >= 0).mean()), "base classifier accuracy": base_acc,
                         "median certified robustness": dpa.median_certified_robustness(rad),
                         **{f"certified at {s}": float((rad >= s).mean()) for s in (1, 5, 10)},
                         "batched train+vote (s)": float(r["batched_s"]), "loop, extrapolated (s)": loop_s,
                         "speed-up": loop_s / float(r["batched_s"]), "loop votes = batch votes": float(r["loop_agreement"])})
    table = pd.DataFrame(rows).set_index(["dataset", "k"])
    res.save_table(table, "DPA-1")
    return table


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
    one curve per k, each dataset a panel; the paper's headline marked."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    refs = {"cifar": res_ref("cifar_median_robustness"), "mnist": res_ref("mnist_median_robustness")}
    for ax, name in zip(axes, DATASETS):
        for k, r in sorted(results[name].items()):
            rad = radii(r)
            sizes = np.arange(0, max(1, int(rad.max()) + 2))
            ax.plot(sizes, dpa.certified_accuracy(rad, sizes), label=f"k = {k}")
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
        if name == "cifar":
            ax.plot([refs["cifar"]], [0.5], "k*", ms=10, label=f"paper: 50% at {refs['cifar']:g} (k UNCONFIRMED)")
        else:
            for k in sorted(results[name]):
                ax.plot([mnist_threshold(k, refs["mnist"])], [0.5], "k*", ms=8)
            ax.plot([], [], "k*", label=f"paper's >{refs['mnist']:g} at k = {PAPER_MNIST_K}, as a share of k")
        ax.set_xlabel("poisoned samples (insertions or removals)")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(NAME[name], fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("DPA-1: certified accuracy against the number of poisoned training samples, per number of "
                 "partitions k", fontsize=9)
    P.tight(fig)
    P.standin_note(fig, standin_label(cfg))
    res.save_figure(fig, "DPA-1")
    return fig


def res_ref(key: str) -> float:
    from ...reference import get
    return get("dpa", key).value


# --------------------------------------------------------------------------- claims
def record_claims(cfg, results: dict, res: Results):
    """DPA-1's claims, over the test images (each image one trial of the certificate)."""
    cifar_ref, mnist_ref = res_ref("cifar_median_robustness"), res_ref("mnist_median_robustness")
    for k, r in sorted(results["cifar"].items()):
        rad = radii(r)
        res.claim("DPA-1", f"CIFAR-10: at least half the test images certified against {cifar_ref:g} poisoned samples",
                  f"certified accuracy at {cifar_ref:g}", S.rate_test(int((rad >= cifar_ref).sum()), len(rad), 0.5),
                  setting=f"k = {k}, {len(rad)} test images", paper_key="cifar_median_robustness")
    for k, r in sorted(results["mnist"].items()):
        rad = radii(r)
        t = mnist_threshold(k, mnist_ref)
        res.claim("DPA-1", f"MNIST: at least half the test images certified against {t} poisoned samples (the paper's "
                           f">{mnist_ref:g} at k = {PAPER_MNIST_K}, as the same share of k)",
                  "certified accuracy at the paper's share of k", S.rate_test(int((rad >= t).sum()), len(rad), 0.5),
                  setting=f"k = {k} on the 5,000-digit STAND-IN, threshold {t}, {len(rad)} test images", paper_key="mnist_median_robustness")
    for name in DATASETS:
        ks = sorted(results[name])
        if len(ks) < 2:
            continue
        rads = [radii(results[name][k]) for k in ks]
        res.claim("DPA-1", f"{NAME[name]}: clean accuracy falls as k grows (the trade-off of Fig. 2)",
                  "change of the vote's clean accuracy over log k",
                  S.count_trend_test(np.log10(ks), [int((r >= 0).sum()) for r in rads], [len(r) for r in rads], side="<"),
                  setting=f"k = {', '.join(map(str, ks))}")
