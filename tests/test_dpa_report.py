"""Notebook 10's claims (``papers.dpa.report``): each k is tested against the Table 1 row of the
same partition size only, the paper's value is in the measured value's unit (a certified share
beside a certified share, the radius in the claim), the headline is untested where the base
classifiers fall short of the paper's own base accuracy, and k = 1000 on CIFAR-10 (Table 1: N/A)
claims no radius."""
import numpy as np
import pytest
import torch

from poisonrepro.config import load_config
from poisonrepro.papers.dpa import report as R
from poisonrepro.results import Results


def _result(k: int, n_train: int, base_accuracy: float, n_test: int = 400, seed: int = 0) -> dict:
    """Votes of k base classifiers, each right on a test image with probability ``base_accuracy``
    and otherwise voting for the class after the true one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n_test)
    right = rng.random((k, n_test)) < base_accuracy
    votes = np.where(right, y[None], (y[None] + 1) % 10)
    sizes = np.full(k, n_train // k)
    sizes[: n_train - sizes.sum()] += 1
    return {"votes": torch.as_tensor(votes, dtype=torch.int8), "test_y": torch.as_tensor(y),
            "partition_sizes": torch.as_tensor(sizes)}


def _claims(cifar: dict, mnist: dict) -> dict:
    cfg = load_config("dpa", "cpu")
    res = Results("10_dpa", "cpu", "dpa")
    R.record_claims(cfg, {"cifar": cifar, "mnist": mnist}, res)
    return {c["id"]: c for c in res.claims_frame().to_dict("records")}


def test_each_k_stands_for_the_table_1_row_of_its_partition_size():
    assert [R.paper_k("cifar", k, 50_000) for k in (50, 250, 1000, 100)] == [50, 250, 1000, None]
    assert [R.paper_k("mnist", k, 5_000) for k in (25, 50, 100, 250)] == [None, None, 1200, 3000]
    assert R.paper_k("mnist", 100, 60_000) is None         # 600 digits a partition: no such row
    assert [R.paper_radius("cifar", 50, 50), R.paper_radius("cifar", 250, 250)] == [9, 6]
    assert R.paper_radius("cifar", 1000, 1000) is None      # N/A in Table 1
    assert R.paper_radius("mnist", 100, 1200) == 38         # 448 of 1200, as a share of 100, rounded up


def test_the_headline_is_each_ks_own_radius_and_the_paper_column_is_a_share(isolated_artifacts):
    cifar = {k: _result(k, 50_000, acc, seed=k) for k, acc in ((50, 0.9), (250, 0.9), (1000, 0.9))}
    mnist = {k: _result(k, 5_000, 0.95, seed=k) for k in (25, 100)}
    c = _claims(cifar, mnist)
    heads = {i: r for i, r in c.items() if r["role"] == "headline"}
    assert set(heads) == {"DPA-1:certified-accuracy-at-the-paper-s-median-radius:cifar-k50",
                          "DPA-1:certified-accuracy-at-the-paper-s-median-radius:cifar-k250",
                          "DPA-1:certified-accuracy-at-the-paper-s-median-radius:mnist-k100"}
    assert "against 9 poisoned" in heads["DPA-1:certified-accuracy-at-the-paper-s-median-radius:cifar-k50"]["claim"]
    assert "against 6 poisoned" in heads["DPA-1:certified-accuracy-at-the-paper-s-median-radius:cifar-k250"]["claim"]
    for r in heads.values():
        assert r["paper"] == 0.5 and 0 <= r["measured"] <= 1 and r["verdict"] == "holds"   # a share beside a share
        assert r["requires"].startswith("DPA-1:base-classifier-accuracy:")
    # the floor: the paper's own base accuracy at that row, measured beside it
    floor = c["DPA-1:base-classifier-accuracy:cifar-k1000"]
    assert floor["role"] == "supporting" and floor["paper"] == pytest.approx(0.2325)
    assert floor["expectation"] == "> 0.1825" and floor["n"] == 1000   # the unit: a base classifier
    assert not any(i.endswith("mnist-k25") for i in c)               # no Table 1 row, no claim
    assert c["DPA-1:change-of-the-vote-s-clean-accuracy-over-log-k:cifar"]["role"] == "supporting"


def test_the_headline_is_untested_where_the_base_classifiers_fall_short_of_the_papers(isolated_artifacts):
    c = _claims({50: _result(50, 50_000, 0.40)}, {100: _result(100, 5_000, 0.95)})   # the paper's: 56.3%
    assert c["DPA-1:base-classifier-accuracy:cifar-k50"]["verdict"] == "fails"
    head = c["DPA-1:certified-accuracy-at-the-paper-s-median-radius:cifar-k50"]
    assert head["verdict"] == "untested" and "base-classifier-accuracy:cifar-k50" in head["reason"]
    assert c["DPA-1:certified-accuracy-at-the-paper-s-median-radius:mnist-k100"]["verdict"] == "holds"


def test_table_1_rows_that_no_k_stands_for_are_listed_as_not_run(isolated_artifacts):
    cfg = load_config("dpa", "cpu")
    res = Results("10_dpa", "cpu", "dpa")
    results = {"cifar": {50: {**_result(50, 50_000, 0.6), "batched_s": torch.tensor(1.0),
                              "loop_s_per_partition": torch.tensor(0.1), "loop_agreement": torch.tensor(1.0),
                              "rebatched_agreement": torch.tensor(1.0)}}, "mnist": {}}
    table = R.summary_table(cfg, results, res)
    cifar = table.loc["CIFAR-10"]
    assert list(cifar.index) == [50, 250, 1000] and cifar.loc[50, "note"] == ""
    for k in (250, 1000):   # the paper's values beside an empty measurement
        assert cifar.loc[k, "note"] == "not run at cpu (paper profile)" and np.isnan(cifar.loc[k, "base classifier accuracy"])
    assert cifar.loc[250, "paper base classifier accuracy"] == pytest.approx(0.352)


def test_the_power_of_the_headline_is_that_of_its_own_test():
    from poisonrepro import power as PW
    for n, share in ((40, 0.7), (60, 0.55), (25, 0.9)):
        assert R.share_power(n, share, 0.5, 0.05) == pytest.approx(PW.rate_power(n, share, 0.5, 0.05), abs=1e-9)
    # at the paper's own k its share is half a step above one half; the MNIST radius, rounded up, lies past it
    assert 0.5 < R.assumed_share("cifar", 50, 50) < 0.52
    assert R.assumed_share("mnist", 100, 1200) < 0.5
    assert R.share_power(10_000, 0.49, 0.5, 0.05) < 0.01 < 0.5 < R.share_power(10_000, 0.52, 0.5, 0.05)
