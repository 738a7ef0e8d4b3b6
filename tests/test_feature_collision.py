import torch

from poisonrepro import models
from poisonrepro.attacks.feature_collision import collision_objective, craft_poisons, paper_beta, watermark


def _setup(seed=0, n=4):
    torch.manual_seed(seed)
    net = models.convnet(num_classes=2, width=4).eval()
    base, target = torch.rand(n, 3, 32, 32), torch.rand(n, 3, 32, 32)
    return net, base, target


def test_crafting_lowers_the_objective_and_keeps_images_in_range():
    net, base, target = _setup()
    beta = paper_beta(0.25, net.feature_dim, 3 * 32 * 32)
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


def test_paper_beta_formula():
    # beta0 * 2048^2 / dim_b^2 with InceptionV3's 2048 features and 299x299x3 inputs
    assert paper_beta(0.25, 2048, 299 * 299 * 3) == 0.25 * 2048 ** 2 / (299 * 299 * 3) ** 2
