"""MetaPoison on tiny problems: the unrolled meta-gradient against finite differences, the
colour grid and both budgets after every crafting step, the staggered ensemble's positions
and re-initialisations, the unrolled adversarial loss falling on the crafted poisons, a planted
problem where the poisons beat clean and randomly perturbed bases, and bad input refused
before any compute."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from poisonrepro import models as M
from poisonrepro import registry
from poisonrepro.attacks import metapoison as MP

EPS = 8 / 255
COLOR_EPS = 0.04


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


def _tiny_net(classes: int = 3) -> M.Classifier:
    """conv-BN-tanh on 8x8 images and a linear head: batch norm (batch statistics in the unrolled
    steps), smooth so that finite differences are meaningful."""
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten()]
    return M.Classifier(nn.Sequential(*layers), 32, classes, None)


def _images(n: int, classes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Class c: noise with channel c brightened (the tiny net learns it in a few epochs)."""
    x = torch.rand(n, 3, 8, 8, generator=gen) * 0.6
    x[torch.arange(n), classes] += 0.3
    return x


def _planted():
    """60 training images of 3 classes, 10 poison bases of class 0, and a target of class 1 half
    way to class 0 (so that a few poisons can tip it)."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    images = _images(60, labels, gen)
    target = 0.5 * _images(1, torch.tensor([1]), gen)[0] + 0.5 * _images(1, torch.tensor([0]), gen)[0]
    poison_indices = (labels == 0).nonzero().flatten()[:10]
    return images, labels, poison_indices, target


LR = 0.5  # the tiny problem's SGD step, for the surrogates and the victims alike


def _victim_margin(images, labels, target, seed, epochs=8):
    """Train a fresh tiny net on ``images`` (the surrogates' recipe) and return the target's CW
    loss towards class 0 in eval mode (< 0: classified as class 0)."""
    torch.manual_seed(seed)
    net = _tiny_net()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(images), 20):
            idx = order[start:start + 20]
            grads = torch.autograd.grad(F.cross_entropy(net(images[idx]), labels[idx]), list(net.parameters()))
            with torch.no_grad():
                for p, g in zip(net.parameters(), grads):
                    p.sub_(LR * g)
    net.eval()
    with torch.no_grad():
        return float(MP.carlini_wagner_loss(net(target[None]), 0))


@pytest.fixture(scope="module")
def crafted():
    """One MetaPoison run on the planted problem, with the budgets recorded after every step."""
    images, labels, poison_indices, target = _planted()
    steps = []

    def record(state):
        steps.append((state.transform_params(), state.perturbed(torch.arange(len(poison_indices)))))
    result = MP.metapoison(images, labels, poison_indices, target, target_class=1, make_model=_tiny_net,
                           members=4, epochs=4, steps=10, eps=EPS, color_eps=COLOR_EPS, lr=2 * EPS,
                           milestones=(5,), warmup_steps=1, train_batch_size=20, train_lr=LR, warmup_epochs=1,
                           poisons_per_batch=5, seed=0, on_step=record)
    return dict(images=images, labels=labels, poison_indices=poison_indices, target=target, result=result,
                steps=steps)


# --------------------------------------------------------------------------- the meta-gradient
def test_the_unrolled_meta_gradient_matches_finite_differences():
    torch.manual_seed(0)
    net = _tiny_net().double()
    gen = torch.Generator().manual_seed(1)
    poisons = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    clean = [(torch.rand(3, 3, 4, 4, generator=gen, dtype=torch.float64), torch.tensor([0, 1, 2])) for _ in range(3)]
    target = torch.rand(1, 3, 4, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 0])
    running_mean = net.body[1].running_mean.clone()

    def meta_loss(p, later):
        return MP.unrolled_adversarial_loss(net, p, labels, clean, target, 0, lr=0.5, later_poisons=later)
    # K = 2 steps, second order: the authors' loss (later steps see the poisons as constants) ...
    frozen = poisons.clone()
    assert torch.autograd.gradcheck(lambda p: meta_loss(p, frozen), (poisons.clone().requires_grad_(),))
    # ... and the default spelling of it, the poisons' own values detached
    p1 = poisons.clone().requires_grad_()
    p2 = poisons.clone().requires_grad_()
    (default,) = torch.autograd.grad(meta_loss(p1, None), p1)
    (explicit,) = torch.autograd.grad(meta_loss(p2, frozen), p2)
    assert torch.allclose(default, explicit) and default.abs().max() > 1e-4
    # the full derivative (poisons differentiable in every step) is the same machinery
    assert torch.autograd.gradcheck(lambda p: meta_loss(p, p), (poisons.clone().requires_grad_(),), fast_mode=True)
    assert torch.equal(net.body[1].running_mean, running_mean), "the unrolled steps changed the model's BN buffers"


def test_the_meta_gradient_flows_through_the_unrolled_weights():
    # with K = 1 the target's loss depends on the poisons only through the weights of step 1
    # (and the batch statistics of that forward): if the unrolled step were cut, this would be 0
    torch.manual_seed(0)
    net = _tiny_net().double().eval()  # eval: no batch statistics, so only the weights carry it
    gen = torch.Generator().manual_seed(2)
    poisons = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    clean = [(torch.rand(3, 3, 4, 4, generator=gen, dtype=torch.float64), torch.tensor([0, 1, 2])) for _ in range(2)]
    target = torch.rand(1, 3, 4, 4, generator=gen, dtype=torch.float64)
    loss = MP.unrolled_adversarial_loss(net, poisons, torch.tensor([0, 0]), clean, target, 0, lr=0.5)
    (grad,) = torch.autograd.grad(loss, poisons)
    assert grad.abs().max() > 1e-4


def test_carlini_wagner_loss_and_the_schedules():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, 250.0, 0.0], [-3.0, -1.0, -2.0]])
    assert MP.carlini_wagner_loss(logits, 0).tolist() == [2.0, 250.0, 2.0]
    # kappa clamps a won margin; the largest *other* logit, not max(0, it) as the TF code's
    assert MP.carlini_wagner_loss(logits, 1).tolist() == [-1.0, -100.0, -1.0]
    assert MP.surrogate_learning_rate(0) == pytest.approx(0.02)
    assert MP.surrogate_learning_rate(4) == pytest.approx(0.1)
    assert MP.surrogate_learning_rate(100) == pytest.approx(0.01)
    assert MP.surrogate_learning_rate(150) == pytest.approx(0.001)
    factors = [MP.craft_rate_factor(s) for s in (0, 4, 19, 20, 39, 40, 59)]
    assert factors == pytest.approx([0.04, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


# --------------------------------------------------------------------------- the colour grid
def test_the_colour_grid_is_the_identity_at_zero_and_its_projection_holds():
    shift = MP.ColorGridShift(COLOR_EPS, (10, 10, 10))
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x[0] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # saturated red: V = 0.615, outside the code's grid
    assert (shift.apply(x, torch.zeros(4, *shift.param_shape)) - x).abs().max() < 1e-5
    theta = shift.project(torch.randn(4, *shift.param_shape))
    assert theta.abs().max() <= COLOR_EPS + 1e-7
    table = shift.identity + theta
    assert (table >= shift.low.view(1, 3, 1, 1, 1).float() - 1e-6).all()
    assert (table <= shift.high.view(1, 3, 1, 1, 1).float() + 1e-6).all()
    # a constant offset of the Y channel shifts every pixel's luma by it
    lift = torch.zeros(4, *shift.param_shape)
    lift[:, 0] = 0.02
    lifted = shift.apply(x[1:] * 0.5 + 0.25, lift[1:])
    luma = torch.einsum("j,bjhw->bhw", MP.RGB_TO_YUV[0].float(), lifted - (x[1:] * 0.5 + 0.25))
    assert torch.allclose(luma, torch.full_like(luma, 0.02), atol=1e-5)
    assert shift.smoothness(lift).abs().max() == 0  # a constant shift is perfectly smooth


def test_both_budgets_hold_after_every_crafting_step(crafted):
    images, indices, result = crafted["images"], crafted["poison_indices"], crafted["result"]
    bases = images[indices]
    shift = result.craft.transform
    assert isinstance(shift, MP.ColorGridShift)
    assert len(crafted["steps"]) == 10
    for theta, poisons in crafted["steps"]:
        recoloured = shift.apply(bases, theta).clamp(0, 1)
        assert theta.abs().max() <= COLOR_EPS + 1e-7
        assert poisons.min() >= 0 and poisons.max() <= 1
        assert (poisons - recoloured).abs().max() <= EPS + 1e-6
    final = result.poisons
    assert torch.equal(final, result.craft.perturbed(bases))
    assert (final - result.craft.transformed(bases)).abs().max() <= EPS + 1e-6
    # the colour part is used (at its bound somewhere) and moves pixels beyond the additive budget
    assert result.craft.transform_params.abs().max() == pytest.approx(COLOR_EPS)
    total = (final - bases).abs().max()
    assert EPS < total <= EPS + COLOR_EPS * float(torch.linalg.inv(MP.RGB_TO_YUV).abs().sum(1).max()) + 1e-6


def test_without_colour_the_poisons_stay_within_eps_of_the_bases():
    images, labels, indices, target = _planted()
    result = MP.metapoison(images, labels, indices, target, target_class=1, make_model=_tiny_net, members=2,
                           epochs=2, steps=2, color_eps=0.0, train_batch_size=20, poisons_per_batch=5, seed=0)
    assert result.craft.transform is None
    assert (result.poisons - images[indices]).abs().max() <= EPS + 1e-6


# --------------------------------------------------------------------------- the staggered ensemble
def test_members_start_spread_over_training_and_restart_exactly_at_the_end():
    images, labels, _, _ = _planted()
    ensemble = MP.StaggeredEnsemble(_tiny_net, images, labels, members=3, epochs=6, batch_size=20, lr=LR, seed=5)
    spe = ensemble.steps_per_epoch
    assert spe == 3 and ensemble.total_steps == 18
    assert ensemble.positions == [0, 6, 12]  # floor(m T / M) epochs: 0, 2, 4
    assert len({ensemble.epoch(m) for m in range(3)}) == 3
    # the pre-training really happened: member 0 is at its fresh weights, the others moved
    fresh = [ensemble._fresh(m, 0) for m in range(3)]
    same = [all(torch.equal(a, b) for a, b in zip(ensemble.members[m].parameters(), fresh[m].parameters()))
            for m in range(3)]
    assert same == [True, False, False]
    members = list(ensemble.members)
    for advance in range(1, 7):  # one epoch per advance; member m reaches epoch 6 after 6 - 2m advances
        before = [[p.clone() for p in net.parameters()] for net in ensemble.members]
        ensemble.advance()
        for m in range(3):
            due = advance == 6 - 2 * m or advance == 12 - 2 * m
            assert ((advance, m) in ensemble.reinitialised_at) == due
            if due:
                assert ensemble.positions[m] == 0 and ensemble.generations[m] == 1
                again = ensemble._fresh(m, 1)  # the seeded generation-1 weights, not the previous ones
                assert all(torch.equal(a, b) for a, b in zip(ensemble.members[m].parameters(), again.parameters()))
                assert not torch.equal(before[m][0], next(again.parameters()))
                assert not torch.equal(next(fresh[m].parameters()), next(again.parameters()))
        # the loop's list keeps the same modules: members are updated in place
        assert all(a is b for a, b in zip(members, ensemble.members))
    assert ensemble.positions == [0, 6, 12] and ensemble.generations == [1, 1, 1]  # still staggered
    assert sorted(ensemble.reinitialised_at) == [(2, 2), (4, 1), (6, 0)]
    assert ensemble.learning_rate(ensemble.members[0]) == pytest.approx(LR * 1 / 5)  # warm-up at epoch 0


def test_a_poison_trajectory_trains_the_members_on_the_current_poisons():
    images, labels, indices, _ = _planted()
    ensemble = MP.StaggeredEnsemble(_tiny_net, images, labels, members=1, epochs=2, batch_size=20, seed=0,
                                    poison_indices=indices, trajectory="poison", pretrain=False)
    poisons = torch.zeros(len(indices), 3, 8, 8)
    batch = ensemble.batch(torch.arange(60), poisons)
    assert torch.equal(batch[indices], poisons)
    rest = torch.ones(60, dtype=torch.bool)
    rest[indices] = False
    assert torch.equal(batch[rest], images[rest])

    class State:  # what the crafting loop hands the callback
        def perturbed(self, idx):
            return poisons[idx]
    seen = []
    original = ensemble.batch
    ensemble.batch = lambda idx, p=None: (seen.append(p), original(idx, p))[1]
    ensemble.model_update(State())
    assert len(seen) == ensemble.steps_per_advance and all(p is not None and torch.equal(p, poisons) for p in seen)


# --------------------------------------------------------------------------- the attack works
def test_the_unrolled_adversarial_loss_is_lower_on_the_crafted_poisons(crafted):
    images, labels, indices, target = (crafted[k] for k in ("images", "labels", "poison_indices", "target"))
    result = crafted["result"]
    gen = torch.Generator().manual_seed(7)
    clean_pool = torch.tensor([i for i in range(60) if i not in set(indices.tolist())])
    gaps = []
    for net in result.ensemble.members:
        for _ in range(3):  # the same clean batches for both
            batches = []
            for _ in range(3):
                idx = clean_pool[torch.randperm(len(clean_pool), generator=gen)[:10]]
                batches.append((images[idx], labels[idx]))
            lr = result.ensemble.learning_rate(net)
            losses = [MP.unrolled_adversarial_loss(net, x, labels[indices], batches, target[None], 0, lr)
                      for x in (images[indices], result.poisons)]
            gaps.append(float((losses[0] - losses[1]).detach()))
    assert sum(gaps) / len(gaps) > 0.2 and sum(g > 0 for g in gaps) >= 0.75 * len(gaps)
    # and the crafting's own record: the last steps' loss below the first step's
    history = result.adversarial_loss
    assert len(history) == 10 and history[-3:].mean() < history[0] - 0.2


def test_planted_victims_trained_on_the_poisons_move_the_target_to_the_poison_class(crafted):
    images, labels, indices, target = (crafted[k] for k in ("images", "labels", "poison_indices", "target"))
    poisoned = crafted["result"].poisoned_images(images)
    gen = torch.Generator().manual_seed(1)
    noise = images.clone()
    signs = torch.randint(0, 2, images[indices].shape, generator=gen) * 2 - 1
    noise[indices] = (images[indices] + EPS * signs).clamp(0, 1)  # random corners of the same box
    margins = {name: [_victim_margin(x, labels, target, seed) for seed in range(3)]
               for name, x in (("clean", images), ("noise", noise), ("poisoned", poisoned))}
    mean = {name: sum(v) / len(v) for name, v in margins.items()}
    # lower = closer to (or past) class 0; the poisons beat both controls in every victim
    assert mean["poisoned"] < mean["clean"] - 0.3 and mean["poisoned"] < mean["noise"] - 0.3
    assert all(p < min(c, n) for p, c, n in zip(margins["poisoned"], margins["clean"], margins["noise"]))


# --------------------------------------------------------------------------- interface
def test_metapoison_is_registered_with_its_taxonomy():
    method = registry.REGISTRY["metapoison"]
    assert method.function is MP.metapoison and method.notebook == "03_metapoison"
    assert set(method.taxonomy) == set(registry.ALLOWED)
    assert method.taxonomy["goal"] == "targeted" and method.taxonomy["timing"] == "poisoning"


@pytest.mark.parametrize("change,message", [
    (dict(eps=8), r"eps=8: must lie in \(0, 1\].*8/255"),
    (dict(members=0), "an ensemble of size 0"),
    (dict(unroll_steps=0), "unroll_steps=0: need K >= 1"),
    (dict(target_class=0), "target_class=0 equals the poison class"),
    (dict(color_eps=1.0), r"color_eps=1.0: must lie in \[0, 1\)"),
    (dict(color_eps=-0.04), r"color_eps=-0.04: must lie in \[0, 1\)"),
    (dict(adversarial_class=1), "adversarial_class=1 equals target_class"),
    (dict(trajectory="dirty"), "trajectory='dirty'"),
    (dict(poison_indices=torch.tensor([0, 1])), "one class"),
])
def test_bad_input_raises_before_any_compute(change, message):
    images, labels, indices, target = _planted()

    def never():
        raise AssertionError("a surrogate was built before the arguments were checked")
    kwargs = dict(images=images, labels=labels, poison_indices=indices, target_image=target, target_class=1,
                  make_model=never, steps=1, train_batch_size=20)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        MP.metapoison(**kwargs)
    with pytest.raises(ValueError, match="an ensemble needs at least 1"):
        MP.StaggeredEnsemble(never, images, labels, members=0)
