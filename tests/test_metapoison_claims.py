"""Notebook 03 (MP-1) under issue 23: crafting sees the poisons at the share the victims see
(the unrolled batch holds the training set's share, not every poison at once), and the claims
follow the results contract: the victims must reach the accuracy floor, the comparisons with the
clean victims of the same seeds are paired, the headline family is the paper's main result, and
the fine-tuning comparison says that its perturbations differ. Planted outcomes, no training."""
import pytest
import torch

from poisonrepro import stats as S
from poisonrepro.attacks import metapoison as MP
from poisonrepro.cache import ArtifactCache
from poisonrepro.config import load_config
from poisonrepro.papers.metapoison import experiments as E
from poisonrepro.papers.metapoison import report as R
from poisonrepro.results import Results

#: the unrolled batch's poison share may differ from the training set's by at most one image of
#: the batch: the share rounded to whole poisons, at least one (as in any batch that holds a poison)
SHARE_TOLERANCE = 1 / E.BATCH


class _Recorded(Exception):
    pass


def _poisons_per_unrolled_batch(monkeypatch, cfg, stage: str, budget: float) -> int:
    """What ``experiments.craft`` / ``finetune`` ask MetaPoison for, on fake data (stops there)."""
    seen = {}

    def fake_metapoison(*args, **kwargs):
        seen.update(kwargs)
        raise _Recorded
    monkeypatch.setattr(E.MP, "metapoison", fake_metapoison)
    monkeypatch.setattr(E.MP, "StaggeredEnsemble", lambda *a, **k: None)
    monkeypatch.setattr(E.EV, "cifar10_test_set", lambda count: (None, None))
    n = 10 * cfg.train_per_class
    y = torch.arange(n) % 10
    data = {"train_x": torch.zeros(1, 3, 32, 32, dtype=torch.uint8).expand(n, 3, 32, 32), "train_y": y,
            "poison_pos": torch.nonzero(y == 5).flatten(), "targets": torch.zeros(cfg.n_targets, 3, 32, 32),
            "target_label": 2, "poison_label": 5}
    with pytest.raises(_Recorded):
        if stage == "craft":
            E.craft(cfg, data, surrogates=None, budget=budget, cache=ArtifactCache(enabled=False))
        else:
            E.finetune(cfg, data, net=torch.nn.Identity(), cache=ArtifactCache(enabled=False))
    return seen["poisons_per_batch"]


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_the_unrolled_batch_holds_the_poisons_at_the_training_sets_share(monkeypatch, profile):
    """MetaPoison's code unrolls the batches of an epoch, which hold the poisons at the share of
    the training set, as the victims' batches do; all of a target's poisons in one batch of 125
    (20 of 125 = 16% at cpu's 1%) would weigh them 16 times as much as any victim does."""
    cfg = load_config("metapoison", profile)
    n = 10 * cfg.train_per_class
    for stage, budget in [("craft", b) for b in cfg.budgets] + [("finetune", cfg.finetune_budget)]:
        per_batch = _poisons_per_unrolled_batch(monkeypatch, cfg, stage, budget)
        k = cfg.poisons_at(budget)
        assert 1 <= per_batch <= k
        assert abs(per_batch / E.BATCH - k / n) <= SHARE_TOLERANCE, (stage, budget, per_batch, k, n)


def test_the_share_rule_rounds_to_whole_poisons_and_keeps_at_least_one():
    assert MP.poisons_per_unrolled_batch(500, 50_000, 125) == 1       # 1.25 expected per batch
    assert MP.poisons_per_unrolled_batch(2_000, 50_000, 125) == 5     # 4%
    assert MP.poisons_per_unrolled_batch(2, 2_000, 125) == 1          # 0.125: at least one
    assert MP.poisons_per_unrolled_batch(3, 10, 125) == 3             # never more than there are
    with pytest.raises(ValueError):
        MP.poisons_per_unrolled_batch(0, 2_000, 125)


def test_the_plan_counts_one_unrolled_pass_per_batch_of_poisons():
    cfg = load_config("metapoison", "cpu")
    rows = {r["stage"]: r for r in E.plan(cfg)}
    assert rows["craft 1%"]["basis"].endswith("20 unrolled batches")
    assert rows["craft 1%"]["flops_per_trial"] > 5 * rows["craft 0.1%"]["flops_per_trial"]


# --------------------------------------------------------------------------- claims
def _cfg():
    return load_config("metapoison", "cpu")  # 3 budgets x 4 targets x 3 seeds; 3 fine-tuning targets


def _outcomes(cfg, accuracy=0.9, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, t, s = len(cfg.budgets), cfg.n_targets, cfg.victim_seeds
    vic = {"success": torch.zeros(b, t, s, dtype=torch.bool), "clean_success": torch.zeros(s, t, dtype=torch.bool),
           "accuracy": accuracy + 0.01 * torch.rand(b, t, s, generator=g),
           "clean_accuracy": accuracy + 0.01 * torch.rand(s, generator=g)}
    ft = {"success": torch.zeros(3, cfg.finetune_targets, s, dtype=torch.bool),
          "accuracy": accuracy + 0.01 * torch.rand(3, cfg.finetune_targets, s, generator=g),
          "linf_255": torch.stack([torch.full((cfg.finetune_targets, 20), v) for v in (38.9, 60.8)])}
    return vic, ft


def _claims(cfg, vic, ft):
    res = Results("03_metapoison", "smoke", "metapoison")
    R.record_claims(cfg, vic, ft, res)
    return res, {c["id"]: c for c in res.claims}


def test_the_base_rate_comparison_is_paired_with_the_clean_victim_of_each_seed():
    """The clean victim of seed j calls target t a dog exactly where the poisoned one does, but on
    5 more (target, seed) pairs the poisons do it: 5 discordant pairs, all one way (McNemar p =
    1/32)."""
    cfg = _cfg()
    vic, ft = _outcomes(cfg)
    vic["clean_success"][:, :2] = True                 # targets 0, 1 fall without poisons, every seed
    vic["success"][-1] = vic["clean_success"].T.clone()
    vic["success"][-1, 2, :] = True
    vic["success"][-1, 3, :2] = True
    _, claims = _claims(cfg, vic, ft)
    row = claims["MP-1:success-rate-difference-poisoned-clean-victims"]
    assert "McNemar" in row["test"] and row["n"] == cfg.n_targets * cfg.victim_seeds
    assert row["p"] == pytest.approx(1 / 32) and row["verdict"] == "holds"


def test_clean_accuracy_is_compared_per_seed():
    """Seeds 9 points apart, every poisoned victim half a point below the clean victim of its
    seed: over the 3 seeds (paired t) within 2 points; 36 poisoned against 3 clean victims as
    independent samples (Welch) could not tell."""
    cfg = _cfg()
    vic, ft = _outcomes(cfg)
    per_seed = torch.tensor([0.86, 0.90, 0.95])
    vic["clean_accuracy"] = per_seed
    vic["accuracy"] = per_seed - 0.005 + 0.001 * torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(0))
    _, claims = _claims(cfg, vic, ft)
    row = claims["MP-1:clean-accuracy-poisoned-clean-victims"]
    assert row["test"] == "paired t bound" and row["n"] == 3 and row["verdict"] == "holds"
    assert R.per_seed_accuracy(vic["accuracy"]) == pytest.approx(per_seed.numpy() - 0.005, abs=0.002)
    welch = S.mean_difference_test(vic["accuracy"].flatten().numpy(), per_seed.numpy(), R.ACCURACY_MARGIN)
    assert welch.verdict == "inconclusive"


def test_victims_below_the_accuracy_floor_leave_every_claim_untested():
    cfg = _cfg()
    vic, ft = _outcomes(cfg, accuracy=0.4)          # the cpu run's victims: 37-40% clean accuracy
    vic["success"][:] = True
    res, claims = _claims(cfg, vic, ft)
    assert claims["MP-1:clean-test-accuracy-of-the-clean-victims"]["verdict"] == "fails"
    for cid, c in claims.items():
        if "clean-test-accuracy" not in cid:
            assert c["verdict"] == "untested" and "accuracy" in c["reason"], cid


def test_the_headline_family_is_the_papers_main_result():
    cfg = _cfg()
    res, claims = _claims(cfg, *_outcomes(cfg))
    assert sorted(i for i, c in claims.items() if c["role"] == "headline") == [
        "MP-1:success-rate", "MP-1:success-rate-difference-poisoned-clean-victims"]
    assert claims["MP-1:success-rate"]["paper"] == pytest.approx(0.9)
    assert len(claims) == 7


def test_the_fine_tuning_comparison_states_that_the_perturbations_differ():
    cfg = _cfg()
    vic, ft = _outcomes(cfg)
    _, claims = _claims(cfg, vic, ft)
    row = claims["MP-1:success-rate-difference-metapoison-poison-frogs-fine-tuning"]
    assert "not at an equal perturbation" in row["claim"] and row["role"] == "supporting"
    assert "MetaPoison 38.9/255" in row["setting"] and "Poison Frogs 60.8/255" in row["setting"]
    assert "McNemar" in row["test"] and row["n"] == cfg.finetune_targets * cfg.victim_seeds
    assert row["requires"] == "MP-1:clean-test-accuracy-of-the-fine-tuned-clean-victims"
