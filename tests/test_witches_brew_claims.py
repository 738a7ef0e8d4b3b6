"""Notebook 04's claims (WB-T1) under the results contract of issue 23: the design is paired
(every attack's victim of a setup and architecture and its clean victim share one seed), so
success is tested per setup and seed (McNemar) and clean accuracy over the seeds (the independent
unit), never over victims pooled from near-identical sets; the victims must reach the accuracy
floor; the headline family is small. Planted outcomes, no training."""
import numpy as np
import pytest
import torch

from poisonrepro import stats as S
from poisonrepro.config import load_config
from poisonrepro.config.witches_brew import ATTACKS
from poisonrepro.papers.witches_brew import experiments as E
from poisonrepro.papers.witches_brew import report as R
from poisonrepro.results import Results

K1 = ATTACKS.index("gradient_matching_K1")


STANDINS = ("resnet18_standin", "mobilenet_v2_standin", "vgg11_standin")


def _cfg():  # 7 attacks x 3 stand-in architectures x 10 setups
    return load_config("witches_brew", "cpu", attacks=ATTACKS, victims=STANDINS, crafting_networks="standins")


def _outcomes(cfg, seed=0, accuracy=0.9):
    """Victims that reach the floor, every attack at its clean base rate of about 10%."""
    g = torch.Generator().manual_seed(seed)
    a, v, t = len(cfg.attacks), len(cfg.victims), cfg.n_targets
    clean = torch.rand(v, t, generator=g) < 0.1
    return {"success": clean.expand(a, v, t).clone(), "clean_success": clean,
            "clean_patched_success": clean[:, None].expand(v, 2, t).clone(),
            "clean_accuracy": accuracy + 0.02 * torch.rand(v, t, generator=g),
            "poisoned_accuracy": accuracy + 0.02 * torch.rand(a, v, t, generator=g)}


def _claims(cfg, vic):
    res = Results("04_witches_brew", "smoke", "witches_brew")
    R.record_claims(cfg, vic, res)
    return res, {c["id"]: c for c in res.claims}


def test_gradient_matching_is_compared_with_the_clean_victim_of_the_same_seed():
    """The clean victim of a setup fails on the same targets as the attacked one, plus 6 that only
    the attack moves: paired, 6 discordant pairs all one way (McNemar p = 1/64) holds; pooled as
    two independent samples (18/30 against 12/30, Fisher) it would be inconclusive."""
    cfg = _cfg()
    vic = _outcomes(cfg)
    base = torch.zeros(3, 10, dtype=torch.bool)
    base[:, :4] = True                       # 12 of the 30 seeds: the target falls without poisons
    attacked = base.clone()
    attacked[:, 4:6] = True                  # 6 more with the K=1 poisons
    vic["clean_success"], vic["success"][K1] = base, attacked
    _, claims = _claims(cfg, vic)
    row = claims["WB-T1:success-rate-difference-attack-clean-victims:gradient-matching-k1"]
    assert "McNemar" in row["test"] and row["n"] == 30  # 30 pairs, not 60 victims
    assert row["verdict"] == "holds" and row["p"] == pytest.approx(1 / 64)
    assert S.rate_difference_test(18, 30, 12, 30).verdict == "inconclusive"  # what the unpaired test said


def test_k1_against_each_baseline_is_paired_by_seed():
    cfg = _cfg()
    vic = _outcomes(cfg)
    fc = ATTACKS.index("feature_collision")
    vic["success"][fc] = False
    vic["success"][fc, :, :3] = True
    vic["success"][K1] = vic["success"][fc].clone()
    vic["success"][K1, :, 3:5] = True        # K=1 wins on 6 seeds, loses on none
    _, claims = _claims(cfg, vic)
    row = claims["WB-T1:success-rate-difference-gradient-matching-k1-baseline:feature-collision"]
    assert "McNemar" in row["test"] and row["n"] == 30 and row["verdict"] == "holds"
    assert row["paper"] == pytest.approx(0.2834)


def test_clean_accuracy_is_tested_over_the_seeds_not_over_victims_of_near_identical_sets():
    """The seeds differ by up to 12 points, and every poisoned victim is 1 point below the clean
    victim of its seed: over the seeds (paired t, 10 per architecture) clearly within 2 points;
    70 poisoned victims against 10 clean ones as independent samples (Welch) cannot tell."""
    cfg = _cfg()
    vic = _outcomes(cfg)
    g = torch.Generator().manual_seed(1)
    per_seed = 0.82 + 0.12 * torch.rand(3, 10, generator=g)
    vic["clean_accuracy"] = per_seed
    vic["poisoned_accuracy"] = per_seed - 0.01 + 0.001 * torch.randn(7, 3, 10, generator=g)
    _, claims = _claims(cfg, vic)
    for arch in ("resnet18", "mobilenet-v2", "vgg11"):
        row = claims[f"WB-T1:clean-accuracy-poisoned-clean-victims:{arch}"]
        assert row["test"] == "paired t bound" and row["n"] == 10 and row["verdict"] == "holds"
    welch = S.mean_difference_test(vic["poisoned_accuracy"][:, 0].flatten().numpy(), per_seed[0].numpy(), -0.02)
    assert welch.verdict == "inconclusive"
    headline = claims["WB-T1:clean-accuracy-poisoned-clean-victims:gradient-matching"]
    assert headline["n"] == 30 and headline["role"] == "headline" and headline["verdict"] == "holds"


def test_an_architecture_at_chance_leaves_its_claims_untested():
    """MobileNet-V2's victims at chance keep their (chance) accuracy trivially: with the floor,
    that claim is untested, and so is every average over the architectures."""
    cfg = _cfg()
    vic = _outcomes(cfg)
    vic["clean_accuracy"][1] = 0.10 + 0.005 * torch.rand(10)
    vic["poisoned_accuracy"][:, 1] = 0.10 + 0.005 * torch.rand(7, 10)
    res, claims = _claims(cfg, vic)
    assert claims["WB-T1:clean-test-accuracy-of-the-clean-victims:mobilenet-v2"]["verdict"] == "fails"
    assert claims["WB-T1:clean-test-accuracy-of-the-clean-victims:resnet18"]["verdict"] == "holds"
    mobilenet = claims["WB-T1:clean-accuracy-poisoned-clean-victims:mobilenet-v2"]
    assert mobilenet["verdict"] == "untested" and "mobilenet-v2" in mobilenet["reason"]
    assert claims["WB-T1:clean-accuracy-poisoned-clean-victims:resnet18"]["verdict"] == "holds"
    frame = res.claims_frame()
    assert (frame[frame.role == "headline"].verdict == "untested").all()


def test_the_headline_family_is_small_and_every_other_claim_supporting():
    cfg = _cfg()
    res, claims = _claims(cfg, _outcomes(cfg))
    headline = sorted(i for i, c in claims.items() if c["role"] == "headline")
    assert headline == ["WB-T1:clean-accuracy-poisoned-clean-victims:gradient-matching",
                        "WB-T1:joint:k1-vs-base-rate-and-baselines"]
    joint = claims["WB-T1:joint:k1-vs-base-rate-and-baselines"]
    assert joint["requires"].split() == (
        ["WB-T1:success-rate-difference-attack-clean-victims:gradient-matching-k1"]
        + [f"WB-T1:success-rate-difference-gradient-matching-k1-baseline:{b}" for b in
           ("feature-collision", "convex-polytope", "clean-label-backdoor", "hidden-trigger-backdoor")])
    floors = {f"WB-T1:clean-test-accuracy-of-the-clean-victims:{a}" for a in ("resnet18", "mobilenet-v2", "vgg11")}
    for cid, c in claims.items():  # every claim but the floors (and the joint, through its parts) needs them
        if cid not in floors and c["metric"] != "joint":
            assert set(c["requires"].split()) & floors, cid
    # the ids are the same at every profile: the stand-ins carry their architecture's name
    paper = load_config("witches_brew", "paper")
    paper_res, paper_claims = _claims(paper, _outcomes(paper))
    assert set(paper_claims) == set(claims)
    # at cpu (K=1 and Poison Frogs on ConvNet-BN, standing in for the ResNet-18 column) the same
    # two headlines, the joint over the base rate and the one baseline
    cpu = load_config("witches_brew", "cpu")
    _, cpu_claims = _claims(cpu, _outcomes(cpu))
    assert sorted(i for i, c in cpu_claims.items() if c["role"] == "headline") == headline
    assert cpu_claims["WB-T1:joint:k1-vs-base-rate-and-baselines"]["requires"].split() == [
        "WB-T1:success-rate-difference-attack-clean-victims:gradient-matching-k1",
        "WB-T1:success-rate-difference-gradient-matching-k1-baseline:feature-collision"]
    assert set(cpu_claims) < set(claims)  # every cpu claim id exists at paper, keyed by the paper's column


def test_the_clean_victims_share_the_seeds_of_the_poisoned_victims(monkeypatch):
    """Each setup's clean victim trains with the seed of that setup's poisoned victims (the pairs
    the claims test), once per architecture and setup, and calls its own setup's target."""
    cfg = load_config("witches_brew", "smoke", n_targets=3)
    seen = []

    def fake_run_trials(trials, cache, desc=""):
        seen.extend(trials)
        return [{"test_accuracy": torch.tensor(0.5), "prediction": torch.tensor([0]),
                 "patched_prediction": torch.zeros(len(t.spec["probes"]["locations"]), 1, dtype=torch.long)}
                for t in trials]
    monkeypatch.setattr(E, "run_trials", fake_run_trials)
    data = {"target_index": np.array([11, 22, 33]), "adversarial": np.array([0, 1, 0]),
            "base_pos": np.zeros((3, cfg.n_poisons), dtype=int)}
    vic = E.victims(cfg, data, cache=None)
    assert {t.fn for t in seen} == {"poisonrepro.evaluation:evaluation_trial"}  # the shared trial
    clean = [t.spec for t in seen if t.spec["poisons"] is None]
    poisoned = [t.spec for t in seen if t.spec["poisons"] is not None]
    assert len(clean) == len(cfg.victims) * cfg.n_targets
    for c in clean:
        same = [p for p in poisoned if p["learner"] == c["learner"] and p["probes"]["targets"] == c["probes"]["targets"]]
        assert len(same) == len(cfg.attacks) and {p["seed"] for p in same} == {c["seed"]}
    assert vic["clean_success"].shape == vic["clean_accuracy"].shape == (len(cfg.victims), cfg.n_targets)
    assert vic["clean_success"][:, [0, 2]].all() and not vic["clean_success"][:, 1].any()
