"""Notebook 03's experiments (MP-1): the config refuses bad input before any compute, the data
follow the code's protocol (the first dog images poisoned, bird targets), the victims train with
the code's recipe, and the plan counts every victim."""
import pytest
import torch

from poisonrepro import evaluation as EV
from poisonrepro import power as PW
from poisonrepro.cache import ArtifactCache
from poisonrepro.config import ConfigError, dry_run, load_config
from poisonrepro.papers.metapoison import experiments as E

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("change, message", [
    (dict(eps=8), "8/255"),
    (dict(budgets=(0.0,)), "budgets"),
    (dict(budgets=(1.0,)), "budgets"),
    (dict(budgets=(0.01, 0.001)), "increasing"),
    (dict(budgets=(0.5,)), "poison class has only"),
    (dict(poison_class="bird"), "must differ"),
    (dict(target_class="unicorn"), "target_class"),
    (dict(members=0), "members"),
    (dict(color_eps=1.0), "color_eps"),
])
def test_the_config_refuses_bad_input(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config("metapoison", "cpu", **change)


def test_the_budgets_are_shares_of_the_training_set():
    cfg = load_config("metapoison", "cpu")
    assert [cfg.poisons_at(b) for b in cfg.budgets] == [2, 10, 20]  # 0.1%, 0.5%, 1% of 2,000
    paper = load_config("metapoison", "paper")
    assert [paper.poisons_at(b) for b in paper.budgets] == [50, 250, 500]
    assert paper.members == 24 and paper.unroll_steps == 2 and paper.craft_steps == 60 and paper.epochs == 200
    assert dry_run(paper).poisons_at(dry_run(paper).budgets[0]) == 1


def test_the_victims_train_with_the_codes_recipe():
    paper = EV.recipe_from(E.recipe_fields(load_config("metapoison", "paper")))
    assert (paper.lr, paper.batch_size, paper.momentum, paper.weight_decay) == (0.1, 125, 0.0, 0.0)
    assert not paper.nesterov and paper.crop_pad == 0 and not paper.flip and paper.label_smoothing == 0
    assert paper.milestones == (0.5, 0.75) and paper.warmup == pytest.approx(5 / 200)
    assert paper.lr_factor(0, 200) == pytest.approx(0.1) and paper.lr_factor(160, 200) == pytest.approx(0.01)
    cpu = EV.recipe_from(E.recipe_fields(load_config("metapoison", "cpu")))
    assert cpu.milestones == () and cpu.lr_factor(cpu.epochs * 10, cpu.epochs * 16) == 1  # no drop before 100 epochs


def test_the_plan_counts_every_victim():
    cfg = load_config("metapoison", "cpu")
    rows = {r["stage"]: r for r in E.plan(cfg)}
    assert rows["victims (from scratch)"]["trials"] == cfg.victim_seeds * (1 + 3 * cfg.n_targets)
    assert [rows[f"craft {b}"]["trials"] for b in ("0.1%", "0.5%", "1%")] == [cfg.n_targets] * 3
    paper = {r["stage"]: r for r in E.plan(load_config("metapoison", "paper"))}
    assert paper["craft 1%"]["flops_per_trial"] > 10 * rows["craft 1%"]["flops_per_trial"]


def test_the_data_follow_the_codes_protocol(mirror):
    cfg = load_config("metapoison", "smoke", n_targets=3)
    data = E.prepare_data(cfg)
    y = data["train_y"]
    assert (y[data["poison_pos"]] == data["poison_label"]).all()
    assert data["poison_pos"].tolist() == sorted(data["poison_pos"].tolist())  # the first dogs, in order
    assert len(data["poison_pos"]) == cfg.train_per_class
    from poisonrepro import data as D
    test = D.load_cifar10("test")
    assert (test.y[data["target_index"]] == data["target_label"]).all() and len(set(data["target_index"])) == 3
    assert D.CIFAR10_CLASSES[data["target_label"]] == "bird" and D.CIFAR10_CLASSES[data["poison_label"]] == "dog"


def test_a_victim_without_its_poisons_in_the_cache_says_so(mirror, isolated_artifacts):
    cfg = load_config("metapoison", "smoke")
    data = E.prepare_data(cfg)
    trial = E.victim_spec(cfg, 0, [0], budget=cfg.budgets[0], setup=0, data=data)
    with pytest.raises(FileNotFoundError, match="crafting stage"):
        EV.evaluation_trial(**trial.spec)


def test_the_pretrained_network_does_not_depend_on_what_ran_before_it(mirror):
    """The network is built (randomly initialised) before the trainer seeds: its stage must not
    take its initial weights from whatever the kernel drew before (a resumed run did differ)."""
    cfg = load_config("metapoison", "smoke")
    data = E.prepare_data(cfg)
    cache = ArtifactCache(enabled=False)
    torch.manual_seed(1)
    a = E.pretrained(cfg, data, cache).state_dict()
    torch.manual_seed(2)
    b = E.pretrained(cfg, data, cache).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_cost_at_the_floor_is_measured_and_the_paper_protocol_costs_more(mirror):
    """The two timings run for real (at smoke on 200 images, scaled to the 50,000); the paper's
    protocol (24 surrogates, 60 steps, 200-epoch victims) costs more than the least that reaches
    the floor; cpu and paper time them on all 50,000 images."""
    cfg = load_config("metapoison", "smoke")
    assert load_config("metapoison", "cpu").cost_per_class == load_config("metapoison", "paper").cost_per_class == 5000
    table = E.cost_at_floor(cfg)
    assert list(table.index) == ["paper protocol", "least at the floor"]
    assert (table["total (h)"] > 0).all()
    assert table.loc["paper protocol", "total (h)"] > table.loc["least at the floor", "total (h)"]
    assert all(v > 0 for v in table.attrs["measured"].values())


def test_the_power_analysis_uses_the_claims_tests():
    from poisonrepro.papers.metapoison import report as R
    cpu = R.power_analysis(load_config("metapoison", "cpu"))
    assert list(cpu["units (this profile)"]) == [12, 12]
    # at the threshold the Wilson-bound test holds 7.3% of the time with 12 trials (slightly above
    # its 5% level: the exact binomial outcomes), far below its power at the paper's 90%
    assert PW.rate_power(12, 0.5, 0.5, 0.05) < 0.08 and PW.rate_power(12, 0.9, 0.5, 0.05) > 0.95
