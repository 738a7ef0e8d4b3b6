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
    row = res.claim("PF-F5", "c", "success_rate", S.rate_test(95, 100, 0.8), paper_key="transfer_success_rate",
                    role="headline")
    assert row["measured"] == 0.95 and row["verdict"] == "holds" and row["paper"] == 1.0
    assert "Sec. 4.1.1" in row["source"] and row["setting"] == "" and row["test"].startswith("Wilson")
    # 9 of 10 cannot be told apart from 0.8: inconclusive, with the trials that would decide it
    row = res.claim("PF-F5", "c2", "success_rate", S.rate_test(9, 10, 0.8), role="supporting", key="small")
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


# ------------------------------------------------------------ the results contract: roles, preconditions, joints
def _res():
    return Results("11_abl", "smoke", "abl")


def test_a_claim_whose_precondition_fails_is_untested_whatever_its_own_test_says(isolated_artifacts):
    res = _res()
    floor = res.claim("ABL-2", "victims reach the floor", "clean accuracy", S.mean_test([0.33, 0.35, 0.31], 0.8),
                      role="supporting")
    assert floor["verdict"] == "fails"
    for k, successes in (("high", 95), ("low", 5), ("mid", 82)):  # would hold, fail, be inconclusive
        row = res.claim("ABL-2", "the attack succeeds", "asr", S.rate_test(successes, 100, 0.8), role="headline",
                        key=k, requires=[floor])
        assert row["verdict"] == "untested" and "ABL-2:clean-accuracy fails" in row["reason"]
        assert row["measured"] == successes / 100 and row["requires"] == "ABL-2:clean-accuracy"
    ok = res.claim("ABL-2", "victims reach the floor", "clean accuracy", S.mean_test([0.85, 0.86, 0.84], 0.8),
                   role="supporting", key="strong")
    assert res.claim("ABL-2", "c", "asr", S.rate_test(95, 100, 0.8), role="headline", key="ok",
                     requires=[ok])["verdict"] == "holds"
    frame = res.claims_frame()
    assert (frame.verdict == "untested").sum() == 3
    # untested claims are not in the headline family that Holm adjusts
    assert frame.p_holm[frame.verdict == "untested"].isna().all()


def test_a_joint_claim_cannot_hold_on_one_half_alone(isolated_artifacts):
    res = _res()
    removed = res.claim("ABL-2", "ASR falls", "asr with ABL", S.rate_test(0, 200, 0.1, "<"), role="supporting")
    kept = res.claim("ABL-2", "accuracy kept", "accuracy drop", S.mean_test([0.3, 0.35, 0.4], 0.05, "<"),
                     role="supporting")
    unsure = res.claim("ABL-2", "accuracy kept", "accuracy drop", S.mean_test([0.01, 0.09, 0.05], 0.05, "<"),
                       role="supporting", key="unsure")
    assert (removed["verdict"], kept["verdict"], unsure["verdict"]) == ("holds", "fails", "inconclusive")
    assert res.joint("ABL-2", "removed and kept", [removed, kept], role="headline")["verdict"] == "fails"
    assert res.joint("ABL-2", "removed and kept", [removed, unsure], role="headline", key="u")["verdict"] == "inconclusive"
    both = res.claim("ABL-2", "accuracy kept", "accuracy drop", S.mean_test([0.01, 0.02, 0.015], 0.05, "<"),
                     role="supporting", key="ok")
    joint = res.joint("ABL-2", "removed and kept", [removed, both], role="headline", key="ok")
    assert joint["verdict"] == "holds" and joint["p"] == max(removed["p"], both["p"])
    floor = res.claim("ABL-2", "floor", "clean accuracy", S.mean_test([0.3, 0.31, 0.29], 0.8), role="supporting")
    untested = res.claim("ABL-2", "ASR falls", "asr with ABL", S.rate_test(0, 200, 0.1, "<"), role="supporting",
                         key="weak", requires=[floor])
    assert res.joint("ABL-2", "j", [untested, both], role="headline", key="weak")["verdict"] == "untested"


def test_holm_demotes_a_headline_claim_that_holds_alone_but_not_in_its_family(isolated_artifacts):
    res = _res()
    # p about 0.02 alone (holds), beside three clearly null headline claims: Holm multiplies by 4
    strong = res.claim("X-1", "a", "m", S.rate_test(14, 20, 0.5), role="headline")
    assert strong["verdict"] == "holds" and 0.01 < strong["p"] < 0.05
    for k in "bcd":
        res.claim("X-1", k, "m", S.rate_test(10, 20, 0.5), role="headline", key=k)
    same_as_supporting = res.claim("X-1", "a", "m", S.rate_test(14, 20, 0.5), role="supporting", key="s")
    frame = res.claims_frame().set_index("id")
    assert frame.at["X-1:m", "verdict"] == "inconclusive" and "Holm" in frame.at["X-1:m", "reason"]
    assert frame.at["X-1:m", "p_holm"] == pytest.approx(min(1.0, 4 * strong["p"]))
    assert frame.at["X-1:m:s", "verdict"] == "holds" == same_as_supporting["verdict"]  # not in the family
    # written as adjusted
    assert pd.read_csv(res.write_claims()).set_index("id").at["X-1:m", "verdict"] == "inconclusive"


def test_claims_are_named_and_checked(isolated_artifacts):
    res = _res()
    d = S.rate_test(5, 10, 0.5)
    with pytest.raises(ValueError, match="role='main'"):
        res.claim("X-1", "a", "m", d, role="main")
    head = res.claim("X-1", "a", "m", d, role="headline")
    with pytest.raises(ValueError, match="already taken"):
        res.claim("X-1", "a", "m", d, role="headline")
    with pytest.raises(ValueError, match="must be supporting"):
        res.claim("X-1", "a", "m", d, role="headline", key="b", requires=[head])
    with pytest.raises(ValueError, match="at least two parts"):
        res.joint("X-1", "j", [head], role="headline")
    with pytest.raises(ValueError, match="rows returned"):
        res.claim("X-1", "a", "m", d, role="headline", key="c", requires=[{"id": "X-1:m", "role": "supporting"}])


def test_the_report_pairs_claims_by_id_not_by_order_or_text(isolated_artifacts, tmp_path):
    from poisonrepro.summary import compare_with
    def run(ks, verdict_of):
        rows = []
        for k in ks:
            rows.append({"notebook": "10_dpa", "id": f"DPA-2:certified:k{k}", "verdict": verdict_of[k],
                         "measured": k / 1000})
        return pd.DataFrame(rows)
    committed = run([50, 250], {50: "fails", 250: "holds"})
    smoke = run([250, 2], {250: "holds", 2: "fails"})   # another order, another setting
    out = compare_with(smoke.assign(**{c: "" for c in CLAIM_COLUMNS if c not in smoke}), 
                       committed.assign(**{c: "" for c in CLAIM_COLUMNS if c not in committed}))
    assert out.committed_verdict.tolist()[0] == "holds" and not out.changed.iloc[0]
    assert pd.isna(out.committed_verdict.iloc[1]) and out.changed.iloc[1]  # k = 2 is not k = 50


def test_claims_of_the_contract_before_roles_are_read_as_unmarked():
    from poisonrepro.results import CLAIM_COLUMNS_V1, upgrade
    old = pd.DataFrame([dict(zip(CLAIM_COLUMNS_V1, ["A-1", "c", "", "rate", 1, "", 0.5, 10, 0.3, 0.7, "> 0.5", "t",
                                                     0.5, "inconclusive", 20]))] * 2)
    new = upgrade(old)
    assert list(new.columns) == CLAIM_COLUMNS and new.id.tolist() == ["A-1:rate", "A-1:rate:2"]
    assert (new.role == "unmarked").all()
    with pytest.raises(ValueError, match="no known results contract"):
        upgrade(old.drop(columns="claim"))


def test_paired_outcomes_are_tested_as_pairs():
    # 10 targets: the attack flips 6, the clean victim of the same seed 1 (one of them both)
    attacked = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    clean = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    d = S.paired_rate_difference_test(attacked, clean)
    assert d.measured == pytest.approx(0.5) and d.test.startswith("paired Newcombe")
    assert d.p == pytest.approx(0.5 ** 5)       # exact McNemar: 5 discordant pairs, all one way
    assert d.verdict == "holds" and d.ci_low > 0
    same = S.paired_rate_difference_test(clean, clean)
    assert same.p == 1.0 and same.verdict != "holds"
    with pytest.raises(ValueError, match="paired outcomes"):
        S.paired_rate_difference_test(attacked, clean[:5])
