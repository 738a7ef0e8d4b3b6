import math
import random

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from poisonrepro import cache as C
from poisonrepro import paths
from poisonrepro import stats as S
from poisonrepro.rng import seed_everything
from poisonrepro.results import CLAIM_COLUMNS, Results, wilson


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "a.pt"
    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        C.atomic_write(target, broken)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_cache_computes_once_and_reloads_tensors_only(tmp_path):
    cache = C.ArtifactCache(tmp_path)
    calls = []
    def compute():
        calls.append(1)
        return {"w": torch.arange(3.0)}
    a = cache.tensors("model", "k1", compute)
    b = cache.tensors("model", "k1", compute)
    assert len(calls) == 1 and torch.equal(a["w"], b["w"])
    # files hold plain tensors: loadable with weights_only=True
    assert torch.equal(torch.load(cache.path("model", "k1", ".pt"), weights_only=True)["w"], a["w"])


def _draws() -> dict:
    """Draws from each global generator, as a stage that builds a network before seeding does."""
    return {"torch": torch.rand(4), "numpy": torch.as_tensor(np.random.rand(4)),
            "python": torch.tensor([random.random()])}


def test_a_stage_draws_from_its_key_not_from_the_callers_generators():
    cache = C.ArtifactCache(enabled=False)  # computes every time
    seed_everything(1)
    a = cache.tensors("stage", "k1", _draws)
    seed_everything(2)
    before = _draws()
    seed_everything(2)
    b = cache.tensors("stage", "k1", _draws)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(before[k], v) for k, v in _draws().items())  # and it leaks no state
    other = cache.tensors("stage", "k2", _draws)
    assert not any(torch.equal(a[k], other[k]) for k in a)


def test_a_run_resumed_from_the_cache_draws_as_a_cold_run(tmp_path):
    def run():
        cache = C.ArtifactCache(tmp_path)
        seed_everything(0)
        first = cache.tensors("first", "k1", _draws)
        second = cache.tensors("second", "k2", _draws)
        return first, second, _draws()  # the last: uncached code after the stages
    cold = run()
    C.ArtifactCache(tmp_path).path("second", "k2", ".pt").unlink()  # interrupted after the first stage
    resumed = run()
    for a, b in zip(cold, resumed):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_artifact_cache_may_not_live_in_the_clean_data_cache():
    with pytest.raises(ValueError, match="clean-data cache"):
        C.ArtifactCache(paths.clean_cache_dir() / "poisons")


def test_wilson_interval():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_claims_are_computed_and_written_with_the_contract_columns(isolated_artifacts):
    res = Results("01_poison_frogs", "smoke", "poison_frogs")
    row = res.claim("PF-F5", "c", "success_rate", S.rate_test(95, 100, 0.8), paper_key="transfer_success_rate")
    assert row["measured"] == 0.95 and row["verdict"] == "holds" and row["paper"] == 1.0
    assert "Sec. 4.1.1" in row["source"] and row["setting"] == "" and row["test"].startswith("Wilson")
    # 9 of 10 cannot be told apart from 0.8: inconclusive, with the trials that would decide it
    row = res.claim("PF-F5", "c2", "success_rate", S.rate_test(9, 10, 0.8))
    assert row["verdict"] == "inconclusive" and row["n_needed"] > 10
    res.save_table(pd.DataFrame({"a": [1]}, index=["r"]), "PF-F5")
    res.save_table(pd.DataFrame({"a": [1]}, index=pd.Index([0.5], name="beta")), "PF-F8")
    df = pd.read_csv(res.write_claims())
    assert list(df.columns) == CLAIM_COLUMNS
    assert "PF-F5: table rows=['r'] columns=['a']" in res.regenerated()
    res.save_figure(plt.figure(), "PF-F5")  # a figure and a table may share an id
    assert "PF-F5: figure; table rows=['r'] columns=['a']" in res.regenerated()
    assert "PF-F8: table indexed by ['beta'] columns=['a']" in res.regenerated()
    # a sweep under named groups (DPA's k per dataset): the groups listed, the numbers only named,
    # so that smoke (k = 2, 5) and cpu (k = 50, 250) print the same line
    for ks in ((2, 5), (50, 250, 1000)):
        idx = pd.MultiIndex.from_product([["CIFAR-10", "MNIST"], ks], names=["dataset", "k"])
        res.save_table(pd.DataFrame({"a": range(len(idx))}, index=idx), "PF-F9")
        assert "PF-F9: table indexed by ['dataset', 'k'] with {'dataset': ['CIFAR-10', 'MNIST']} columns=['a']" \
            in res.regenerated()
