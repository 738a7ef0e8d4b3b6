"""The claims of notebooks 01 (Poison Frogs) and 02 (Convex Polytope) under the results contract of
issue 23, on planted per-target data (no training): roles, the accuracy-floor preconditions, the
units of the tests, and the defects of 02's claims (FC's bound with nothing transferring, a
chance-level substitute in the white-box diagnostic, targets counted as victims)."""
import pandas as pd
import pytest
import torch

from poisonrepro.config import load_config
from poisonrepro.papers.convex_polytope import report as CPR
from poisonrepro.papers.convex_polytope.experiments import METHODS, network_specs
from poisonrepro.papers.poison_frogs import report as PFR
from poisonrepro.results import Results

T = 40  # targets


# --------------------------------------------------------------------------- 02 Convex Polytope
# 3 substitutes, 2 gray-box and 2 black-box victims (the profiles' own lists change with their scale)
NETWORKS = dict(substitutes=("convnet_bn", "vgg11_standin", "regnetx_1_6gf_standin"),
                graybox_victims=("convnet_bn", "vgg11_standin"),
                blackbox_victims=("resnet18_standin", "efficientnet_b1_standin"))


def _cp_run(accuracy=None, success=None):
    """``NETWORKS`` at the smoke profile, with planted accuracies and per-target successes
    ``success[role] = {method: [T] bools}`` (default: none)."""
    cfg = load_config("convex_polytope", "smoke", n_targets=T, test_images=2000, **NETWORKS)
    specs = network_specs(cfg)
    accuracy = accuracy or {}
    networks = [{**s, "test_accuracy": accuracy.get(i, 0.9)} for i, s in enumerate(specs)]
    succ = torch.zeros(len(networks), len(METHODS), T, dtype=torch.bool)
    for i, planted in (success or {}).items():
        for method, values in planted.items():
            succ[i, METHODS.index(method)] = torch.as_tensor(values)
    acc = torch.full((len(networks), len(METHODS), T), 0.9)
    e2e = {"success": torch.zeros(1, 3, cfg.e2e_targets, dtype=torch.bool)}
    return cfg, networks, {"success": succ, "test_accuracy": acc}, e2e


def _role(role):
    """The indices of ``NETWORKS`` of ``role``."""
    return [i for i, s in enumerate(network_specs(load_config("convex_polytope", "smoke", **NETWORKS)))
            if s["role"] == role]


def _claims(res):
    return {c["id"]: c for c in res.claims}


def _record_cp(*args):
    res = Results("02_convex_polytope", "smoke", "convex_polytope")
    CPR.record_claims(*args, res)
    return res, _claims(res)


def test_02_roles_ids_and_the_floor_claims(isolated_artifacts):
    cfg, networks, tr, e2e = _cp_run()
    res, claims = _record_cp(cfg, networks, tr, e2e)
    headline = sorted(i for i, c in claims.items() if c["role"] == "headline")
    assert headline == ["CP-2:cp-success-rate:black-box", "CP-2:success-rate-difference-cp-fc:black-box"]
    floors = [c for c in res.claims if c["metric"] == "clean test accuracy"]
    assert len(floors) == len(networks) and all(c["verdict"] == "holds" and c["n"] == 2000 for c in floors)
    res.write_claims()  # Holm over the headline family, ids unique


def test_02_headline_claims_are_untested_where_a_black_box_victim_is_below_the_floor(isolated_artifacts):
    black = _role("black-box")
    cp_wins = {"convex_polytope": [True] * T}
    cfg, networks, tr, e2e = _cp_run(accuracy={black[0]: 0.3}, success={i: cp_wins for i in black})
    _, claims = _record_cp(cfg, networks, tr, e2e)
    for cid in ("CP-2:cp-success-rate:black-box", "CP-2:success-rate-difference-cp-fc:black-box"):
        assert claims[cid]["verdict"] == "untested"
        assert "resnet18" in claims[cid]["reason"]
    assert claims["CP-2:success-rate-difference-cp-fc:gray-box"]["verdict"] != "untested"


def test_02_fc_below_half_is_untested_where_nothing_transfers(isolated_artifacts):
    """The defect: nobody succeeds, so "FC stays below 50%" held although it tested nothing."""
    cfg, networks, tr, e2e = _cp_run()
    _, claims = _record_cp(cfg, networks, tr, e2e)
    fc = claims["CP-2:fc-success-rate:gray-and-black-box"]
    assert fc["verdict"] == "untested"
    assert "CP-2:success-rate-difference-cp-clean:gray-and-black-box" in fc["reason"]


def test_02_fc_below_half_is_decided_where_cp_transfers(isolated_artifacts):
    victims = _role("gray-box") + _role("black-box")
    planted = {"convex_polytope": [t % 4 != 0 for t in range(T)], "feature_collision": [t % 5 == 0 for t in range(T)]}
    cfg, networks, tr, e2e = _cp_run(success={i: planted for i in victims})
    _, claims = _record_cp(cfg, networks, tr, e2e)
    assert claims["CP-2:success-rate-difference-cp-clean:gray-and-black-box"]["verdict"] == "holds"
    assert claims["CP-2:fc-success-rate:gray-and-black-box"]["verdict"] == "holds"
    assert claims["CP-2:success-rate-difference-cp-fc:black-box"]["verdict"] == "holds"
    # the target is the unit: 40 targets, not 2 victims x 40
    assert claims["CP-2:success-rate-difference-cp-fc:black-box"]["n"] == T


def test_02_white_box_diagnostic_leaves_out_a_chance_level_substitute(isolated_artifacts):
    """The defect: a substitute at chance (10%) whose clean fine-tuning already "misclassifies" every
    target was pooled into the diagnostic and cancelled the working substitutes' effect."""
    subs = _role("substitute")
    half = [t % 2 == 0 for t in range(T)]
    success = {subs[0]: {"convex_polytope": half}, subs[2]: {"convex_polytope": half},
               subs[1]: {"clean": [True] * T, "feature_collision": [True] * T}}
    cfg, networks, tr, e2e = _cp_run(accuracy={subs[1]: 0.1}, success=success)
    _, claims = _record_cp(cfg, networks, tr, e2e)
    diag = claims["CP-2:success-rate-difference-cp-clean:white-box"]
    assert diag["verdict"] == "holds" and diag["n"] == T
    assert "2 of 3 substitutes" in diag["setting"]
    assert "vgg11" not in diag["requires"]


def test_02_clean_accuracy_bound_counts_victims_not_targets(isolated_artifacts):
    """The defect: 4 victims x 30 targets entered the t-test as 120 independent values."""
    cfg, networks, tr, e2e = _cp_run()
    victims = [i for i, n in enumerate(networks) if n["role"] != "substitute"]
    drops = torch.tensor([0.001, 0.004, 0.002, 0.003])[:, None]
    tr["test_accuracy"][victims, METHODS.index("convex_polytope")] -= drops
    _, claims = _record_cp(cfg, networks, tr, e2e)
    acc = claims["CP-2:clean-accuracy-poisoned-clean-victim"]
    assert acc["n"] == len(victims) == 4
    assert "the unit is the victim" in acc["setting"]
    assert acc["measured"] == pytest.approx(-0.0025, abs=1e-6) and acc["verdict"] == "holds"


# --------------------------------------------------------------------------- 01 Poison Frogs
def _pf_run(own_task=(900, 1000), victim_acc=0.9, scratch_acc=0.9, transfer_hits=None, upsampled=False):
    cfg = load_config("poison_frogs", "smoke")
    n, k, counts = T, 30, [1, 4]
    hits = torch.as_tensor(transfer_hits if transfer_hits is not None else [True] * n)
    main = {"success": hits, "linf_255": torch.full((n,), 2.0), "wrong_conf": torch.full((n,), 0.95),
            "control_wrong_conf": torch.full((n,), 0.02) + torch.linspace(0, 0.01, n),
            "clean_acc": torch.full((n,), 0.9),
            "clean_acc_poisoned": torch.full((n,), 0.9) - torch.linspace(0, 1e-3, n),
            "own_task_correct": torch.tensor(own_task[0]), "own_task_images": torch.tensor(own_task[1]),
            "own_task": "its own task (planted)"}
    e2e = {"test_images": torch.tensor(200), "clean_acc_victim": torch.tensor(victim_acc),
           "scratch_clean_acc": torch.full((k,), scratch_acc) + torch.linspace(0, 0.02, k),
           "opacities": torch.tensor([0.3]), "counts": torch.tensor(counts), "targets": torch.arange(k),
           "success": torch.stack([torch.zeros(k, dtype=torch.bool), torch.arange(k) % 2 == 0])[None],
           "linf_255_anchor": torch.zeros(1, k, max(counts)), "single": torch.zeros(k, dtype=torch.bool),
           "scratch_single": torch.zeros(k, dtype=torch.bool)}
    t5 = pd.DataFrame({"resolution": [32, 32], "beta_multiplier": [1.0, 0.1], "success_rate": [0.5, 0.6],
                       "targets": [n, n]})
    up = {"success": torch.zeros(10, dtype=torch.bool), "linf_255": torch.zeros(10)} if upsampled else None
    return cfg, main, e2e, t5, up


def _record_pf(cfg, main, e2e, t5, up):
    res = Results("01_poison_frogs", "smoke", "poison_frogs")
    PFR.record_claims(cfg, res, main, e2e, t5, up, "planted")
    return res, _claims(res)


PF_HEADLINE = ["FC-1:success-transfer-clean-label-success-from-scratch",
               "PF-F5:clean-label-success-rate", "PF-F8:change-of-success-rate-over-the-sweep-of-poisons"]


def test_01_roles_and_preconditions_when_every_network_reaches_the_floor(isolated_artifacts):
    res, claims = _record_pf(*_pf_run())
    assert sorted(i for i, c in claims.items() if c["role"] == "headline") == PF_HEADLINE
    assert claims["PF-F5:extractor-own-task-accuracy"]["verdict"] == "holds"
    assert claims["PF-F5:extractor-own-task-accuracy"]["n"] == 1000
    scratch = claims["FC-1:from-scratch-victims-clean-accuracy"]
    assert scratch["verdict"] == "holds" and scratch["n"] == 30  # one victim per seed, not test images
    assert claims["PF-F5:clean-label-success-rate"]["verdict"] == "holds"
    assert claims["PF-F8:change-of-success-rate-over-the-sweep-of-poisons"]["verdict"] == "holds"
    assert all(c["verdict"] != "untested" for c in res.claims)
    res.write_claims()


def test_01_claims_on_an_extractor_below_the_floor_are_untested(isolated_artifacts):
    _, claims = _record_pf(*_pf_run(own_task=(600, 1000)))
    for cid in ("PF-F5:clean-label-success-rate", "FC-1:success-transfer-clean-label-success-from-scratch",
                "PF-F5:mean-control-wrong-confidence"):
        assert claims[cid]["verdict"] == "untested", cid
        assert "PF-F5:extractor-own-task-accuracy" in claims[cid]["reason"]
    # the project's diagnostics of the poisons stay decided
    assert claims["PF-F5:share-of-poisons-within-gate"]["verdict"] == "holds"
    # the end-to-end headline depends on the end-to-end victim only
    assert claims["PF-F8:change-of-success-rate-over-the-sweep-of-poisons"]["verdict"] == "holds"


def test_01_end_to_end_and_scratch_claims_need_their_own_victims_floor(isolated_artifacts):
    _, claims = _record_pf(*_pf_run(victim_acc=0.6, scratch_acc=0.5))
    assert claims["PF-F8:change-of-success-rate-over-the-sweep-of-poisons"]["verdict"] == "untested"
    assert claims["FC-1:success-transfer-clean-label-success-from-scratch"]["verdict"] == "untested"
    assert claims["PF-F5:clean-label-success-rate"]["verdict"] == "holds"


def test_01_an_extractor_that_cannot_be_checked_leaves_the_transfer_headline_untested(isolated_artifacts):
    _, claims = _record_pf(*_pf_run(own_task=(0, 0)))
    assert claims["PF-F5:extractor-own-task-accuracy"]["verdict"] == "inconclusive"
    assert claims["PF-F5:clean-label-success-rate"]["verdict"] == "untested"


def test_01_upsampled_comparison_is_paired_per_target(isolated_artifacts):
    _, claims = _record_pf(*_pf_run(upsampled=True))
    row = claims["PF-F5:clean-label-success-upsampled-success-32x32-same-targets"]
    assert "McNemar" in row["test"] and row["n"] == 10


def test_02_cpu_profile_is_sized_by_its_power_analysis():
    """The cpu profile gives CP beats FC 80% power at Holm's level; "more than 50%" is shown as
    unpowerable (the paper's own black-box mean is below the threshold), not sized."""
    table = CPR.power_analysis(load_config("convex_polytope", "cpu"))
    holm = [c for c in table.columns if c.startswith("power at 0.025")][0]
    assert table.loc["CP beats FC on black-box victims", holm] >= 0.8
    assert table.loc["CP succeeds more than 50% of the time (black-box)", holm] < 0.05
    assert table.loc["CP succeeds more than 50% of the time (black-box)"].filter(like="units for").item() == float("inf")
