"""Notebook 14 (Transferable Unlearnable Examples): its config, the correspondences of Tables 2, 5
and 6 (swaps, transfer with interpolation), the victim grid, the protections' budgets and the claims
on planted results."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from poisonrepro.config import ConfigError, load_config
from poisonrepro.config.tue import METHODS
from poisonrepro.learners import contrastive as C
from poisonrepro.papers.tue import correspondence as CO
from poisonrepro.papers.tue import experiments as E
from poisonrepro.papers.tue import report as R
from poisonrepro.results import Results

pytestmark = pytest.mark.usefixtures("one_thread")
PAPER = "tue"


# --------------------------------------------------------------------------- bad input, before compute
@pytest.mark.parametrize("overrides, match", [
    ({"eps": 8}, r"eps=8: perturbation budgets are on the \[0, 1\] pixel scale; did you mean 8/255"),
    ({"step_size": 0.8}, r"step_size=0.8: a PGD step must not exceed the budget eps=0.031373"),
    ({"methods": ("sn", "tue")}, r"the headline claims need emn"),
    ({"methods": ("emn", "sn", "tue", "cp-c")}, r"methods='cp-c': allowed values are 'emn'"),
    ({"ssl_learners": ("byol",)}, r"ssl_learners='byol': allowed values are 'simclr'"),
    ({"ssl_learners": ("moco_v2",)}, r"the headline tests SimCLR"),
    ({"swap_methods": ("emn", "ucl"), "methods": ("emn", "sn", "tue")}, r"ucl not among methods"),
    ({"separability_models": ("two_layer",)}, r"the claim uses 'linear'"),
    ({"tue_ssl_weight": 0.0, "tue_csd_weight": 0.0}, r"no objective"),
    ({"step_size": 9 / 255}, r"must not exceed the budget eps"),
    ({"victim_seeds": 2}, r"victim_seeds=2: .*the cpu profile needs at least 3"),
    ({"train_per_class": 0}, r"train_per_class=0: must lie in \[1, 4900\]"),
])
def test_the_config_refuses_bad_input(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(PAPER, "cpu", **overrides)


def test_a_protection_of_unknown_kind_is_refused_before_the_data_are_loaded(monkeypatch):
    monkeypatch.setattr(E.EV, "cifar10_training_set", lambda per_class: pytest.fail("loaded the data"))
    with pytest.raises(ValueError, match=r"protection kind='uc': unknown; allowed: emn, sn"):
        E.protection_trial(kind="uc", per_class=1, seed=0, eps=8 / 255, step_size=0.8 / 255)


# --------------------------------------------------------------------------- correspondences
def _labels():
    return torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])


def test_the_intra_class_swap_gives_each_image_a_perturbation_of_its_own_class():
    y = _labels()
    source = CO.swap_sources(y, "intra", seed=1)
    assert sorted(source.tolist()) == list(range(len(y)))  # a permutation: every perturbation used once
    assert (y[source] == y).all()
    assert (source != torch.arange(len(y))).any()
    assert torch.equal(CO.swap_sources(y, "original"), torch.arange(len(y)))


def test_the_inter_class_swap_moves_every_class_to_another_consistently():
    y = _labels()
    source = CO.swap_sources(y, "inter", seed=2)
    assert sorted(source.tolist()) == list(range(len(y)))
    donor = {int(c): set(y[source[y == c]].tolist()) for c in y.unique()}
    assert all(len(d) == 1 for d in donor.values())  # one donor class per class: a class-wise mapping
    assert all(c not in d for c, d in donor.items())  # never its own
    assert torch.equal(source, CO.swap_sources(y, "inter", seed=2))
    with pytest.raises(ValueError, match=r"swap='rotate': allowed: original, intra, inter"):
        CO.swap_sources(y, "rotate")


def test_a_swap_keeps_a_class_wise_shortcut_and_breaks_a_sample_wise_one(isolated_artifacts):
    """Planted: class-wise noise (the same pattern for a class) survives intra, not sample-wise
    noise's pairing; inter keeps every class's images sharing one pattern."""
    y = _labels()
    x = torch.full((len(y), 3, 4, 4), 100, dtype=torch.uint8)
    levels = torch.zeros(len(y), 3, 4, 4, dtype=torch.int8)
    levels[:, 0, 0, 0] = (y * 3).to(torch.int8)  # class-wise pattern
    levels[:, 1, 0, 0] = torch.arange(len(y), dtype=torch.int8)  # a sample-wise tag
    artifact = {"delta_levels": levels, "by_class": torch.tensor(False), "groups": torch.arange(len(y)),
                "eps": torch.tensor(16 / 255)}
    from poisonrepro.cache import ArtifactCache
    ArtifactCache().tensors("protections", "planted", lambda: artifact)  # stored as a crafting stage would
    intra = CO.swapped_training_set(x, y, stage="protections", key="planted", swap="intra", seed=1)[0]
    assert torch.equal(intra[:, 0, 0, 0], 100 + 3 * y.to(torch.uint8))  # the class pattern kept
    assert not torch.equal(intra[:, 1, 0, 0], 100 + torch.arange(len(y), dtype=torch.uint8))  # the tags moved
    inter = CO.swapped_training_set(x, y, stage="protections", key="planted", swap="inter", seed=1)[0]
    for c in range(3):
        assert len(set(inter[y == c, 0, 0, 0].tolist())) == 1  # still one pattern per class
    assert not torch.equal(inter[:, 0, 0, 0], 100 + 3 * y.to(torch.uint8))


def test_transfer_maps_class_by_class_and_interpolates_within_the_budget():
    source_y = torch.tensor([0, 0, 1, 1])
    levels = torch.zeros(4, 1, 2, 2, dtype=torch.int8)
    levels[0], levels[1], levels[2], levels[3] = 8, -8, 3, 5
    target_y = torch.tensor([1, 0, 0, 0, 0, 1, 1])  # class 0 larger than its source: interpolants
    out = CO.transfer_levels(levels, source_y, target_y, seed=0)
    assert out.dtype == torch.int8 and out.shape == (7, 1, 2, 2)
    assert out[target_y == 1].float().min() >= 3 and out[target_y == 1].float().max() <= 5  # class 1's range
    assert out.abs().max() <= 8  # a convex mix of in-budget levels stays in budget
    assert len(set(out[target_y == 0, 0, 0, 0].tolist()) - {8, -8}) >= 1  # at least one interpolant
    with pytest.raises(ValueError, match=r"target classes \[2\] have no source class"):
        CO.transfer_levels(levels, source_y, torch.tensor([2]))


def test_interpolation_is_a_convex_mix():
    delta = torch.tensor([[0.0], [1.0]])
    mixed, t = CO.interpolate(delta, 50, torch.Generator().manual_seed(0))
    assert mixed.min() >= 0 and mixed.max() <= 1 and t.shape == (50,)


# --------------------------------------------------------------------------- learners
def test_batched_views_are_seeded_augmentations_in_range():
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    a1, a2 = C.batched_views(x, torch.Generator().manual_seed(0))
    b1, b2 = C.batched_views(x, torch.Generator().manual_seed(0))
    assert a1.shape == x.shape and torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2) and a1.min() >= 0 and a1.max() <= 1
    with pytest.raises(ValueError, match=r"views='kornia': allowed: per_image, batched"):
        C.SimCLRLearner(arch="convnet_bn", views="kornia")


# --------------------------------------------------------------------------- the grid and the plan
def test_the_cpu_grid_is_the_one_the_estimate_and_the_plan_count():
    cfg = load_config(PAPER, "cpu")
    keys = {m: f"key-{m}" for m in METHODS}
    grid = E.arms(cfg, keys)
    counts = {arm: len(t) for arm, t in grid.items()}
    assert counts["sup:clean"] == counts["simclr:clean"] == counts["simclr:tue"] == counts["simclr:emn"] == 3
    assert counts["random_features:clean"] == 3 and counts["simclr:sn"] == counts["simclr:ucl"] == 1
    supervised = sum(c for a, c in counts.items() if a.startswith("sup:"))
    assert supervised == 3 + 9 + 6  # the config's docstring
    assert sum(c for a, c in counts.items() if a.startswith("transfer:")) == 4
    assert sum(c for a, c in counts.items() if a.startswith("simclr:")) == 11
    seeds = lambda arm: [t.spec["seed"] for t in grid[arm]]  # noqa: E731
    assert seeds("simclr:clean") == seeds("simclr:tue") == seeds("random_features:clean")  # paired by seed
    swap = grid["sup:emn:intra"][0].spec["poisons"]
    assert swap["producer"] == E.SWAPPED and swap["args"] == {"stage": "protections", "key": "key-emn",
                                                               "swap": "intra", "seed": 0}
    moved = grid["transfer:tue"][0].spec
    assert moved["dataset"]["name"].endswith("svhn_standin:SVHN_SMALL_STANDIN")
    assert moved["poisons"]["args"]["source_per_class"] == 1000
    learner = grid["simclr:tue"][0].spec["learner"]
    assert learner["kind"].endswith("SimCLRLearner") and learner["views"] == "batched" and learner["autocast"]
    rows = {r["stage"]: r for r in E.plan(cfg)}
    assert rows["supervised victims"]["trials"] == supervised and rows["contrastive victims"]["trials"] == 11
    sep = E.separability_trials(cfg, keys)
    assert len(sep) == 10 + 5  # linear for every set, two-layer for the deck's five


def test_a_protections_key_follows_only_its_own_settings():
    cfg = load_config(PAPER, "cpu")
    other = load_config(PAPER, "cpu", ntga_steps=3)
    for kind in METHODS:
        same = E.protection_spec(cfg, kind, "k") == E.protection_spec(other, kind, "k")
        assert same == (kind != "ntga"), kind
    assert "surrogate_key" not in E.protection_spec(cfg, "sn", "k")
    assert E.protection_spec(cfg, "tue", "k")["csd_weight"] == 0.1


@pytest.mark.parametrize("kind", ["sn", "tue", "ucl", "emaxn", "tensorclog", "alignment", "ntga"])
def test_every_protection_keeps_its_budget(kind, monkeypatch, isolated_artifacts):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(20) % 4
    x = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g)
    x[0], x[1] = 0, 255  # clipped at black and white
    monkeypatch.setattr(E.EV, "cifar10_training_set", lambda per_class: (x, y))
    monkeypatch.setattr(E, "validation_set", lambda per_class, val: (x[:8], y[:8]))
    net = E.build("convnet_bn", 0)
    monkeypatch.setattr(E, "load_surrogate", lambda model, key, trainable=False: net.eval().requires_grad_(trainable))
    art = E.protection_trial(kind=kind, per_class=5, seed=3, eps=8 / 255, step_size=2 / 255, model="convnet_bn",
                             encoder="convnet_bn", batch_size=8, noise_steps=1, train_steps=1, steps=2, rounds=1,
                             block=8, val_per_class=2)
    linf = art["linf_255"]
    assert linf.shape == (len(x),) and int(linf.max()) <= 8
    assert int(linf.max()) >= 1  # something was added


# --------------------------------------------------------------------------- claims from planted results
def _run(cfg, separability=None, **accuracies):
    base = {"sup:clean": [0.70, 0.71, 0.72], "simclr:clean": [0.45, 0.46, 0.44],
            "random_features:clean": [0.35, 0.36, 0.355], "simclr:tue": [0.20, 0.22, 0.21],
            "simclr:emn": [0.44, 0.45, 0.445]}
    base.update(accuracies)
    sep = {("clean", "linear"): 0.6, ("emn", "linear"): 1.0, ("sn", "linear"): 1.0}
    sep.update(separability or {})
    return {"protections": {m: {"linf_255": torch.full((50,), 8, dtype=torch.uint8), "eps": torch.tensor(8 / 255)}
                            for m in cfg.methods},
            "separability": sep,
            "victims": {arm: [{"test_accuracy": torch.tensor(a)} for a in accs] for arm, accs in base.items()}}


def _claims(cfg, run):
    res = Results("14_tue", "cpu", PAPER)
    R.record_claims(cfg, run, res)
    return res.claims_frame()


def test_the_claims_hold_on_the_papers_effect(isolated_artifacts):
    cfg = load_config(PAPER, "cpu")
    df = _claims(cfg, _run(cfg))
    headline = df[df.role == "headline"]
    assert len(headline) == 2 and (headline.verdict == "holds").all(), headline[["id", "verdict", "reason"]]
    assert (df.verdict == "holds").all(), df[["id", "verdict", "reason"]]
    tue = df[df.id.str.endswith(":tue") & df.artifact.eq("TUE-TT")].iloc[0]
    assert math.isclose(tue.paper, 0.3766)


def test_separable_clean_data_or_inseparable_emn_fail_the_separability_claim(isolated_artifacts):
    cfg = load_config(PAPER, "cpu")
    for planted in ({("clean", "linear"): 0.97}, {("emn", "linear"): 0.90}):
        df = _claims(cfg, _run(cfg, separability=planted))
        assert df[(df.role == "headline") & (df.artifact == "TUE-LS")].verdict.item() == "fails"


def test_a_simclr_no_better_than_random_features_leaves_the_probe_claim_untested(isolated_artifacts):
    cfg = load_config(PAPER, "cpu")
    df = _claims(cfg, _run(cfg, **{"simclr:clean": [0.36, 0.37, 0.355]}))
    assert df[(df.role == "headline") & (df.artifact == "TUE-TT")].verdict.item() == "untested"
    run = _run(cfg)
    run["protections"]["tue"]["linf_255"][3] = 9  # one image a level over 8/255
    df = _claims(cfg, run)
    assert df[(df.role == "headline") & (df.artifact == "TUE-TT")].verdict.item() == "untested"
    # EMN lowering the probe as much as TUE: the joint claim fails
    df = _claims(cfg, _run(cfg, **{"simclr:emn": [0.20, 0.21, 0.22]}))
    assert df[(df.role == "headline") & (df.artifact == "TUE-TT")].verdict.item() == "fails"


def test_the_power_table_covers_both_parts_of_the_probe_claim():
    table = R.power_analysis(load_config(PAPER, "cpu"))
    assert len(table) == 2 and (table["units (this profile)"] == 3).all()
    assert np.isfinite(table.filter(like="units for").to_numpy(float)).all()


@pytest.mark.parametrize("kind", ["SimCLRLearner", "MoCoV2Learner", "SimSiamLearner"])
def test_each_contrastive_learner_pretrains_under_autocast_with_batched_views(kind):
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    learner = getattr(C, kind)(arch="convnet_bn", epochs=1.0, batch_size=8, views="batched", autocast=True)
    encoder, nets = learner.pretrain(x, seed=0)
    assert all(bool(torch.isfinite(p).all()) for p in encoder.parameters())
    if kind == "MoCoV2Learner":
        assert nets.queue.dtype == torch.float32 and int(nets.pointer) == 16 % learner.queue_size
