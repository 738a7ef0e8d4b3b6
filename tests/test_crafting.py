"""The shared crafting loop: projection, descent, restarts, groups, ensembles, callbacks, checks,
and the evasion PGD on top of it (against a verbatim copy of its former loop); a transform before
the delta (MetaPoison's colour shift): both budgets, joint descent, its penalty, restarts."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from poisonrepro import models
from poisonrepro.attacks.crafting import CraftResult, InputTransform, craft_perturbations, project_l2_box
from poisonrepro.attacks.evasion_pgd import targeted_pgd

EPS = 8 / 255


def _images(n=6, shape=(3, 4, 4), seed=0, uint8=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    x[0] = 0.0  # pixels at both ends of the range, where the pixel box binds
    x[1] = 1.0
    return (x * 255).round().to(torch.uint8) if uint8 else x


def _as_float(x):
    return x.float() / 255 if x.dtype == torch.uint8 else x


def _norms(d, norm):
    flat = d.flatten(1)
    return flat.abs().max(1).values if norm == "linf" else flat.norm(dim=1)


def _push_outwards(seed=1):
    """Per-sample objective whose gradient drives pixels towards both ends of the range."""
    weight = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return lambda model, x, idx: -(x * weight).flatten(1).sum(1)


# --------------------------------------------------------------------------- budget and range
@pytest.mark.parametrize("norm,eps", [("linf", EPS), ("l2", 0.5)])
@pytest.mark.parametrize("step_rule", ["pgd", "signadam", "adam"])
@pytest.mark.parametrize("grouping", ["sample", "clip", "intersect"])
def test_budget_and_pixel_range_hold_after_every_step(norm, eps, step_rule, grouping):
    inputs = _images(n=7, uint8=grouping == "clip")
    x = _as_float(inputs)
    groups = None if grouping == "sample" else torch.tensor([0, 1, 0, 1, 2, 2, 0])
    checked = []

    def check(state):
        delta = state.delta()
        assert (_norms(delta, norm) <= eps * (1 + 1e-6) + 1e-7).all(), "budget exceeded"
        applied = state.perturbed(torch.arange(len(x)))
        assert applied.min() >= 0 and applied.max() <= 1, "pixel range exceeded"
        assert (_norms(applied - x, norm) <= eps * (1 + 1e-6) + 1e-7).all()
        if grouping != "clip":  # the delta itself keeps every member in range, no clipping needed
            raw = x + (delta if groups is None else delta[groups])
            assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
        checked.append(state.step)

    # an adversarially large step: every step lands far outside the budget before projection
    result = craft_perturbations(inputs, _push_outwards(), eps=eps, norm=norm, steps=4, step_rule=step_rule,
                                 lr=5.0, restarts=2, init="uniform", groups=groups, group_range=
                                 "intersect" if grouping == "intersect" else "clip", batch_size=3, on_step=check)
    assert checked == [1, 2, 3, 4] * 2
    assert (_norms(result.delta, norm) <= eps * (1 + 1e-6) + 1e-7).all()
    final = result.perturbed(inputs)
    assert final.min() >= 0 and final.max() <= 1
    assert (_norms(final - x, norm) <= eps * (1 + 1e-6) + 1e-7).all()
    # the push really reaches the budget (else the checks above could not fail)
    assert _norms(result.delta, norm).max() > 0.9 * eps


def test_l2_projection_is_the_exact_euclidean_projection_onto_ball_and_box():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 12, generator=g) * 2
    low, high = -torch.rand(5, 12, generator=g), torch.rand(5, 12, generator=g)
    eps = 0.6
    d = project_l2_box(z, eps, low, high)
    assert (d.norm(dim=1) <= eps + 1e-6).all() and (d >= low).all() and (d <= high).all()
    # no feasible point is closer to z: compare against random feasible points and a
    # projected-gradient solution of the same convex problem
    ref = torch.zeros_like(z)
    for _ in range(3000):
        ref = ref - 0.05 * (ref - z)
        ref = torch.maximum(torch.minimum(ref, high), low)
        ref = ref * (eps / ref.norm(dim=1, keepdim=True).clamp_min(eps))  # stays in the box: it contains 0
    assert ((d - z).norm(dim=1) <= (ref - z).norm(dim=1) + 1e-5).all()
    naive = torch.maximum(torch.minimum(z, high), low)
    naive = naive * (eps / naive.norm(dim=1, keepdim=True).clamp_min(eps))
    assert ((d - z).norm(dim=1) < (naive - z).norm(dim=1) - 1e-4).any(), "clamp-then-scale is not the projection"


# --------------------------------------------------------------------------- descent
@pytest.mark.parametrize("step_rule,decay", [("pgd", "multistep"), ("signadam", "multistep"), ("adam", "multistep"),
                                             ("pgd", "none")])
def test_the_objective_decreases_to_the_closed_form_optimum(step_rule, decay):
    # match a target image within the L-inf budget: the optimum is the clamp of (target - x)
    x = _images(n=5)
    target = torch.rand(x.shape, generator=torch.Generator().manual_seed(7))
    objective = lambda model, xp, idx: ((xp - target[idx]) ** 2).flatten(1).sum(1)  # noqa: E731
    result = craft_perturbations(x, objective, eps=EPS, steps=40, step_rule=step_rule, lr=EPS / 4,
                                 decay=decay, batch_size=2)
    history = result.loss_history[0]
    assert history[-1] < history[0] and result.best_loss.sum() < history[0] * len(x)
    optimum = torch.maximum(torch.minimum(target - x, torch.minimum(1 - x, torch.tensor(EPS))),
                            torch.maximum(-x, torch.tensor(-EPS)))
    # sign steps oscillate around the optimum by up to the step size, which the decay shrinks;
    # Adam's momentum overshoots more (worst over 20 targets: 0.1% of eps for PGD, 10% for Adam)
    tolerance = {"pgd": 0.02 * EPS, "signadam": 0.2 * EPS, "adam": 0.2 * EPS}[step_rule] if decay == "multistep" else EPS / 4
    assert (result.delta - optimum).abs().max() <= tolerance


def test_l2_pgd_reaches_the_target_direction():
    x = torch.full((2, 3, 4, 4), 0.5)
    direction = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    objective = lambda model, xp, idx: -((xp - 0.5) * direction[idx]).flatten(1).sum(1)  # noqa: E731
    result = craft_perturbations(x, objective, eps=0.4, norm="l2", steps=30, lr=0.1, decay="multistep")
    expected = 0.4 * direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(result.delta, expected, atol=1e-3)


def test_augmentation_is_differentiable_and_seeded():
    x = _images(n=4, shape=(3, 8, 8))
    weight = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(2))
    objective = lambda model, xp, idx: -(xp * weight).flatten(1).sum(1)  # noqa: E731
    run = lambda seed: craft_perturbations(x, objective, eps=EPS, steps=3, lr=EPS / 2, augment=True,  # noqa: E731
                                           seed=seed)
    a, b, c = run(0), run(0), run(1)
    assert a.delta.abs().max() > 0, "no gradient reached the perturbation through the augmentation"
    assert torch.equal(a.delta, b.delta) and torch.equal(a.loss_history, b.loss_history)
    assert not torch.equal(a.delta, c.delta), "the seed does not drive the augmentation"
    # the gradient seen through a random flip differs from the plain one
    plain = craft_perturbations(x, objective, eps=EPS, steps=3, lr=EPS / 2)
    assert not torch.equal(a.delta, plain.delta)


# --------------------------------------------------------------------------- restarts
def _bumpy(model, x, idx):
    """Non-convex per-sample objective: restarts from random starts end in different minima."""
    return torch.cos(40 * x).flatten(1).sum(1)


@pytest.mark.parametrize("grouping", ["sample", "class"])
def test_restarts_keep_the_best_per_group(grouping):
    x = _images(n=6)
    groups = None if grouping == "sample" else torch.tensor([0, 1, 2, 0, 1, 2])
    kwargs = dict(eps=EPS, steps=3, lr=EPS / 3, init="uniform", groups=groups, batch_size=4)
    result = craft_perturbations(x, _bumpy, restarts=3, seed=10, **kwargs)
    singles = [craft_perturbations(x, _bumpy, restarts=1, seed=10 + r, **kwargs) for r in range(3)]
    losses = torch.stack([s.best_loss for s in singles])
    assert torch.allclose(result.restart_loss, losses)
    assert (losses.argmin(0) != losses.argmin(0)[0]).any(), "restarts should win different groups"
    assert torch.equal(result.best_loss, losses.min(0).values)
    assert torch.equal(result.best_restart, losses.argmin(0))
    for g, r in enumerate(result.best_restart.tolist()):
        assert torch.allclose(result.delta[g], singles[r].delta[g])
    # keep_best="all": the whole restart with the lowest total
    whole = craft_perturbations(x, _bumpy, restarts=3, seed=10, keep_best="all", **kwargs)
    best = int(losses.sum(1).argmin())
    assert torch.allclose(whole.delta, singles[best].delta) and (whole.best_restart == best).all()


# --------------------------------------------------------------------------- groups
def test_a_classwise_delta_is_shared_and_follows_the_summed_gradient():
    x = _images(n=9, shape=(3, 4, 4))  # samples 0 and 1 (classes 0 and 1) sit at the pixel bounds
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    weight = torch.randn(9, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    objective = lambda model, xp, idx: (xp * weight[idx]).flatten(1).sum(1)  # noqa: E731
    # batches of 2 split every class over several batches: the gradient must still be summed
    result = craft_perturbations(x, objective, eps=EPS, steps=1, lr=EPS / 2, groups=labels, batch_size=2)
    assert result.delta.shape == (3, 3, 4, 4)
    per_sample = result.per_sample()
    for c in range(3):
        members = per_sample[labels == c]
        assert (members == members[0]).all()
    # one PGD step from zero: -lr * sign of the gradient summed over the class, members at a
    # pixel bound included (the clipping must let their gradient through)
    for c in range(3):
        expected = -(EPS / 2) * weight[labels == c].sum(0).sign()
        assert torch.allclose(result.delta[c], expected)
    one_batch = craft_perturbations(x, objective, eps=EPS, steps=3, lr=EPS / 2, groups=labels, batch_size=9)
    split = craft_perturbations(x, objective, eps=EPS, steps=3, lr=EPS / 2, groups=labels, batch_size=2)
    assert torch.allclose(one_batch.delta, split.delta)
    assert torch.equal(result.perturbed(x), (x + result.delta[labels]).clamp(0, 1))


# --------------------------------------------------------------------------- ensembles
def _linear(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 3))


def test_the_ensemble_objective_is_the_mean_of_its_members():
    x = _images(n=5)
    members = [_linear(s) for s in range(3)]
    target = torch.tensor([2, 0, 1, 2, 0])

    def objective(model, xp, idx):
        return F.cross_entropy(model(xp), target[idx], reduction="none")

    def averaged(_, xp, idx):
        return sum(objective(m, xp, idx) for m in members) / len(members)

    kwargs = dict(eps=EPS, steps=4, lr=EPS / 4, step_rule="signadam", batch_size=2)
    ensemble = craft_perturbations(x, objective, models=members, **kwargs)
    manual = craft_perturbations(x, averaged, models=None, **kwargs)
    assert torch.allclose(ensemble.loss_history, manual.loss_history, atol=1e-6)
    assert torch.allclose(ensemble.delta, manual.delta, atol=1e-6)
    assert torch.allclose(ensemble.best_loss, manual.best_loss, atol=1e-5)
    # and it is not any single member's objective
    alone = craft_perturbations(x, objective, models=members[:1], **kwargs)
    assert not torch.allclose(alone.loss_history, ensemble.loss_history, atol=1e-3)


# --------------------------------------------------------------------------- model updates
def test_the_model_update_runs_between_steps_and_can_change_the_model():
    x = torch.full((3, 3, 4, 4), 0.5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 1, bias=False))
    nn.init.constant_(model[1].weight, 1.0)
    objective = lambda m, xp, idx: m(xp).squeeze(1)  # noqa: E731  (minimise the logit)
    calls = []

    def flip_the_model(state):  # min-min style: the model moves between perturbation steps
        calls.append((state.step, state.delta().mean().item()))
        with torch.no_grad():
            state.models[1].weight.neg_()

    result = craft_perturbations(x, objective, eps=EPS, steps=7, lr=EPS / 8, models=model,
                                 model_update=flip_the_model, update_every=3)
    assert [step for step, _ in calls] == [3, 6], "called after steps 3 and 6, never after the last"
    # steps 1-3 push the pixels down, 4-6 (flipped weight) up, 7 (flipped back) down again
    assert calls[0][1] == pytest.approx(-3 * EPS / 8, abs=1e-6)
    assert calls[1][1] == pytest.approx(0.0, abs=1e-6)
    assert result.delta.mean().item() == pytest.approx(-EPS / 8, abs=1e-6)
    history = result.loss_history[0]  # the logit, summed over the 48 pixels near 0.5, flips sign with the model
    assert (history[:3] > 0).all() and (history[3:6] < 0).all() and history[6] > 0


def test_a_member_replaced_by_the_callback_is_used_from_the_next_step():
    x = torch.full((2, 3, 4, 4), 0.5)
    up, down = (nn.Sequential(nn.Flatten(), nn.Linear(48, 1, bias=False)) for _ in range(2))
    nn.init.constant_(up[1].weight, 1.0)
    nn.init.constant_(down[1].weight, -1.0)
    ensemble = [up]

    def swap(state):
        state.models[0] = down
    result = craft_perturbations(x, lambda m, xp, idx: m(xp).squeeze(1), eps=EPS, steps=3, lr=EPS / 8,
                                 models=ensemble, model_update=swap, update_every=1)
    assert result.delta.mean().item() == pytest.approx(EPS / 8, abs=1e-6)  # one step down, two up


def test_uint8_and_float_inputs_give_the_same_perturbations():
    pixels = _images(n=5, uint8=True)
    kwargs = dict(eps=EPS, steps=3, lr=EPS / 3, batch_size=2, init="uniform")
    a = craft_perturbations(pixels, _push_outwards(), **kwargs)
    b = craft_perturbations(pixels.float() / 255, _push_outwards(), **kwargs)
    assert torch.equal(a.delta, b.delta)


def test_a_model_update_returning_true_stops_crafting():
    x = _images(n=3)
    stop_after_two = lambda state: state.step >= 2  # noqa: E731
    result = craft_perturbations(x, _push_outwards(), eps=EPS, steps=6, lr=EPS / 4, model_update=stop_after_two)
    assert not math.isnan(result.loss_history[0, 1]) and result.loss_history[0, 2:].isnan().all()
    assert result.delta.abs().max().item() == pytest.approx(2 * EPS / 4, abs=1e-6)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("change,message", [
    (dict(eps=8), "8/255, not 8"),
    (dict(eps=0), "eps=0"),
    (dict(norm="l2", eps=300), "300/255"),
    (dict(norm="l3"), "norm='l3'.*allowed: 'linf', 'l2'"),
    (dict(step_rule="sgd"), "step_rule='sgd'.*allowed"),
    (dict(decay="cosine"), "decay='cosine'"),
    (dict(init="normal"), "init='normal'"),
    (dict(groups=torch.tensor([0, 1])), r"groups: need a LongTensor of shape \[4\]"),
    (dict(groups=torch.tensor([0.0, 1.0, 0.0, 1.0])), "groups"),
    (dict(groups=torch.tensor([0, -1, 0, 1])), "groups: group indices must be >= 0"),
    (dict(steps=-1), "steps=-1"),
    (dict(lr=0), "lr=0"),
    (dict(restarts=2, model_update=lambda s: None), "restarts > 1 with a model_update"),
    (dict(inputs=torch.rand(4, 3, 4, 4) * 255), r"inputs: floats must lie in \[0, 1\]"),
])
def test_bad_input_raises_before_any_compute(change, message):
    def never(*args):
        raise AssertionError("the objective ran before the arguments were checked")
    kwargs = dict(inputs=torch.rand(4, 3, 4, 4), objective=never, eps=EPS, steps=2, lr=0.01)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        craft_perturbations(**kwargs)


def test_an_objective_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"per-sample loss of shape \[3\]"):
        craft_perturbations(torch.rand(3, 3, 4, 4), lambda m, x, i: x.sum(), eps=EPS, steps=1, lr=0.01)


# --------------------------------------------------------------------------- on a ConvNet
def test_a_gradient_matching_objective_runs_on_a_convnet_ensemble():
    """Witches' Brew's objective (1 - cosine between the poison and target gradients), spread
    over the batch, with augmentation, signed Adam, decay and a two-member ensemble."""
    torch.manual_seed(0)
    nets = [models.convnet(num_classes=3, width=4).eval() for _ in range(2)]
    poisons = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    labels = torch.tensor([0, 1, 2, 0])
    target_x, adversarial_y = torch.rand(1, 3, 32, 32), torch.tensor([1])
    target_grads = {id(n): torch.autograd.grad(F.cross_entropy(n(target_x), adversarial_y), list(n.parameters()))
                    for n in nets}

    def gradient_matching(net, xp, idx):
        grads = torch.autograd.grad(F.cross_entropy(net(xp), labels[idx]), list(net.parameters()),
                                    create_graph=True)
        tg = target_grads[id(net)]
        dot = sum((g * t).sum() for g, t in zip(grads, tg))
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads)) * torch.sqrt(sum((t ** 2).sum() for t in tg))
        return (1 - dot / norm).expand(len(idx)) / len(idx)

    result = craft_perturbations(poisons, gradient_matching, eps=16 / 255, steps=5, step_rule="signadam",
                                 lr=0.05, decay="multistep", augment=True, models=nets, batch_size=2,
                                 keep_best="all")
    assert isinstance(result, CraftResult) and result.delta.shape == (4, 3, 32, 32)
    assert torch.isfinite(result.loss_history).all()
    assert result.loss_history[0, -1] < result.loss_history[0, 0]
    assert result.delta.abs().max() <= 16 / 255 + 1e-6
    assert result.perturbed(poisons).min() >= 0 and result.perturbed(poisons).max() <= 1


# --------------------------------------------------------------------------- evasion PGD
def _targeted_pgd_before_the_crafting_loop(model, x, target_class, *, eps, steps, step_size=None):
    """Verbatim copy of ``evasion_pgd.targeted_pgd`` before it moved onto the crafting loop."""
    if not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: must lie in (0, 1] (pixels are on the [0, 1] scale; 8/255, not 8)")
    step_size = step_size or 2.5 * eps / steps
    model.eval()
    y = torch.full((len(x),), target_class, dtype=torch.long)
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() - step_size * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


@pytest.mark.parametrize("eps,steps,step_size", [(8 / 255, 10, None), (16 / 255, 6, 0.01)])
def test_evasion_pgd_on_the_loop_matches_its_former_implementation(eps, steps, step_size):
    torch.manual_seed(0)
    net = models.convnet(width=4)
    x = torch.rand(8, 3, 32, 32)
    before = _targeted_pgd_before_the_crafting_loop(net, x, 3, eps=eps, steps=steps, step_size=step_size)
    after = targeted_pgd(net, x, 3, eps=eps, steps=steps, step_size=step_size)
    with torch.no_grad():
        assert torch.equal(net(before).argmax(1), net(after).argmax(1))
    # the trajectory is the same; only x + (adv - x) rounds differently from adv (< 1 ulp)
    assert (before - after).abs().max() <= 1e-6
    assert (before - x).abs().max() > eps / 2, "the attack moved nothing: the comparison would be empty"


# --------------------------------------------------------------------------- a transform before the delta
class _Brightness(InputTransform):
    """T(x; a) = x + a with one scalar a per sample, |a| <= bound; optionally the penalty w a^2."""

    def __init__(self, bound=0.1, weight=0.0, lr_scale=1.0):
        self.param_shape, self.bound, self.weight, self.lr_scale = (1, 1, 1), bound, weight, lr_scale

    def apply(self, x, params):
        return x + params

    def project(self, params):
        return params.clamp(-self.bound, self.bound)

    def penalty(self, params):
        return self.weight * params.flatten(1).pow(2).sum(1) if self.weight else None


@pytest.mark.parametrize("norm,eps", [("linf", EPS), ("l2", 0.5)])
@pytest.mark.parametrize("step_rule", ["pgd", "signadam", "adam"])
def test_with_a_transform_both_budgets_and_the_pixel_range_hold_after_every_step(norm, eps, step_rule):
    inputs = _images(n=7)
    x = _as_float(inputs)
    transform = _Brightness(0.1)
    seen = []

    def check(state):
        a = state.transform_params()
        base = (x + a).clamp(0, 1)
        perturbed = state.perturbed(torch.arange(len(x)))
        assert a.abs().max() <= 0.1 + 1e-7
        assert perturbed.min() >= 0 and perturbed.max() <= 1
        # the additive part is measured from the transformed image, not from x
        assert (_norms(perturbed - base, norm) <= eps + 1e-6).all()
        seen.append(float(a.abs().max()))
    result = craft_perturbations(inputs, _push_outwards(), eps=eps, norm=norm, steps=6, step_rule=step_rule,
                                 lr=0.05 if norm == "linf" else 0.2, init="uniform", transform=transform,
                                 on_step=check, seed=3)
    assert len(seen) == 6 and max(seen) == pytest.approx(0.1), "the transform never reached its bound"
    assert result.transform_params.shape == (7, 1, 1, 1) and result.transform is transform
    final = result.perturbed(inputs)
    # delta is projected onto the box of the transformed image: it is the additive part itself
    assert torch.allclose(final - result.transformed(inputs), result.delta, atol=1e-6)
    assert (_norms(final - result.transformed(inputs), norm) <= eps + 1e-6).all()


@pytest.mark.parametrize("step_rule", ["pgd", "adam"])
def test_the_transform_and_the_delta_are_optimised_jointly(step_rule):
    # match t = x + 0.08 + a pattern within eps/2: reachable only with both parts (0.08 > eps)
    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.4 * torch.rand(4, 3, 4, 4, generator=g)
    pattern = (EPS / 2) * torch.randn(4, 3, 4, 4, generator=g).sign()
    t = x + 0.08 + pattern

    def match(model, x_in, idx):
        return (x_in - t[idx]).pow(2).flatten(1).sum(1)
    kwargs = dict(eps=EPS, steps=60, step_rule=step_rule, lr=0.004, decay="multistep")
    joint = craft_perturbations(x, match, transform=_Brightness(0.1, lr_scale=2.5), **kwargs)
    alone = craft_perturbations(x, match, **kwargs)
    gap = (0.08 - EPS) ** 2 * 48  # the least an additive delta alone can leave per sample
    assert alone.best_loss.min() >= 0.9 * gap
    assert joint.best_loss.max() <= 0.05 * gap
    # the split is not unique, but the brightness must carry what the delta cannot
    assert (joint.transform_params > 0.08 - EPS).all()


def test_the_transform_penalty_enters_the_gradient():
    # -sum(x_in) + 480 a^2 per sample: the brightness settles at the interior optimum a = 48 / 960
    x = torch.full((3, 3, 4, 4), 0.3)
    result = craft_perturbations(x, lambda m, x_in, idx: -x_in.flatten(1).sum(1), eps=EPS, steps=120,
                                 step_rule="adam", lr=0.005, decay="multistep",
                                 transform=_Brightness(0.1, weight=480.0))
    assert torch.allclose(result.transform_params.flatten(), torch.full((3,), 0.05), atol=2e-3)
    assert torch.allclose(result.delta, torch.full_like(result.delta, EPS))  # the delta alone at its bound


def test_restarts_keep_the_delta_and_the_transform_of_the_same_restart():
    x = _images(n=5)
    weight = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(4))

    def objective(model, x_in, idx):
        return ((x_in - 0.5) * weight[idx]).flatten(1).sum(1).pow(2)
    result = craft_perturbations(x, objective, eps=EPS, steps=3, lr=0.01, init="uniform", restarts=3,
                                 transform=_Brightness(0.1), seed=2)
    assert len(set(result.best_restart.tolist())) > 1, "one restart won everywhere: the test would be empty"
    assert torch.allclose(objective(None, result.perturbed(x), torch.arange(5)), result.best_loss, rtol=1e-5)


def test_a_callable_decay_sets_the_step_size():
    lrs = []
    craft_perturbations(torch.rand(2, 3, 4, 4), _push_outwards(), eps=EPS, steps=5, lr=0.5,
                        decay=lambda step, steps: 1 / (step + 1), on_step=lambda s: lrs.append(s.lr))
    assert lrs == pytest.approx([0.5 / (k + 1) for k in range(5)])


@pytest.mark.parametrize("change,message", [
    (dict(transform=_Brightness(), groups=torch.tensor([0, 0, 1, 1])), "transform: only for per-sample"),
    (dict(transform=lambda x: x), "transform: need an InputTransform"),
    (dict(decay="cosine"), "decay='cosine'"),
])
def test_a_bad_transform_or_decay_is_refused(change, message):
    kwargs = dict(inputs=torch.rand(4, 3, 4, 4), objective=_push_outwards(), eps=EPS, steps=2, lr=0.01)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        craft_perturbations(**kwargs)
