"""Two availability baselines of Unlearnable Clusters (notebook 13) on toy problems: Yu et al.'s
synthetic noise (SynPer) and the DeepConfuse stand-in; their budget, their behaviour, their
seeding and bad input."""
import copy
import math

import pytest
import torch
import torch.nn as nn

from poisonrepro import registry
from poisonrepro.attacks import availability as AV
from poisonrepro.attacks import deepconfuse as DC
from poisonrepro.attacks import random_noise as RN
from poisonrepro.attacks import synthetic_noise as SN

from toy_models import mean_loss, small_net, trained_net  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 8 / 255


def _random_images(n=40, k=4, size=16, seed=0):
    """uint8 random RGB images with labels 0..k-1 in turn: only the shape and labels matter to SynPer."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8), torch.arange(n) % k


def _toy(n=40, size=8, seed=0):
    """uint8 8x8 images of 2 classes, dark (0.35) and bright (0.65) plus mild noise: separable;
    the first two at the ends of the pixel range (all 0, class 0; all 255, class 1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = (0.35 + 0.3 * y.view(-1, 1, 1, 1).float() + 0.05 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    x[0], x[1] = 0.0, 1.0
    return (x * 255).round().to(torch.uint8), y


def _net(seed=0):
    return small_net(2, seed)


def _trained(x, y, epochs=30, seed=0):
    return trained_net(x, y, 2, epochs, seed)


_loss = mean_loss


def _spoiled(x, y, art):
    return AV.apply_noise(x, y, art)[0]


def _nearest_centroid_accuracy(deltas, y):
    flat = deltas.flatten(1)
    classes = y.unique()
    centroids = torch.stack([flat[y == c].mean(0) for c in classes])
    return float((classes[torch.cdist(flat, centroids).argmin(1)] == y).float().mean())


@pytest.fixture(scope="module")
def images():
    return _random_images()


@pytest.fixture(scope="module")
def synper(images):
    x, y = images
    return SN.synthetic_noise(x, y, seed=0)


@pytest.fixture(scope="module")
def toy():
    return _toy()


# --------------------------------------------------------------------------- synthetic noise (Yu et al.)
def test_synthetic_noise_is_sample_wise_and_stays_in_the_linf_budget(images, synper):
    x, y = images
    levels = synper["delta_levels"]
    assert levels.dtype == torch.int8 and levels.shape == (40, 3, 16, 16)
    assert not bool(synper["by_class"]) and torch.equal(synper["groups"], torch.arange(40))
    assert int(levels.abs().max()) == 8  # the L-inf clip binds (Yu et al.'s L2 budget exceeds it on some patches)
    spoiled = _spoiled(x, y, synper)
    assert int((spoiled.short() - x.short()).abs().max()) <= 8
    assert len(torch.unique(levels.flatten(1).short(), dim=0)) == 40  # one delta per sample


def test_the_l2_scaling_hits_yu_et_als_norm_and_the_clip_only_shrinks_it(images, synper):
    x, y = images
    delta = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = SN.target_l2(6 / 255, (3, 16, 16))
    assert target == pytest.approx(6 / 255 * math.sqrt(3 * 16 * 16))
    assert torch.allclose(SN.l2_normalise(delta, target).flatten(1).norm(dim=1),
                          torch.full((5,), target, dtype=torch.float64), rtol=1e-12)
    # with the default 8/255 the clip binds on some samples and never grows a norm
    assert float(synper["l2_target"]) == pytest.approx(target)
    assert bool((synper["l2_norm"] <= target * (1 + 1e-6)).all()) and bool((synper["l2_norm"] < 0.999 * target).any())
    # a budget that no value reaches (at most l2 / 4 on 4x4 patches): every norm is the target exactly
    loose = SN.synthetic_noise(x, y, eps=0.2, seed=0)
    assert torch.allclose(loose["l2_norm"], torch.full((40,), target), rtol=1e-5)
    assert int(loose["delta_levels"].abs().max()) > 8


@pytest.mark.parametrize("size, patch", [(16, 4), (8, 2)])
def test_synthetic_noise_is_a_four_by_four_grid_of_constant_patches(size, patch):
    x, y = _random_images(size=size)
    deltas = AV.deltas_of(SN.synthetic_noise(x, y, seed=1), y)
    corners = deltas[:, :, ::patch, ::patch]
    assert corners.shape[-2:] == (4, 4)
    assert torch.equal(deltas, corners.repeat_interleave(patch, 2).repeat_interleave(patch, 3))
    # a size the grid does not divide: ceil-sized patches, cropped
    odd = SN.synthetic_noise(*_random_images(size=10), seed=1)
    assert odd["delta_levels"].shape == (40, 3, 10, 10)


def test_synthetic_noise_is_a_class_shortcut(images, synper):
    _, y = images
    deltas = AV.deltas_of(synper, y)
    assert _nearest_centroid_accuracy(deltas, y) >= 0.95
    flat = deltas.flatten(1)
    dist = torch.cdist(flat, flat)
    same = (y[:, None] == y[None]) & ~torch.eye(len(y), dtype=torch.bool)
    other = y[:, None] != y[None]
    assert float(dist[same].mean()) < 0.7 * float(dist[other].mean())
    # uniform random noise is no such shortcut: the same test finds nothing near as clear
    random = AV.deltas_of(RN.random_noise(*images, seed=0), y).flatten(1)
    rdist = torch.cdist(random, random)
    assert float(rdist[same].mean()) > 0.9 * float(rdist[other].mean())


def test_synthetic_noise_follows_any_labels_and_unbalanced_classes():
    x, _ = _random_images(n=40, size=8)
    y = torch.tensor([5] * 20 + [2] * 12 + [0] * 8)[torch.randperm(40, generator=torch.Generator().manual_seed(3))]
    art = SN.synthetic_noise(x, y, seed=2)
    assert art["delta_levels"].shape == (40, 3, 8, 8)
    assert _nearest_centroid_accuracy(AV.deltas_of(art, y), y) >= 0.95


def test_synthetic_noise_is_seeded(images, synper):
    x, y = images
    assert torch.equal(SN.synthetic_noise(x, y, seed=0)["delta_levels"], synper["delta_levels"])
    assert not torch.equal(SN.synthetic_noise(x, y, seed=1)["delta_levels"], synper["delta_levels"])


# --------------------------------------------------------------------------- the DeepConfuse stand-in
def test_deepconfuse_stays_in_the_budget_and_the_pixel_range(toy):
    x, y = toy
    art = DC.craft_deepconfuse(_net(), x, y, rounds=2, classifier_steps=5, generator_steps=5, batch_size=20,
                               generator_lr=1e-2, width=4, seed=0)
    levels = art["delta_levels"]
    assert levels.dtype == torch.int8 and levels.shape == x.shape and not bool(art["by_class"])
    assert torch.equal(art["groups"], torch.arange(len(x)))
    assert 1 <= int(levels.abs().max()) <= 8
    moved = x.short() + levels.short()  # x + delta in the range already, so no clipping is needed
    assert int(moved.min()) >= 0 and int(moved.max()) <= 255
    assert torch.equal(_spoiled(x, y, art).short(), moved)
    assert len(art["generator_loss"]) == 2 and len(art["classifier_loss"]) == 2 and int(art["rounds"]) == 2
    out = DC.PerturbationGenerator(3, 4, EPS)(torch.rand(2, 3, 7, 9))
    assert out.shape == (2, 3, 7, 9) and float(out.detach().abs().max()) <= EPS + 1e-7  # eps * tanh, by construction


def test_the_generator_raises_a_fixed_classifiers_loss(toy):
    x, y = toy
    net = _trained(x, y)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    art = DC.craft_deepconfuse(net, x, y, rounds=2, classifier_steps=0, generator_steps=40, batch_size=40,
                               generator_lr=1e-2, seed=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # no classifier step
    assert all(p.requires_grad for p in net.parameters())  # frozen for the generator only
    noisy, clean = _loss(net, _spoiled(x, y, art), y), _loss(net, x, y)
    random = _loss(net, _spoiled(x, y, RN.random_noise(x, y, seed=1)), y)
    assert noisy > clean and noisy > random, (noisy, clean, random)
    history = art["generator_loss"]
    assert float(history[-1]) > float(history[0])  # the generator ascends its objective
    assert bool(art["classifier_loss"].isnan().all())


def test_the_classifier_follows_clean_training_in_place(toy):
    x, y = toy
    net = _net(1).train()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    clean_before = _loss(net, x, y)
    net.train()
    art = DC.craft_deepconfuse(net, x, y, rounds=3, classifier_steps=15, generator_steps=5, batch_size=20,
                               generator_lr=1e-2, width=4, seed=0)
    assert net.training  # its mode restored
    assert not all(torch.equal(start[k], v) for k, v in net.state_dict().items())
    assert _loss(net, x, y) < clean_before
    losses = art["classifier_loss"]
    assert len(losses) == 3 and float(losses[-1]) < float(losses[0])


def test_deepconfuse_is_seeded(toy):
    x, y = toy
    net = _net(2)

    def craft(seed):
        return DC.craft_deepconfuse(copy.deepcopy(net), x, y, rounds=2, classifier_steps=3, generator_steps=3,
                                    batch_size=16, generator_lr=1e-2, width=4, seed=seed)
    a, b, c = craft(0), craft(0), craft(1)
    assert torch.equal(a["delta_levels"], b["delta_levels"])
    assert torch.equal(a["generator_loss"], b["generator_loss"])
    assert not torch.equal(a["delta_levels"], c["delta_levels"])


# --------------------------------------------------------------------------- registration and bad input
def test_both_baselines_are_registered_for_notebook_13():
    for name, fn in (("synthetic_noise", SN.synthetic_noise), ("deepconfuse", DC.craft_deepconfuse)):
        method = registry.get(name)
        assert method.function is fn and method.notebook == "13_unlearnable_clusters"
        assert method.taxonomy["violation"] == "availability"
    assert "stand-in" in registry.get("deepconfuse").paper.lower()


class _Refuses(nn.Module):
    def forward(self, x):
        raise AssertionError("computed before the input was checked")


@pytest.mark.parametrize("call, match", [
    (lambda x, y: SN.synthetic_noise(x, y, eps=8), "8/255, not 8"),
    (lambda x, y: SN.synthetic_noise(x, y, l2_level=6), "l2_level=6"),
    (lambda x, y: SN.synthetic_noise(x, y, l2_level=0), "l2_level=0"),
    (lambda x, y: SN.synthetic_noise(x, y, class_sep=-1.0), "class_sep=-1.0"),
    (lambda x, y: SN.synthetic_noise(x, y, seed=0.5), "seed=0.5"),
    (lambda x, y: SN.synthetic_noise(x[:, :, :2, :2], y), "at least 4x4"),
    (lambda x, y: SN.synthetic_noise(x * 255.0, y), "divide by 255"),
    (lambda x, y: SN.synthetic_noise(x, y.float()), "integer labels"),
    (lambda x, y: DC.craft_deepconfuse("net", x, y), "model"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, eps=8), "8/255, not 8"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, rounds=0), "rounds=0"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, classifier_steps=-1), "classifier_steps=-1"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, generator_steps=0), "generator_steps=0"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, batch_size=0), "batch_size=0"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, width=0), "width=0"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, classifier_lr=0), "classifier_lr=0"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, generator_lr=float("nan")), "generator_lr=nan"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y, seed="0"), "seed='0'"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x * 255.0, y), "divide by 255"),
    (lambda x, y: DC.craft_deepconfuse(_Refuses(), x, y[:10]), "integer labels"),
])
def test_bad_input_fails_before_any_compute(call, match):
    x, y = _toy()
    with pytest.raises(ValueError, match=match):
        call(x.float() / 255, y)
