"""Notebook 13, Unlearnable Clusters (Zhang et al. 2023): the config refuses bad input before any
compute; the hacker's relabelling maps train and test labels alike; UC clusters without labels,
lowers its objective and keeps its budget; every protection keeps its budget on the protector's
set; the screening picks the strongest baseline on seeds the headline does not use; the grid is
the one the plan and the estimate count; the claims' verdicts follow planted results."""
import math

import numpy as np
import pytest
import torch

from poisonrepro import evaluation as EV
from poisonrepro.attacks import unlearnable_clusters as UC
from poisonrepro.config import ConfigError, load_config
from poisonrepro.config.unlearnable_clusters import BASELINES, METHODS
from poisonrepro.papers.unlearnable_clusters import experiments as E
from poisonrepro.papers.unlearnable_clusters import relabelled as RL
from poisonrepro.papers.unlearnable_clusters import report as R
from poisonrepro.results import Results

pytestmark = pytest.mark.usefixtures("one_thread")
PAPER = "unlearnable_clusters"


# --------------------------------------------------------------------------- bad input, before compute
@pytest.mark.parametrize("overrides, match", [
    ({"uc_eps": 16}, r"uc_eps=16: perturbation budgets are on the \[0, 1\] pixel scale; did you mean 16/255"),
    ({"eps": 8}, r"eps=8: perturbation budgets are on the \[0, 1\] pixel scale"),
    ({"methods": ("synper", "eminn")}, r"the headline needs 'uc'"),
    ({"methods": ("uc",)}, r"name at least one of synper, emaxn"),
    ({"methods": ("uc", "ntga")}, r"methods='ntga': allowed values are 'uc'"),
    ({"hacker_classes": 1}, r"hacker_classes=1: must lie in \[2, 10\]"),
    ({"hacker_classes": 37}, r"hacker_classes=37: must lie in \[2, 10\]"),
    ({"relabel_grid": (2, 5)}, r"the headline's hacker_classes=5 always runs"),
    ({"cluster_grid": (10,)}, r"the headline's clusters=10 always runs"),
    ({"clusters": 1}, r"clusters=1: must lie in \[2, 1000\]"),
    ({"train_per_class": 1, "clusters": 20, "cluster_grid": (5,)}, r"at most the 10 training images"),
    ({"defences": ("autoaugment",)}, r"defences='autoaugment': allowed values"),
    ({"at_methods": ("clean", "eminn"), "methods": ("uc", "synper")}, r"eminn not among methods"),
    ({"at_rhos": (0.0,)}, r"at_rhos=0.0: must lie in \(0, 255\]"),
    ({"step_size": 0.1}, r"must not exceed the budget eps"),
    ({"victim_seeds": 2}, r"victim_seeds=2: .*the cpu profile needs at least 3"),
])
def test_the_config_refuses_bad_input(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(PAPER, "cpu", **overrides)


def test_a_protection_of_unknown_kind_is_refused_before_the_data_are_loaded(monkeypatch):
    monkeypatch.setattr(E.EV, "cifar10_training_set", lambda per_class: pytest.fail("loaded the data"))
    with pytest.raises(ValueError, match=r"protection kind='ntga': unknown; allowed: uc, synper"):
        E.protection_trial(kind="ntga", per_class=1, seed=0, eps=8 / 255)


# --------------------------------------------------------------------------- the hacker's labels
def test_the_hacker_relabels_train_and_test_labels_alike(monkeypatch):
    y = torch.arange(10).repeat(3)
    monkeypatch.setattr(RL, "cifar10_training_set", lambda per_class: (torch.zeros(len(y), 3, 2, 2), y))
    monkeypatch.setattr(RL, "cifar10_test_set", lambda count: (torch.zeros(count, 3, 2, 2), torch.arange(count) % 10))
    ds = EV.dataset_of(RL.dataset_name(5))  # found by its import path, as an evaluation spec names it
    _, train_y = ds.training_set(per_class=3)
    _, test_y = ds.test_set(20)
    assert torch.equal(train_y, y % 5) and torch.equal(test_y, torch.arange(20) % 10 % 5)
    assert set(train_y.tolist()) == set(range(5))
    # airplane (0) and dog (5) become one class, at n = 5; n = 10 is the protector's own labels
    assert RL.relabel(torch.tensor([0, 5]), 5).tolist() == [0, 0]
    assert torch.equal(RL.relabel(y, 10), y)
    for bad in (1, 11, 2.5, True):
        with pytest.raises(ValueError, match=r"hacker classes n=.*an integer in \[2, 10\]"):
            RL.dataset_name(bad)


# --------------------------------------------------------------------------- UC on a toy set
def _blobs(n=96, groups=3, seed=0):
    """uint8 16x16 images in ``groups`` colour groups (what K-means should find), and their group."""
    g = torch.arange(n) % groups
    colours = torch.tensor([[0.2, 0.2, 0.8], [0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.5, 0.5, 0.5]])[:groups]
    noise = 0.05 * torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    x = (colours[g][:, :, None, None] + noise).clamp(0, 1)
    return (x * 255).round().to(torch.uint8), g


class _Features(torch.nn.Module):
    """A fixed differentiable surrogate: pooled colour and a random projection of the pixels."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16 * 16, 8)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(1))
        self.requires_grad_(False)

    def forward(self, x):
        return torch.cat([10 * x.mean((2, 3)), self.proj(x.flatten(1))], 1)


def test_unlearnable_clusters_find_the_groups_use_no_label_lower_their_objective_and_keep_the_budget():
    x, g = _blobs()
    feats = _Features()
    art = UC.craft_unlearnable_clusters(feats, x, clusters=3, eps=16 / 255, epochs=15, batch_size=32, lr=1e-2,
                                        width=4, blocks=1, seed=0)
    groups = art["groups"]
    # K-means on the surrogate's features finds the three colour groups (up to their order)
    assert all(len(set(groups[g == k].tolist())) == 1 for k in range(3)) and len(set(groups.tolist())) == 3
    assert art["delta_levels"].shape == (3, 3, 16, 16) and int(art["delta_levels"].abs().max()) <= 16
    assert int(art["delta_levels"].abs().max()) >= 8  # the budget is used
    loss = art["loss_history"]
    assert loss.shape == (3, 15) and (loss[:, -1] < loss[:, 0]).all(), loss  # each generator lowers its DDU loss
    # each cluster now looks, to the surrogate, more like the next cluster's centre than before
    from poisonrepro.attacks.availability import apply_noise
    spoiled = apply_noise(x, torch.zeros(len(x), dtype=torch.long), art)[0]
    centres = art["centres"]
    with torch.no_grad():
        before, after = feats(x.float() / 255), feats(spoiled.float() / 255)
    for i in range(3):
        members, target = groups == i, centres[(i + 1) % 3]
        assert (after[members] - target).norm(dim=1).mean() < (before[members] - target).norm(dim=1).mean()
    again = UC.craft_unlearnable_clusters(feats, x, clusters=3, eps=16 / 255, epochs=2, batch_size=32, lr=1e-2,
                                          width=4, blocks=1, seed=0)
    twice = UC.craft_unlearnable_clusters(feats, x, clusters=3, eps=16 / 255, epochs=2, batch_size=32, lr=1e-2,
                                          width=4, blocks=1, seed=0)
    assert torch.equal(again["delta_levels"], twice["delta_levels"])  # a function of the seed


def test_the_ddu_loss_is_zero_at_the_target_and_positive_elsewhere():
    target = torch.tensor([1.0, 2.0, 3.0])
    assert float(UC.ddu_loss(target[None].repeat(4, 1), target)) == pytest.approx(0.0, abs=1e-6)
    assert float(UC.ddu_loss(torch.zeros(4, 3), target)) > 0.1


@pytest.mark.parametrize("kwargs, match", [
    ({"clusters": 1}, r"clusters=1: need at least 2"),
    ({"clusters": 2.5}, r"clusters=2.5: need an integer >= 1"),
    ({"eps": 16}, r"eps"),
    ({"epochs": 0}, r"epochs=0: must be positive"),
    ({"lr": -1.0}, r"lr=-1.0: must be positive"),
])
def test_unlearnable_clusters_refuse_bad_arguments_before_any_compute(kwargs, match):
    x, _ = _blobs(n=12)
    with pytest.raises(ValueError, match=match):
        UC.craft_unlearnable_clusters(lambda im: pytest.fail("computed"), x, **kwargs)
    with pytest.raises(ValueError, match=r"uint8 pixels"):
        UC.craft_unlearnable_clusters(lambda im: im, x.float())


@pytest.mark.parametrize("kind", METHODS)
def test_every_protection_keeps_its_budget_on_the_protectors_set(kind, monkeypatch, isolated_artifacts):
    x, g = _blobs(n=40, groups=4)
    x = torch.nn.functional.interpolate(x.float(), size=32).round().to(torch.uint8)  # 32x32 for the networks
    x[0], x[1] = 0, 255  # clipped at black and white
    monkeypatch.setattr(E.EV, "cifar10_training_set", lambda per_class: (x, g))
    key = ""
    if kind in ("uc", "emaxn", "advpoison"):  # they load the protector's network from the cache
        net = E.build("convnet_bn", 0)
        monkeypatch.setattr(E, "load_protector", lambda model, k: net.eval().requires_grad_(False))
    eps = 16 / 255 if kind == "uc" else 8 / 255
    art = E.protection_trial(kind=kind, per_class=10, seed=3, eps=eps, model="convnet_bn", protector_key=key,
                             clusters=3, epochs=1, batch_size=16, width=4, blocks=1, step_size=2 / 255, noise_steps=1,
                             train_steps=1, max_rounds=1, emax_steps=2, emax_step_size=4 / 255, rounds=1, steps=1)
    linf = art["linf_255"]
    assert linf.shape == (len(x),) and int(linf.max()) <= round(255 * eps)
    assert int(linf.max()) >= 1  # something was added
    rows = 3 if kind == "uc" else len(x)
    assert art["delta_levels"].shape == (rows, 3, 32, 32)


# --------------------------------------------------------------------------- screening and the grid
def test_the_strongest_baseline_is_the_lowest_mean_and_ties_go_to_the_first():
    acc = lambda *a: [{"test_accuracy": torch.tensor(v)} for v in a]  # noqa: E731
    assert E.strongest_baseline({"screen:synper": acc(0.6), "screen:eminn": acc(0.4, 0.5),
                                 "screen:advpoison": acc(0.5)}) == "eminn"
    assert E.strongest_baseline({"screen:advpoison": acc(0.5), "screen:emaxn": acc(0.5)}) == "emaxn"
    with pytest.raises(ValueError, match="no baseline was screened"):
        E.strongest_baseline({})


def test_the_cpu_grid_is_the_one_the_estimate_and_the_plan_count():
    cfg = load_config(PAPER, "cpu")
    keys = {name: f"key-{name}" for name in E.protection_names(cfg)}
    screen = E.screening_arms(cfg, keys)
    grid = E.arms(cfg, keys, "advpoison")
    assert {arm: len(t) for arm, t in screen.items()} == {f"screen:{b}": 1 for b in BASELINES}
    counts = {arm: len(t) for arm, t in grid.items()}
    assert counts["clean"] == counts["uc"] == counts["baseline:advpoison"] == 3
    supervised = sum(c for a, c in {**counts, **{a: len(t) for a, t in screen.items()}}.items()
                     if not a.startswith(("at:", "simclr:")))
    assert supervised == 24  # the config's docstring estimate
    rows = {r["stage"]: r for r in E.plan(cfg)}
    assert rows["victims"]["trials"] == 24 and rows["adversarially trained victims"]["trials"] == 2
    assert rows["SimCLR victims"]["trials"] == 2 and rows["protection: UC"]["trials"] == 3
    seeds = lambda trials: [t.spec["seed"] for t in trials]  # noqa: E731
    # the baseline is chosen on seeds the headline does not use, then paired with UC by seed
    assert not set(seeds(screen["screen:eminn"])) & set(seeds(grid["clean"]))
    assert seeds(grid["baseline:advpoison"]) == seeds(grid["uc"]) == seeds(grid["clean"])
    spec = grid["uc"][0].spec
    assert spec["dataset"]["name"] == RL.dataset_name(5) and spec["poisons"]["args"]["key"] == "key-uc"
    assert grid["clean"][0].spec["poisons"] is None
    assert grid["relabel:2:uc"][0].spec["dataset"]["name"] == RL.dataset_name(2)
    assert grid["clusters:20"][0].spec["poisons"]["args"]["key"] == "key-uc:p20"
    at = grid["at:2:uc"][0].spec["learner"]
    assert at["rho"] == 2.0 and at["steps"] == 1 and math.isclose(at["step_size"], 2 / 255)
    simclr = grid["simclr:uc"][0].spec["learner"]
    assert simclr["views"] == "batched" and simclr["autocast"] is True
    assert grid["defence:gaussian_blur"][0].spec["learner"]["augmentation"] == "gaussian_blur"
    assert grid["simclr:uc"][0].spec["learner"]["kind"].endswith("SimCLRLearner")


def test_a_protections_key_follows_only_its_own_settings():
    cfg = load_config(PAPER, "cpu")
    other = load_config(PAPER, "cpu", confuse_rounds=3)
    for kind in METHODS:
        same = E.protection_spec(cfg, kind, "k") == E.protection_spec(other, kind, "k")
        assert same == (kind != "deepconfuse"), kind
    assert E.protection_spec(cfg, "uc", "k", clusters=5)["clusters"] == 5
    assert "protector_key" not in E.protection_spec(cfg, "synper", "k")


# --------------------------------------------------------------------------- claims from planted results
def _run(cfg, strongest="advpoison", **accuracies):
    base = {"clean": [0.85, 0.86, 0.855], "uc": [0.35, 0.40, 0.38], f"baseline:{strongest}": [0.70, 0.72, 0.71]}
    base.update(accuracies)
    linf = {k: torch.full((50,), 16 if k.startswith("uc") else 8, dtype=torch.uint8)
            for k in E.protection_names(cfg)}
    return {"protections": {k: {"linf_255": v, "eps": torch.tensor((16 if k.startswith("uc") else 8) / 255)}
                            for k, v in linf.items()},
            "strongest": strongest,
            "victims": {arm: [{"test_accuracy": torch.tensor(a)} for a in accs] for arm, accs in base.items()}}


def _verdicts(cfg, run):
    res = Results("13_unlearnable_clusters", "cpu", PAPER)
    R.record_claims(cfg, run, res)
    df = res.claims_frame()
    return df.set_index("id"), df


def test_the_claims_hold_on_the_papers_effect(isolated_artifacts):
    cfg = load_config(PAPER, "cpu")
    by_id, df = _verdicts(cfg, _run(cfg))
    headline = df[df.role == "headline"]
    assert len(headline) == 2 and (headline.verdict == "holds").all(), headline[["id", "verdict", "reason"]]
    assert (df.verdict == "holds").all(), df[["id", "verdict", "reason"]]
    # the gap's paper column follows the chosen baseline
    gap = headline[headline.id.str.contains("eminn|advpoison")].iloc[0]
    assert math.isclose(gap.paper, 0.3865)
    by_id, df = _verdicts(cfg, _run(cfg, strongest="eminn", **{"baseline:eminn": [0.70, 0.72, 0.71]}))
    gap = df[(df.role == "headline") & df.id.str.contains("eminn")].iloc[0]
    assert math.isclose(gap.paper, 0.4075) and "EMinN" in gap.claim


def test_a_missed_floor_or_budget_leaves_the_headlines_untested_and_a_weak_uc_fails(isolated_artifacts):
    cfg = load_config(PAPER, "cpu")
    _, df = _verdicts(cfg, _run(cfg, clean=[0.70, 0.71, 0.72]))
    assert (df[df.role == "headline"].verdict == "untested").all()
    run = _run(cfg)
    run["protections"]["uc"]["linf_255"][7] = 17  # one image a level over UC's 16/255
    _, df = _verdicts(cfg, run)
    assert df[df.id.str.startswith("UC-T1a") & df.id.str.endswith(":uc")].verdict.item() == "fails"
    assert (df[df.role == "headline"].verdict == "untested").all()
    # UC no better than the strongest baseline: the gap fails while the drop still holds
    _, df = _verdicts(cfg, _run(cfg, uc=[0.70, 0.71, 0.72]))
    headline = df[df.role == "headline"].set_index("metric").verdict
    assert headline["clean accuracy, clean - UC"] == "fails"
    assert headline["clean accuracy, strongest baseline - UC"] == "fails"


def test_the_power_table_covers_the_two_headlines():
    table = R.power_analysis(load_config(PAPER, "cpu"))
    assert len(table) == 2 and (table["units (this profile)"] == 3).all()
    assert (table.filter(like="power at 0.05").to_numpy() >= 0.9).all()
    assert np.isfinite(table.filter(like="units for").to_numpy(float)).all()
