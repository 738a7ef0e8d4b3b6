"""Unlearnable Examples' noises (Huang et al. 2021) on a toy problem: error-minimising noise
(sample-wise and class-wise), uniform random noise and error-maximising noise; their budget,
their objectives, bad input, and the producer that spoils a share of a training set."""
import pytest
import torch
import torch.nn as nn

from poisonrepro import evaluation
from poisonrepro.attacks import availability as AV
from poisonrepro.attacks import error_maximizing as EMAX
from poisonrepro.attacks import error_minimizing as EMIN
from poisonrepro.attacks import random_noise as RN
from poisonrepro.cache import ArtifactCache

from toy_models import colour_toy, mean_loss, small_net, trained_net  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 8 / 255
N, K, SIZE = 240, 4, 8


def _toy(n=N, seed=0):
    return colour_toy(n, K, SIZE, seed)


def _net(seed=0):
    return small_net(K, seed)


def _trained(x, y, epochs=30, seed=0):
    return trained_net(x, y, K, epochs, seed)


_loss = mean_loss


@pytest.fixture(scope="module")
def toy():
    return _toy()


@pytest.fixture(scope="module")
def samplewise(toy):
    x, y = toy
    net = _net()
    art = EMIN.craft_error_minimizing(net, x, y, max_rounds=15, batch_size=64, train_steps=10, lr=0.05, seed=0)
    return net, art


@pytest.fixture(scope="module")
def classwise(toy):
    x, y = toy
    net = _net(1)
    art = EMIN.craft_error_minimizing_classwise(net, x, y, subset=0.5, noise_steps=5, max_rounds=10,
                                                batch_size=64, lr=0.05, seed=0)
    return net, art


def _spoiled(x, y, art):
    return AV.apply_noise(x, y, art)[0]


# --------------------------------------------------------------------------- the budget
@pytest.mark.parametrize("which", ["samplewise", "classwise", "random_sample", "random_class", "error_max"])
def test_every_noise_stays_in_the_budget_and_the_pixel_range(which, toy, request):
    x, y = toy
    art = {"samplewise": lambda: request.getfixturevalue("samplewise")[1],
           "classwise": lambda: request.getfixturevalue("classwise")[1],
           "random_sample": lambda: RN.random_noise(x, y, seed=3),
           "random_class": lambda: RN.random_noise_classwise(x, y, seed=3),
           "error_max": lambda: EMAX.craft_error_maximizing(_trained(x, y), x, y, steps=5)}[which]()
    assert art["delta_levels"].dtype == torch.int8
    assert int(art["delta_levels"].abs().max()) == 8  # the budget is used, and not exceeded
    for images in (x, x.float() / 255):  # uint8 and float training sets
        spoiled = _spoiled(images, y, art)
        assert spoiled.dtype == images.dtype
        diff = (spoiled.float() - images.float()) / (255 if images.dtype == torch.uint8 else 1)
        assert float(diff.abs().max()) <= EPS + 1e-6
        as_unit = spoiled.float() / 255 if images.dtype == torch.uint8 else spoiled
        assert float(as_unit.min()) >= 0 and float(as_unit.max()) <= 1
    assert (spoiled != x.float() / 255).any()


def test_rounding_to_pixel_levels_never_leaves_the_budget():
    delta = torch.tensor([EPS, -EPS, 7.5 / 255, 0.03, -0.0313]).view(5, 1, 1, 1)
    levels = AV.noise_artifact(delta, eps=EPS, by_class=True)["delta_levels"].flatten().tolist()
    assert levels == [8, -8, 8, 8, -8]
    # a budget between levels: the rounding is clamped to the whole levels inside it
    assert AV.noise_artifact(torch.full((1, 1, 1, 1), 0.03), eps=0.03, by_class=True)["delta_levels"].item() == 7


def test_class_wise_noise_is_identical_within_a_class(toy, classwise):
    x, y = toy
    _, art = classwise
    assert bool(art["by_class"]) and art["delta_levels"].shape == (K, 3, SIZE, SIZE)
    deltas = AV.deltas_of(art, y)
    for c in range(K):
        members = deltas[y == c]
        assert torch.equal(members, members[:1].expand_as(members))
    assert not torch.equal(deltas[y == 0][0], deltas[y == 1][0])
    # on the images too, wherever no pixel was clipped
    spoiled = _spoiled(x, y, art).short() - x.short()
    inside = (x.short() + art["delta_levels"][y].short() >= 0) & (x.short() + art["delta_levels"][y].short() <= 255)
    assert torch.equal(spoiled[inside], art["delta_levels"][y].short()[inside])


# --------------------------------------------------------------------------- the objectives
def test_error_minimizing_noise_lowers_its_objective_against_clean_data_and_random_noise(toy, samplewise):
    x, y = toy
    net, art = samplewise
    noisy = _loss(net, _spoiled(x, y, art), y)
    clean = _loss(net, x, y)
    random = _loss(net, _spoiled(x, y, RN.random_noise(x, y, seed=5)), y)
    assert noisy < 0.6 * clean and noisy < 0.6 * random, (noisy, clean, random)
    # the min-min stopped on the paper's condition: the surrogate's error on the noisy data < 0.01
    assert bool(art["stopped"]) and float(art["train_error"]) < 0.01
    assert int(art["rounds"]) < 15 and len(art["round_errors"]) == int(art["rounds"])


def test_error_minimizing_noise_against_a_fixed_model_lowers_its_loss(toy):
    # train_steps=0: no model step, the inner minimisation alone against a trained model
    x, y = toy
    net = _trained(x, y)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    art = EMIN.craft_error_minimizing(net, x, y, train_steps=0, noise_steps=10, max_rounds=1, stop_error=0.0,
                                      batch_size=120)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    noisy, clean = _loss(net, _spoiled(x, y, art), y), _loss(net, x, y)
    random = _loss(net, _spoiled(x, y, RN.random_noise(x, y, seed=1)), y)
    assert noisy < 0.5 * clean and noisy < random
    assert art["loss_history"][-1] < art["loss_history"][0]


def test_class_wise_error_minimizing_noise_lowers_its_objective(toy, classwise):
    x, y = toy
    net, art = classwise
    noisy, clean = _loss(net, _spoiled(x, y, art), y), _loss(net, x, y)
    random = _loss(net, _spoiled(x, y, RN.random_noise_classwise(x, y, seed=2)), y)
    assert noisy < 0.6 * clean and noisy < 0.6 * random, (noisy, clean, random)


def test_error_maximizing_noise_raises_a_fixed_models_loss(toy):
    x, y = toy
    net = _trained(x, y)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    art = EMAX.craft_error_maximizing(net, x, y, steps=10, batch_size=120)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    noisy, clean = _loss(net, _spoiled(x, y, art), y), _loss(net, x, y)
    random = _loss(net, _spoiled(x, y, RN.random_noise(x, y, seed=1)), y)
    assert noisy > 2 * clean and noisy > 2 * random, (noisy, clean, random)
    # class-targeted (Fowl et al.): the loss of the next class falls
    targeted = EMAX.craft_error_maximizing(net, x, y, steps=10, batch_size=120, targeted=True)
    nxt = (y + 1) % K
    assert _loss(net, _spoiled(x, y, targeted), nxt) < 0.8 * _loss(net, x, nxt)


def test_random_noise_is_seeded(toy):
    x, y = toy
    a, b, c = RN.random_noise(x, y, seed=0), RN.random_noise(x, y, seed=0), RN.random_noise(x, y, seed=1)
    assert torch.equal(a["delta_levels"], b["delta_levels"]) and not torch.equal(a["delta_levels"], c["delta_levels"])
    levels = a["delta_levels"].float()
    assert abs(float(levels.mean())) < 0.2 and float(levels.std()) > 4  # spread over the ball, centred
    cls = RN.random_noise(x, y, mode="class", num_classes=K + 2, seed=0)
    assert cls["delta_levels"].shape == (K + 2, 3, SIZE, SIZE) and bool(cls["by_class"])


# --------------------------------------------------------------------------- bad input
class _Refuses(nn.Module):
    def forward(self, x):
        raise AssertionError("computed before the input was checked")


@pytest.mark.parametrize("call, match", [
    (lambda x, y: EMIN.craft_error_minimizing(_Refuses(), x, y, eps=8), "8/255, not 8"),
    (lambda x, y: EMIN.craft_error_minimizing(_Refuses(), x, y, mode="pixel"), "mode='pixel'.*'sample', 'class'"),
    (lambda x, y: EMIN.craft_error_minimizing(_Refuses(), x, y, step_size=1 / 255, eps=0.5 / 255), "step_size"),
    (lambda x, y: EMIN.craft_error_minimizing(_Refuses(), x, y, stop_error=1.5), "stop_error"),
    (lambda x, y: EMIN.craft_error_minimizing(_Refuses(), x, y, subset=0.2), "subset"),
    (lambda x, y: EMIN.craft_error_minimizing_classwise(_Refuses(), x, y, max_rounds=0), "max_rounds"),
    (lambda x, y: EMIN.craft_error_minimizing(_Refuses(), x * 255.0, y), "divide by 255"),
    (lambda x, y: EMIN.craft_error_minimizing(_Refuses(), x, y.float()), "integer labels"),
    (lambda x, y: EMAX.craft_error_maximizing(_Refuses(), x, y, eps=8), "8/255, not 8"),
    (lambda x, y: EMAX.craft_error_maximizing(_Refuses(), x, y, steps=0), "steps"),
    (lambda x, y: RN.random_noise(x, y, eps=8), "8/255, not 8"),
    (lambda x, y: RN.random_noise(x, y, mode="cluster"), "mode='cluster'"),
    (lambda x, y: RN.random_noise(x, y, mode="class", num_classes=2), "num_classes"),
])
def test_bad_input_fails_before_any_compute(call, match):
    x, y = _toy(40)
    x = x.float() / 255
    with pytest.raises(ValueError, match=match):
        call(x, y)


# --------------------------------------------------------------------------- the producer
@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.55, 1.0])
def test_the_producer_poisons_exactly_the_requested_share_of_the_training_set(fraction, toy):
    x, y = toy
    art = RN.random_noise(x, y, seed=0)
    out, labels, mask = AV.apply_noise(x, y, art, fraction=fraction, seed=4)
    assert int(mask.sum()) == round(fraction * N) and torch.equal(labels, y)
    assert torch.equal(out[~mask], x[~mask])  # the rest untouched
    changed = (out != x).flatten(1).any(1)
    assert torch.equal(changed, mask)  # every poisoned sample changed (random noise is nowhere all zero)
    assert torch.equal(mask, AV.apply_noise(x, y, art, fraction=fraction, seed=4)[2])  # seeded
    if 0 < fraction < 1:
        assert not torch.equal(mask, AV.apply_noise(x, y, art, fraction=fraction, seed=5)[2])


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_the_producer_poisons_a_share_of_one_class(fraction, toy):
    # UE-5 (c, d): one class made unlearnable, the others clean
    x, y = toy
    art = RN.random_noise_classwise(x, y, seed=0)
    _, _, mask = AV.apply_noise(x, y, art, fraction=fraction, classes=[2])
    assert int(mask.sum()) == round(fraction * int((y == 2).sum())) and bool((y[mask] == 2).all())
    if fraction == 1.0:
        assert torch.equal(mask, y == 2)


@pytest.mark.parametrize("kwargs, match", [({"fraction": 1.5}, "fraction=1.5"), ({"fraction": -0.1}, "fraction"),
                                           ({"classes": [9]}, r"classes=\[9\]"), ({"classes": []}, "classes")])
def test_the_producer_refuses_bad_shares(kwargs, match, toy):
    x, y = toy
    with pytest.raises(ValueError, match=match):
        AV.apply_noise(x, y, RN.random_noise(x, y), **kwargs)


def test_the_producer_refuses_noise_made_for_another_set(toy):
    x, y = toy
    with pytest.raises(ValueError, match="crafted for 240 samples; the training set has 100"):
        AV.apply_noise(x[:100], y[:100], RN.random_noise(x, y))
    with pytest.raises(ValueError, match="class-wise noise for 2 classes"):
        AV.apply_noise(x, y, RN.random_noise_classwise(x[y < 2], y[y < 2]))


def test_an_evaluation_spec_spoils_its_training_set_through_the_producer(toy, isolated_artifacts, monkeypatch):
    x, y = toy
    monkeypatch.setitem(evaluation.DATASETS, "toy", evaluation.Dataset(lambda: (x, y), None, None))
    art = RN.random_noise(x, y, seed=0)
    ArtifactCache().tensors("ue_noise", "k1", lambda: art)
    spec = {"producer": "poisonrepro.attacks.availability:poison_training_set",
            "args": {"stage": "ue_noise", "key": "k1", "fraction": 0.25, "seed": 1}}
    px, py, positions = evaluation.poisoned_training_set({"name": "toy"}, spec)
    assert len(positions) == N // 4 and torch.equal(py, y)
    assert torch.equal(px, AV.apply_noise(x, y, art, fraction=0.25, seed=1)[0])
    missing = {**spec, "args": {**spec["args"], "key": "absent"}}
    with pytest.raises(FileNotFoundError, match="crafting stage"):
        evaluation.poisoned_training_set({"name": "toy"}, missing)
