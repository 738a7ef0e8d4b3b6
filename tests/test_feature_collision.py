import pytest
import torch

from poisonrepro import models
from poisonrepro.attacks.feature_collision import (Resized, beta_01, collision_objective, craft_poisons, paper_beta,
                                                   perturbation_size, watermark)


def _setup(seed=0, n=4):
    torch.manual_seed(seed)
    net = models.convnet(num_classes=2, width=4).eval()
    base, target = torch.rand(n, 3, 32, 32), torch.rand(n, 3, 32, 32)
    return net, base, target


def test_crafting_lowers_the_objective_and_keeps_images_in_range():
    net, base, target = _setup()
    beta = paper_beta(0.25, net.feature_dim, 3 * 32 * 32) / 255 ** 2  # a weak penalty: the collision dominates
    poisons, history = craft_poisons(net, base, target, beta=beta, iters=60, lr=0.05)
    assert history.shape[1] == len(base)
    assert (history[-1] < 0.5 * history[0]).all(), "every pair's objective should fall"
    assert poisons.min() >= 0 and poisons.max() <= 1
    with torch.no_grad():
        d_before = (net.features(base) - net.features(target)).norm(dim=1)
        d_after = (net.features(poisons) - net.features(target)).norm(dim=1)
    assert (d_after < d_before).all()


def test_history_matches_the_objective_of_eq1():
    net, base, target = _setup(n=2)
    poisons, history = craft_poisons(net, base, target, beta=0.3, iters=5, lr=0.05)
    with torch.no_grad():
        obj = collision_objective(net, poisons, net.features(target), base, 0.3)
    assert torch.allclose(history[-1], obj, rtol=1e-4)


def test_large_beta_keeps_the_poison_near_its_base():
    net, base, target = _setup()
    loose, _ = craft_poisons(net, base, target, beta=0.001, iters=40, lr=0.05)
    tight, _ = craft_poisons(net, base, target, beta=1000.0, iters=40, lr=0.05)
    assert (tight - base).norm() < 0.1 * (loose - base).norm()


def test_crafting_restores_the_models_trainable_flags():
    net, base, target = _setup(n=1)
    for p in net.body.parameters():
        p.requires_grad_(False)
    craft_poisons(net, base, target, beta=0.1, iters=2, lr=0.05)
    assert all(not p.requires_grad for p in net.body.parameters())
    assert all(p.requires_grad for p in net.head.parameters())


def test_watermark_blends_at_the_given_opacity():
    b, t = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert torch.allclose(watermark(b, t, 0.3), torch.full_like(b, 0.3))


def test_paper_beta_formula_on_the_0_1_pixel_scale():
    # Eq. 2, beta0 * 2048^2 / dim_b^2, is stated for pixels in [0, 255]; on [0, 1] the same
    # penalty needs a beta 255^2 times larger
    assert paper_beta(0.25, 2048, 299 * 299 * 3) == pytest.approx(0.25 * 2048 ** 2 / (299 * 299 * 3) ** 2 * 255 ** 2)
    assert paper_beta(0.25, 2048, 3 * 32 * 32) == pytest.approx(7225.0)
    assert beta_01(0.1) == pytest.approx(6502.5)  # the end-to-end experiment's raw beta


def test_poisons_at_the_paper_beta_are_small_and_bounded_by_the_objective():
    """Fails on the old code (beta 255^2 times too small on [0, 1]), whose poisons moved
    tens of pixel levels (median L-inf 207/255 on the stand-in)."""
    torch.manual_seed(0)
    net = models.convnet(num_classes=2, width=8).eval()
    base, target = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    beta = paper_beta(0.25, net.feature_dim, 3 * 32 * 32)
    poisons, history = craft_poisons(net, base, target, beta=beta, iters=200, lr=0.05)
    size = perturbation_size(poisons, base)
    assert (size["linf_255"] < 16).all(), size["linf_255"]
    # the objective never rises above its start, so beta ||x - b||^2 <= ||f(b) - f(t)||^2
    with torch.no_grad():
        d0 = (net.features(base) - net.features(target)).norm(dim=1)
    assert (size["l2_255"] / 255 <= d0 / beta ** 0.5 + 1e-6).all()
    # the same net and images at the old, 255^2 times smaller beta: far larger poisons
    weak, _ = craft_poisons(net, base, target, beta=beta / 255 ** 2, iters=200, lr=0.05)
    assert (perturbation_size(weak, base)["linf_255"] > 30).all()


def test_resized_network_lets_poisons_live_at_a_higher_resolution():
    torch.manual_seed(0)
    net = models.convnet(num_classes=2, width=4).eval()
    big = Resized(net, 32)
    base, target = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert big.features(base).shape == (2, net.feature_dim)
    poisons, history = craft_poisons(big, base, target, beta=paper_beta(0.25, net.feature_dim, 3 * 64 * 64) / 255 ** 2,
                                     iters=30, lr=0.05)
    assert poisons.shape == base.shape and (history[-1] < history[0]).all()
