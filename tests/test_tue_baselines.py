"""Four availability baselines of Transferable Unlearnable Examples (notebook 14) on toy problems:
TensorClog, the gradient-alignment attack, the NTGA stand-in and contrastive poisoning (CP-S);
each lowers (or raises) its own objective, stays in the budget, registers, and refuses bad input."""
import inspect

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from poisonrepro import models as M
from poisonrepro import registry
from poisonrepro.attacks import alignment as AL
from poisonrepro.attacks import availability as AV
from poisonrepro.attacks import contrastive_poisoning as CP
from poisonrepro.attacks import ntga as NT
from poisonrepro.attacks import tensorclog as TC
from poisonrepro.learners.contrastive import mlp

from toy_models import colour_toy, small_net, trained_net  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 8 / 255
N, K, SIZE = 60, 3, 8


def _toy(n=N, seed=0):
    return colour_toy(n, K, SIZE, seed)


def _net(seed=0):
    return small_net(K, seed)


def _trained(x, y, epochs=30, seed=0):
    return trained_net(x, y, K, epochs, seed)


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def _assert_budget(art, x):
    """Sample-wise noise in whole levels within 8/255; the spoiled images within the budget and range."""
    labels = torch.zeros(len(x), dtype=torch.long)  # sample-wise: the labels only index the samples
    assert art["delta_levels"].dtype == torch.int8 and art["delta_levels"].shape == x.shape
    assert not bool(art["by_class"]) and torch.equal(art["groups"], torch.arange(len(x)))
    assert 0 < int(art["delta_levels"].abs().max()) <= 8
    for images in (x, x.float() / 255):
        spoiled = AV.apply_noise(images, labels, art)[0]
        scale = 255 if images.dtype == torch.uint8 else 1
        assert float((spoiled.float() - images.float()).abs().max()) / scale <= EPS + 1e-6
        unit = spoiled.float() / scale
        assert float(unit.min()) >= 0 and float(unit.max()) <= 1


def _spoiled(x, art):
    return AV.apply_noise(x, torch.zeros(len(x), dtype=torch.long), art)[0]


@pytest.fixture(scope="module")
def toy():
    return _toy()


@pytest.fixture(scope="module")
def validation():
    return _toy(n=30, seed=1)


def test_the_four_baselines_register_for_notebook_14_with_a_full_taxonomy():
    for name, fn in (("tensorclog", TC.craft_tensorclog), ("alignment", AL.craft_alignment),
                     ("ntga", NT.craft_ntga), ("contrastive_poisoning", CP.craft_contrastive_poisoning)):
        method = registry.get(name)
        assert method.notebook == "14_tue" and method.function is fn
        assert set(method.taxonomy) == set(registry.ALLOWED)
        assert method.taxonomy["violation"] == "availability" and method.taxonomy["universality"] == "individual"
    assert "STAND-IN" in registry.get("ntga").summary


# --------------------------------------------------------------------------- TensorClog
@pytest.fixture(scope="module")
def tensorclog(toy):
    x, y = toy
    net = _net(3)  # an untrained model: its gradient on the data is far from zero
    before = _state(net)
    net.train()
    art = TC.craft_tensorclog(net, x, y, steps=15, step_size=1 / 255, batch_size=30)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    return net, art


def test_tensorclog_lowers_the_gradient_norm_and_stays_in_the_budget(toy, tensorclog):
    x, y = toy
    net, art = tensorclog
    clean = TC.gradient_norm(net, x, y, batch_size=30)
    assert float(art["grad_norm_clean"]) == pytest.approx(clean, rel=1e-5)
    poisoned = TC.gradient_norm(net, _spoiled(x, art), y, batch_size=30)
    assert poisoned < 0.95 * clean, (poisoned, clean)
    history = art["loss_history"]
    assert len(history) == 15 and history[-1] < history[0]
    _assert_budget(art, x)


def test_tensorclog_takes_the_last_layer_by_default():
    net = _net()
    assert TC.clogged_parameters(net) == list(net[-1].parameters())
    assert len(TC.clogged_parameters(net, "all")) == 4
    classifier = M.Classifier(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), 5, K, None)
    assert TC.clogged_parameters(classifier) == list(classifier.head.parameters())


def test_tensorclog_refuses_bad_input(toy):
    x, y = toy
    net = _net()
    for kwargs, match in (({"eps": 8}, "8/255"), ({"step_size": 0.1}, "step_size"), ({"steps": 0}, "steps"),
                          ({"layers": "middle"}, "layers"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=match):
            TC.craft_tensorclog(net, x, y, **kwargs)
    with pytest.raises(ValueError, match="labels"):
        TC.craft_tensorclog(net, x, y[:-1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TC.craft_tensorclog(net, x.float(), y)
    with pytest.raises(ValueError, match="nn.Module"):
        TC.craft_tensorclog("net", x, y)


# --------------------------------------------------------------------------- Alignment
@pytest.fixture(scope="module")
def aligned(toy, validation):
    x, y = toy
    xv, yv = validation
    net = _trained(x, y)
    before = _state(net)
    art = AL.craft_alignment(net, x, y, xv, yv, steps=16, step_size=2 / 255, batch_size=N, augment=False)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    return net, art


def test_alignment_raises_the_cosine_with_the_validation_ascent_and_stays_in_the_budget(toy, validation, aligned):
    x, y = toy
    xv, yv = validation
    net, art = aligned
    history = art["alignment_history"]
    assert len(history) == 16 and history[-1] > history[0] + 0.1, history
    clean = AL.alignment(net, x, y, xv, yv, batch_size=N)
    assert float(art["alignment_clean"]) == pytest.approx(clean, abs=1e-5)
    poisoned = AL.alignment(net, _spoiled(x, art), y, xv, yv, batch_size=N)
    assert poisoned > clean + 0.1, (poisoned, clean)
    # the objective is Witches' Brew's cosine distance against the negated validation gradient
    target = AL.validation_ascent_gradient(net, xv, yv)
    loss = float(AL.WB.gradient_matching_loss(net, x.float() / 255, y, target, create_graph=False))
    assert 1 - loss == pytest.approx(clean, abs=1e-5)
    _assert_budget(art, x)


def test_alignment_refuses_bad_input(toy, validation):
    x, y = toy
    xv, yv = validation
    net = _net()
    for kwargs, match in (({"eps": 8}, "8/255"), ({"step_size": 0.5}, "step_size"), ({"steps": 0}, "steps"),
                          ({"restarts": 0}, "restarts"), ({"augment": "yes"}, "augment")):
        with pytest.raises(ValueError, match=match):
            AL.craft_alignment(net, x, y, xv, yv, **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        AL.craft_alignment(net, x, y, xv[:, :, :4, :4], yv)
    with pytest.raises(ValueError, match="validation set"):
        AL.craft_alignment(net, x, y, xv, yv[:-1])


# --------------------------------------------------------------------------- NTGA (stand-in)
NTGA_SETTINGS = dict(t=64.0, block=30, width=64, depth=2, seed=0)


@pytest.fixture(scope="module")
def ntga(toy, validation):
    x, y = toy
    xv, yv = validation
    return NT.craft_ntga(x, y, xv, yv, steps=10, **NTGA_SETTINGS)


def test_ntga_raises_the_surrogate_validation_loss_and_stays_in_the_budget(toy, validation, ntga):
    x, y = toy
    xv, yv = validation
    clean = NT.surrogate_loss(x, y, xv, yv, **NTGA_SETTINGS)
    assert float(ntga["val_loss_clean"]) == pytest.approx(clean, rel=1e-5)
    poisoned = NT.surrogate_loss(_spoiled(x, ntga), y, xv, yv, **NTGA_SETTINGS)
    assert poisoned > clean, (poisoned, clean)
    history = ntga["loss_history"]
    assert len(history) == 10 and history[-1] > history[0]
    assert float(history[0]) == pytest.approx(clean, rel=1e-5)  # a zero start: the first pass is the clean set
    _assert_budget(ntga, x)


def test_the_empirical_ntk_is_the_jacobian_inner_product_and_the_predictor_interpolates():
    from torch.func import functional_call, jacrev
    torch.manual_seed(0)
    net = NT.NTKNetwork(12, width=16, depth=2).double()
    x = torch.rand(5, 3, 2, 2, dtype=torch.float64)
    params = {k: v.detach() for k, v in net.named_parameters()}
    jac = jacrev(lambda p: functional_call(net, p, (x,)))(params)
    jacobian = torch.cat([j.reshape(len(x), -1) for j in jac.values()], 1)
    assert torch.allclose(NT.empirical_ntk(net, x), jacobian @ jacobian.T, rtol=1e-9, atol=1e-9)
    assert torch.allclose(NT.empirical_ntk(net, x[:2], x), (jacobian @ jacobian.T)[:2], rtol=1e-9, atol=1e-9)
    # the kernel is differentiable w.r.t. the inputs
    xg = x.clone().requires_grad_(True)
    NT.empirical_ntk(net, xg).sum().backward()
    assert xg.grad.abs().sum() > 0
    # trained long enough, gradient descent on the training set fits its targets
    kernel = NT.empirical_ntk(net, x)
    targets = F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).double()
    assert torch.allclose(NT.ntk_predictor(kernel, kernel, targets, t=1e5), targets, atol=1e-2)
    assert torch.allclose(NT.ntk_predictor(kernel, kernel, targets, t=1e-9), torch.zeros_like(targets), atol=1e-6)


def test_ntga_refuses_bad_input(toy, validation):
    x, y = toy
    xv, yv = validation
    for kwargs, match in (({"eps": 8}, "8/255"), ({"loss": "hinge"}, "loss"), ({"t": 0}, "t=0"),
                          ({"block": 1}, "block"), ({"width": 0}, "width"), ({"steps": 0}, "steps"),
                          ({"step_size": 0.5}, "step_size")):
        with pytest.raises(ValueError, match=match):
            NT.craft_ntga(x, y, xv, yv, **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        NT.craft_ntga(x, y, xv[:, :, :4, :4], yv)
    with pytest.raises(ValueError, match="validation set"):
        NT.craft_ntga(x, y, xv.float(), yv)


# --------------------------------------------------------------------------- contrastive poisoning (CP-S)
def _encoder(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())


CP_VIEWS = dict(temperature=0.5, batch_size=24, crop_scale=(0.6, 1.0))


@pytest.fixture(scope="module")
def poisoned_encoder():
    x, _ = _toy(n=48, seed=2)
    encoder = _encoder()
    torch.manual_seed(1)
    projector = mlp([128, 32, 16])
    art = CP.craft_contrastive_poisoning(encoder, x, rounds=3, noise_steps=10, train_steps=5, step_size=1 / 255,
                                         lr=0.05, projector=projector, seed=0, **CP_VIEWS)
    return x, encoder, projector, art


def test_contrastive_poisoning_lowers_the_nt_xent_loss_and_stays_in_the_budget(poisoned_encoder):
    x, encoder, projector, art = poisoned_encoder
    assert encoder.training and projector.training  # modes restored (train, as built)
    clean = CP.contrastive_loss(encoder, projector, x, seed=5, **CP_VIEWS)
    poisoned = CP.contrastive_loss(encoder, projector, _spoiled(x, art), seed=5, **CP_VIEWS)
    assert poisoned < clean, (poisoned, clean)
    assert float(art["loss_poisoned"]) < float(art["loss_clean"])
    assert len(art["loss_history"]) == 30 and len(art["train_loss"]) == 3
    _assert_budget(art, x)


def test_contrastive_poisoning_uses_no_labels_and_a_differentiable_augmentation():
    parameters = inspect.signature(CP.craft_contrastive_poisoning).parameters
    assert not {"y", "labels", "targets"} & set(parameters)
    x = torch.rand(4, 3, SIZE, SIZE, requires_grad=True)
    view = CP.differentiable_view(x, torch.Generator().manual_seed(0))
    assert view.shape == x.shape and float(view.detach().min()) >= 0 and float(view.detach().max()) <= 1
    view.sum().backward()
    assert x.grad.abs().sum() > 0
    again = CP.differentiable_view(x.detach(), torch.Generator().manual_seed(0))
    assert torch.equal(view.detach(), again)


def test_contrastive_poisoning_refuses_bad_input():
    x, _ = _toy(n=8)
    encoder = _encoder()
    for kwargs, match in (({"eps": 8}, "8/255"), ({"step_size": 0.5}, "step_size"), ({"rounds": 0}, "rounds"),
                          ({"noise_steps": 0}, "noise_steps"), ({"batch_size": 1}, "batch_size"),
                          ({"temperature": 0}, "temperature"), ({"crop_scale": (0.5, 1.5)}, "crop_scale"),
                          ({"projector": "mlp"}, "projector")):
        with pytest.raises(ValueError, match=match):
            CP.craft_contrastive_poisoning(encoder, x, **kwargs)
    with pytest.raises(ValueError, match="two images"):
        CP.craft_contrastive_poisoning(encoder, x[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CP.craft_contrastive_poisoning(encoder, x.float())
    with pytest.raises(ValueError, match="encoder"):
        CP.craft_contrastive_poisoning("encoder", x)
