"""Convex Polytope (Zhu et al. 2019): the simplex projection and least squares against scipy, the
budget, the objective going down, and the geometric claim of Fig. 1 on a planted 2-D example."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from poisonrepro.attacks import convex_polytope as CP

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


class Points(torch.nn.Module):
    """The identity feature map: the 2-D toy's "network" (its features are the points)."""
    dropout = 0.0

    def features(self, x):
        return x.flatten(1)


def test_project_simplex_matches_the_constrained_minimiser():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        v = torch.randn(1, 4, generator=gen, dtype=torch.float64) * 2
        p = CP.project_simplex(v)[0].numpy()
        ref = minimize(lambda c: ((c - v[0].numpy()) ** 2).sum(), np.full(4, 0.25), method="SLSQP",
                       bounds=[(0, 1)] * 4, constraints=[{"type": "eq", "fun": lambda c: c.sum() - 1}],
                       options={"ftol": 1e-14}).x
        assert p.min() >= 0 and abs(p.sum() - 1) < 1e-12
        np.testing.assert_allclose(p, ref, atol=1e-6)


def test_simplex_least_squares_reaches_the_optimum_from_any_warm_start():
    gen = torch.Generator().manual_seed(1)
    phi = torch.randn(3, 5, 16, generator=gen, dtype=torch.float64)
    t = torch.randn(3, 16, generator=gen, dtype=torch.float64)
    for init in (torch.full((3, 5), 0.2, dtype=torch.float64), CP.project_simplex(torch.randn(3, 5, dtype=torch.float64))):
        c = CP.simplex_least_squares(phi, t, init, tol=1e-12, max_iters=10_000)
        for i in range(3):
            f = lambda w: ((t[i].numpy() - w @ phi[i].numpy()) ** 2).sum()  # noqa: E731
            ref = minimize(f, np.full(5, 0.2), method="SLSQP", bounds=[(0, 1)] * 5,
                           constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-15}).x
            assert f(c[i].numpy()) <= f(ref) + 1e-7
            assert c[i].min() >= 0 and abs(float(c[i].sum()) - 1) < 1e-9


def test_a_target_inside_the_polytope_has_zero_loss():
    phi = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]])
    t = torch.tensor([[0.5, 0.5]])
    c = CP.simplex_least_squares(phi, t, torch.full((1, 3), 1 / 3))
    assert float(CP.polytope_loss(t, phi, c)) < 1e-10
    outside = torch.tensor([[3.0, 3.0]])
    c = CP.simplex_least_squares(phi, outside, torch.full((1, 3), 1 / 3))
    assert float(CP.polytope_loss(outside, phi, c)) > 0.05


def test_polytope_poisons_enclose_the_target_and_collision_poisons_stop_at_the_nearest_budget_point():
    # Fig. 1's geometry in 2-D feature space: no budget box reaches the target, their union
    # surrounds it. Collision's optimum is known in closed form: the point of each box nearest
    # to the target; the polytope's: poisons whose convex combination is the target.
    t = torch.tensor([0.45, 0.5])
    bases = torch.tensor([[0.45, 0.63], [0.58, 0.50]])
    eps = 0.1
    kwargs = dict(eps=eps, steps=150, lr=0.005)
    cp, _, obj = CP.craft_poisons(Points(), bases[:, :, None, None], t[None, :, None, None], **kwargs)
    fc, _, _ = CP.craft_poisons(Points(), bases[:, :, None, None], t[None, :, None, None],
                                objective="feature_collision", **kwargs)
    cp, fc = cp[0, :, :, 0, 0], fc[0, :, :, 0, 0]
    for poisons in (cp, fc):
        assert float((poisons - bases).abs().max()) <= eps + 1e-6
    c = next(iter(obj.coefficients.values()))[0]
    assert float(((c[:, None] * cp).sum(0) - t).norm()) < 1e-3
    nearest = torch.maximum(torch.minimum(t, bases + eps), bases - eps)
    assert torch.allclose(fc, nearest, atol=1e-3)
    assert float((fc - t).norm(dim=1).min()) > 0.02  # so collision cannot reach the target


def test_crafting_lowers_the_polytope_loss_in_an_ensemble_with_dropout_and_keeps_the_budget():
    from poisonrepro import models as M
    torch.manual_seed(0)
    nets = [M.with_dropout(M.convnet_bn(10, widths=(8, 8, 8), stem=8), 0.2).eval(),
            M.with_dropout(M.convnet_bn(10, widths=(8, 8, 16), stem=8), 0.3).eval()]
    gen = torch.Generator().manual_seed(0)
    bases, targets = torch.rand(3, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    eps = 8 / 255
    poisons, result, _ = CP.craft_poisons(nets, bases, targets, eps=eps, steps=25, lr=0.004,
                                          layers=("penultimate", "body.3"))
    history = result.loss_history[0]
    assert history[-5:].mean() < 0.8 * history[:3].mean()
    assert float((poisons - bases[None]).abs().max()) <= eps + 1e-6
    assert float(poisons.min()) >= 0 and float(poisons.max()) <= 1


def test_crafting_with_dropout_depends_on_its_seed_not_on_the_global_rng():
    # the poisons are a function of the inputs and the seed: what ran before in the process (which
    # stages the cache returned) must not change them
    from poisonrepro import models as M
    torch.manual_seed(0)
    nets = [M.with_dropout(M.convnet_bn(10, widths=(8, 8, 8), stem=8), 0.3).eval()]
    gen = torch.Generator().manual_seed(0)
    bases, targets = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(1, 3, 16, 16, generator=gen)
    crafted = []
    for global_seed, seed in ((1, 0), (2, 0), (1, 1)):
        torch.manual_seed(global_seed)
        crafted.append(CP.craft_poisons(nets, bases, targets, eps=8 / 255, steps=5, lr=0.004, seed=seed)[0])
    assert torch.equal(crafted[0], crafted[1])
    assert not torch.equal(crafted[0], crafted[2])  # the seed does draw the masks


@pytest.mark.parametrize("kwargs,match", [
    (dict(eps=25.5), "did you mean 25.5/255"),
    (dict(models=[]), "ensemble of size 0"),
    (dict(objective="poison_frogs"), "unknown; allowed"),
    (dict(base_labels=[8, 8], target_labels=[8]), "must differ"),
])
def test_bad_input_is_refused_before_any_compute(kwargs, match):
    args = dict(models=Points(), eps=0.1)
    args.update(kwargs)
    models = args.pop("models")
    with pytest.raises(ValueError, match=match):
        CP.craft_poisons(models, torch.rand(2, 2, 1, 1), torch.rand(1, 2, 1, 1), **args)


def test_project_floored_simplex_matches_the_constrained_minimiser():
    gen = torch.Generator().manual_seed(2)
    floor = 0.05
    for _ in range(20):
        v = torch.randn(1, 4, generator=gen, dtype=torch.float64) * 2
        p = CP.project_floored_simplex(v, floor)[0].numpy()
        ref = minimize(lambda c: ((c - v[0].numpy()) ** 2).sum(), np.full(4, 0.25), method="SLSQP",
                       bounds=[(floor, 1)] * 4, constraints=[{"type": "eq", "fun": lambda c: c.sum() - 1}],
                       options={"ftol": 1e-14}).x
        assert p.min() >= floor - 1e-12 and abs(p.sum() - 1) < 1e-12
        np.testing.assert_allclose(p, ref, atol=1e-6)
    assert torch.equal(CP.project_floored_simplex(v, 0.0), CP.project_simplex(v))
    with pytest.raises(ValueError, match="floor"):
        CP.project_floored_simplex(v, 0.25)  # 4 x 0.25 = 1 leaves nothing to choose


def test_every_poison_moves_in_notebook_04s_setting():
    """Notebook 04 crafts on one network without dropout (10 poisons at cpu, eps 8/255, the default
    step, uint8 images): on the old code (no coefficient floor) the poisons whose simplex
    coefficient was 0 at every step got no gradient and stayed at their bases (04's median L-inf was
    0). Every poison must move by at least one pixel level, so that it survives 04's rounding to
    uint8."""
    from poisonrepro import models as M
    torch.manual_seed(0)
    net = M.convnet_bn(10, widths=(8, 8, 8), stem=8).eval()
    gen = torch.Generator().manual_seed(0)
    bases = (torch.rand(10, 3, 16, 16, generator=gen) * 255).round().to(torch.uint8)
    target = (torch.rand(1, 3, 16, 16, generator=gen) * 255).round().to(torch.uint8)
    poisons, _, obj = CP.craft_poisons([net], bases, target, eps=8 / 255, steps=20, seed=0,
                                       base_labels=torch.full((10,), 3), target_labels=torch.tensor([5]))
    pixels = (poisons[0] * 255).round()  # as 04 stores them
    moved = (pixels - bases.float()).flatten(1).abs().amax(1)
    assert (moved >= 1).all(), moved
    assert float(next(iter(obj.coefficients.values())).min()) >= CP.COEFFICIENT_FLOOR / 10 - 1e-9


def test_poisons_off_the_nearest_face_move_only_with_the_coefficient_floor():
    # 2-D features (the points themselves): the target lies left of ten bases; the simplex least
    # squares puts all weight on the bases of the polytope's left face, so the others get no
    # gradient without a floor (the authors' algorithm), and move towards the target with one
    t = torch.tensor([0.5, 0.5])
    ys = torch.linspace(0.3, 0.7, 5)
    bases = torch.cat([torch.stack([torch.full((5,), 0.7), ys], 1), torch.stack([torch.full((5,), 0.9), ys], 1)])
    kwargs = dict(eps=0.05, steps=30, lr=0.005)
    stuck, _, _ = CP.craft_poisons(Points(), bases[:, :, None, None], t[None, :, None, None],
                                   coefficient_floor=0.0, **kwargs)
    moved, _, _ = CP.craft_poisons(Points(), bases[:, :, None, None], t[None, :, None, None], **kwargs)
    far = bases[:, 0] > 0.8
    assert torch.equal(stuck[0, far, :, 0, 0], bases[far])
    assert ((moved[0, :, :, 0, 0] - bases).abs().amax(1) > 0.01).all()
    assert float((moved[0, :, :, 0, 0] - bases).abs().max()) <= 0.05 + 1e-6
