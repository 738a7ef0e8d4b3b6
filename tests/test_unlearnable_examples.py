"""Notebook 12, Unlearnable Examples (Huang et al. 2021): the config refuses bad input before any
compute, the grid runs the victims the plan and the cpu estimate count, the noises keep their budget
on the victims' own set, the curve-recording learner learns a toy task and records every epoch, the
precision wrapper keeps the surrogate's gradients, and the claims' verdicts follow planted results
(preconditions block the headlines)."""
import math

import numpy as np
import pytest
import torch

from poisonrepro.config import ConfigError, load_config
from poisonrepro.papers.unlearnable_examples import experiments as E
from poisonrepro.papers.unlearnable_examples import report as R
from poisonrepro.results import Results
from poisonrepro import train as T

pytestmark = pytest.mark.usefixtures("one_thread")
PAPER = "unlearnable_examples"


# --------------------------------------------------------------------------- bad input, before compute
@pytest.mark.parametrize("overrides, match", [
    ({"eps": 8}, r"eps=8: perturbation budgets are on the \[0, 1\] pixel scale; did you mean 8/255"),
    ({"step_size": 0.8}, r"step_size=0.8: .*must not exceed the budget|step_size=0.8"),
    ({"fractions": (0.0,)}, r"fractions=0.0: must lie in \(0, 1\]"),
    ({"fractions": (1.5,)}, r"fractions=1.5: must lie in \(0, 1\]"),
    ({"fractions": (0.5, 1.0)}, r"each share in \(0, 1\); the whole set \(1\) is UE-2's arm"),
    ({"noises": ("error_min", "adversarial")}, r"noises='adversarial': allowed values are 'error_min'"),
    ({"noises": ("random",)}, r"the headline needs 'error_min'"),
    ({"augmentations": ("autoaugment",)}, r"augmentations='autoaugment': allowed values are 'cutout'"),
    ({"transfer_archs": ("resnet50",)}, r"transfer_archs='resnet50': allowed values"),
    ({"transfer_archs": ("convnet_bn",)}, r"the victim 'convnet_bn' already runs"),
    ({"model": "vit"}, r"model='vit': allowed values"),
    ({"victim_seeds": 2}, r"victim_seeds=2: .*the cpu profile needs at least 3"),
    ({"curve_images": 20_000}, r"curve_images=20000: must lie in \[1, 10000\]"),
    ({"protect_class": "bird2"}, r"protect_class='bird2': allowed values"),
])
def test_the_config_refuses_bad_input(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(PAPER, "cpu", **overrides)


def test_a_noise_of_unknown_kind_is_refused_before_the_data_are_loaded(monkeypatch):
    monkeypatch.setattr(E, "training_set", lambda per_class: pytest.fail("loaded the data"))
    with pytest.raises(ValueError, match=r"noise kind='adversarial': unknown; allowed: error_min, error_min_class"):
        E.noise_trial(kind="adversarial", per_class=1, seed=0, eps=8 / 255)


# --------------------------------------------------------------------------- the grid
def test_the_cpu_grid_is_the_one_the_estimate_and_the_plan_count():
    cfg = load_config(PAPER, "cpu")
    keys = {k: f"key-{k}" for k in cfg.noises}
    grid = E.arms(cfg, keys)
    counts = {arm: len(trials) for arm, trials in grid.items()}
    assert counts == {"clean": 3, "error_min": 3, "error_min_class": 3, "random": 2, "error_max": 2,
                      "fraction:0.8": 3, "augment:cutout": 1, "augment:mixup": 1, "augment:cutmix": 1,
                      "arch:resnet18_standin": 1, "protect:error_min": 1, "protect:error_min_class": 1}
    assert sum(counts.values()) == 22  # the config's docstring estimate
    victims = next(r for r in E.plan(cfg) if r["stage"] == "victims")
    assert victims["trials"] == 22
    # the controls' seeds are the first of the clean victims' (their claims pair by seed), and a
    # victim's poisoned share is drawn with its own seed
    seeds = lambda arm: [t.spec["seed"] for t in grid[arm]]  # noqa: E731
    assert seeds("random") == seeds("clean")[:2] and seeds("fraction:0.8") == seeds("error_min") == seeds("clean")
    for t in grid["fraction:0.8"]:
        assert t.spec["poisons"]["args"] == {"stage": "noise", "key": "key-error_min", "fraction": 0.8,
                                             "seed": t.spec["seed"]}
    bird = grid["protect:error_min_class"][0].spec["poisons"]["args"]
    assert bird["classes"] == [2] and bird["key"] == "key-error_min_class" and bird["fraction"] == 1.0
    assert grid["clean"][0].spec["poisons"] is None
    assert grid["augment:mixup"][0].spec["learner"]["augmentation"] == "mixup"
    assert grid["arch:resnet18_standin"][0].spec["learner"]["arch"] == "resnet18_standin"


# --------------------------------------------------------------------------- noises on a toy set
def _toy(n=80, classes=4, seed=0):
    """uint8 32x32 images whose class is their colour (learnable in a few steps), pixels at both ends."""
    y = torch.arange(n) % classes
    colours = torch.rand(classes, 3, 1, 1, generator=torch.Generator().manual_seed(0))  # the same for every draw
    noise = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1))
    x = (colours[y] * 0.6 + 0.2 + 0.15 * noise).clamp(0, 1)
    x[0], x[1] = 0.0, 1.0
    return (x * 255).round().to(torch.uint8), y


@pytest.mark.parametrize("kind", ["random", "error_min", "error_min_class"])
def test_every_noise_keeps_its_budget_on_the_victims_set(kind, monkeypatch):
    x, y = _toy()
    monkeypatch.setattr(E, "training_set", lambda per_class: (x, y))
    art = E.noise_trial(kind=kind, per_class=20, seed=3, eps=8 / 255, surrogate="convnet_bn", step_size=2 / 255,
                        noise_steps=2, train_steps=2, max_rounds=2, class_subset=0.5, batch_size=32)
    linf = art["linf_255"]
    assert linf.shape == (len(x),) and int(linf.max()) <= 8
    assert int(linf.max()) == 8  # the budget is used
    assert int(linf[0]) <= 8 and int(linf[1]) <= 8  # clipped at black and white
    rows = len(torch.unique(y)) if kind == "error_min_class" else len(x)
    assert art["delta_levels"].shape == (rows, 3, 32, 32)
    if kind.startswith("error_min"):
        assert 1 <= int(art["rounds"]) <= 2


def test_the_precision_wrapper_returns_fp32_logits_and_keeps_the_input_gradient():
    net = E._build("convnet_bn", 0).eval()
    wrapped = E.Autocast(net)
    x = torch.rand(8, 3, 32, 32, requires_grad=True)
    out = wrapped(x)
    assert out.dtype == torch.float32 and out.shape == (8, 10)
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with torch.no_grad():
        agree = (wrapped(x).argmax(1) == net(x).argmax(1)).float().mean()
    assert agree >= 0.75  # bf16 (where native) rounds, it does not change the network


def test_the_learning_curve_is_scored_on_every_class_of_a_test_set_stored_class_by_class():
    """The curve's images are a fixed random draw: the first 1,000 of the stored test set are all
    airplanes (a first cpu run plotted their accuracy as UE-2's curve)."""
    x, y = torch.arange(1000).float()[:, None], torch.arange(10).repeat_interleave(100)
    cx, cy = E.curve_draw(x, y, 100)
    counts = torch.bincount(cy, minlength=10)
    assert len(cy) == 100 and (counts >= 3).all() and (counts <= 20).all(), counts
    assert torch.equal(y[cx[:, 0].long()], cy)  # images and labels drawn together
    assert torch.equal(E.curve_draw(x, y, 100)[1], cy)  # the same draw for every victim


def test_the_curve_learner_learns_a_toy_task_and_records_every_epoch(monkeypatch):
    x, y = _toy(n=256)
    test_x, test_y = _toy(n=64, seed=1)
    monkeypatch.setattr(E.EV, "cifar10_test_set", lambda count: (test_x[:count], test_y[:count]))
    learner = E.CurveLearner(arch="convnet_bn", augmentation="none", curve_images=32, test_images=64)
    recipe = T.VictimRecipe(epochs=8, batch_size=32, label_smoothing=0.0)
    model, diag = learner.train(x, y, recipe, seed=0)
    curve, pred = diag["curve"], diag["test_prediction"]
    assert curve.shape == (8,) and pred.shape == (64,)
    final = float((pred == test_y).float().mean())
    assert final > 0.8  # chance: 0.25 (four classes)
    assert float(curve[-1]) > 0.8 and float(curve[-1]) >= float(curve[0])
    assert not model.training  # returned in eval mode, as the trial scores it
    with pytest.raises(ValueError, match=r"curve_images=100: between 1 and test_images=64"):
        E.CurveLearner(arch="convnet_bn", curve_images=100, test_images=64)


# --------------------------------------------------------------------------- claims from planted results
def _run(cfg, **accuracies):
    base = {"clean": [0.82, 0.83, 0.825], "error_min": [0.20, 0.23, 0.18], "error_min_class": [0.15, 0.17, 0.16],
            "random": [0.81, 0.82], "error_max": [0.79, 0.805], "fraction:0.8": [0.60, 0.63, 0.58]}
    base.update(accuracies)
    linf = {k: torch.full((50,), 8, dtype=torch.uint8) for k in cfg.noises}
    return {"noises": {k: {"linf_255": v} for k, v in linf.items()},
            "victims": {arm: [{"test_accuracy": torch.tensor(a)} for a in accs] for arm, accs in base.items()}}


def _verdicts(cfg, run, isolated):
    res = Results("12_unlearnable_examples", "cpu", PAPER)
    R.record_claims(cfg, run, res)
    df = res.claims_frame()
    return dict(zip(df.id, df.verdict)), df


def test_the_claims_hold_on_the_papers_effect(isolated_artifacts):
    cfg = load_config(PAPER, "cpu")
    verdicts, df = _verdicts(cfg, _run(cfg), isolated_artifacts)
    headline = df[df.role == "headline"]
    assert len(headline) == 3 and (headline.verdict == "holds").all(), headline[["id", "verdict", "reason"]]
    assert (df.verdict == "holds").all(), df[["id", "verdict", "reason"]]
    assert math.isclose(df.set_index("id").loc["UE-2:clean-accuracy-error-minimising-sample-wise:error_min".replace(
        "_", "-"), "paper"], 0.1993)


def test_a_missed_floor_or_budget_leaves_the_headlines_untested_and_an_ineffective_noise_fails(isolated_artifacts):
    cfg = load_config(PAPER, "cpu")
    verdicts, df = _verdicts(cfg, _run(cfg, clean=[0.70, 0.71, 0.72]), isolated_artifacts)
    assert (df[df.role == "headline"].verdict == "untested").all()
    run = _run(cfg)
    run["noises"]["error_min"]["linf_255"][7] = 9  # one image a level over the budget
    verdicts, df = _verdicts(cfg, run, isolated_artifacts)
    by_id = df.set_index("id")
    assert by_id.loc["UE-1a:largest-l-inf-distance-255:error-min", "verdict"] == "fails"
    assert by_id.loc["UE-2:clean-accuracy-error-minimising-sample-wise:error-min", "verdict"] == "untested"
    assert by_id.loc["UE-4:clean-accuracy-80-100-unlearnable", "verdict"] == "untested"
    assert by_id.loc["UE-2:clean-accuracy-error-minimising-class-wise:error-min-class", "verdict"] == "holds"
    # the noise does nothing: the headline fails, and so does UE-4 (no gap to vanish)
    verdicts, df = _verdicts(cfg, _run(cfg, error_min=[0.80, 0.81, 0.79]), isolated_artifacts)
    by_id = df.set_index("id")
    assert by_id.loc["UE-2:clean-accuracy-error-minimising-sample-wise:error-min", "verdict"] == "fails"
    assert by_id.loc["UE-4:clean-accuracy-80-100-unlearnable", "verdict"] == "fails"
    # random noise that destroys the data fails its control
    verdicts, df = _verdicts(cfg, _run(cfg, random=[0.3, 0.32]), isolated_artifacts)
    assert df.set_index("id").loc["UE-2:clean-accuracy-clean-random-sample-wise:random", "verdict"] == "fails"


def test_the_power_table_covers_the_three_headlines():
    table = R.power_analysis(load_config(PAPER, "cpu"))
    assert len(table) == 3 and (table["units (this profile)"] == 3).all()
    assert (table.filter(like="power at 0.05").to_numpy() >= 0.9).all()
    assert np.isfinite(table.filter(like="units for").to_numpy(float)).all()
