"""Trigger patches (poisonrepro.triggers), the clean-label backdoor and the hidden-trigger
backdoor: the budget holds (trigger included), PGD beats random noise of the same budget, the
feature distance falls, the matching is one-to-one, a planted hidden-trigger backdoor works,
bad input is refused. Tiny nets on 8x8 synthetic images, one thread (the machine is shared)."""
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from poisonrepro import models, triggers
from poisonrepro.attacks import clean_label_backdoor as clbd
from poisonrepro.attacks import crafting
from poisonrepro.attacks import hidden_trigger_backdoor as htbd

EPS = 8 / 255
SIZE = 8
TOL = 1e-6  # float32 rounding of x + delta - x
needs_gd = pytest.mark.skipif("gd" not in crafting.STEP_RULES,
                              reason="the crafting loop has no plain gradient step ('gd') yet")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


def _images(n, cls, seed, separation=0.1):
    """Grey images with noise, class ``cls`` brighter in channel ``cls % 3``: classes close
    enough that a small perturbation moves an image's features far towards another class."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.15 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    x[:, cls % 3] += separation
    return x.clamp(0, 1)


def _uint8(x):
    return (x * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def surrogate():
    """A conv net trained briefly on three classes; its features keep the spatial layout (a
    conv map, flattened), so a patch changes them where it sits."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    model = models.Classifier(body, 16 * (SIZE // 2) ** 2, 3, None)
    x = torch.cat([_images(100, c, 10 + c) for c in range(3)])
    y = torch.arange(3).repeat_interleave(100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


# --------------------------------------------------------------------------- triggers
def test_make_patch_is_deterministic_in_both_dtypes_and_kinds():
    a, b, c = triggers.make_patch(5, seed=3), triggers.make_patch(5, seed=3), triggers.make_patch(5, seed=4)
    assert a.shape == (3, 5, 5) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(triggers.make_patch(5, seed=3, dtype=torch.float32), a.float() / 255)
    board = triggers.make_patch((2, 3), kind="checkerboard")
    assert board.tolist()[0] == [[255, 0, 255], [0, 255, 0]] and torch.equal(board[0], board[2])
    with pytest.raises(ValueError, match="kind='stripes'"):
        triggers.make_patch(5, kind="stripes")
    with pytest.raises(ValueError, match="size=0"):
        triggers.make_patch(0)


def test_benchmark_locations_are_the_corner_and_five_pixels_in():
    assert triggers.CLBD_LOCATION == (27, 27) and triggers.HTBD_LOCATION == (22, 22)
    assert triggers.benchmark_location("clbd", 64, 8) == (56, 56)
    corner = triggers.patch_mask((3, 32, 32), (3, 5, 5), *triggers.CLBD_LOCATION)
    assert corner[27:, 27:].all() and corner.sum() == 25  # exactly the bottom-right 5x5 corner
    inner = triggers.patch_mask((3, 32, 32), (3, 5, 5), *triggers.HTBD_LOCATION)
    assert inner[22:27, 22:27].all() and inner.sum() == 25 and not inner[27:].any() and not inner[:, 27:].any()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("patch_dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("x,y", [(0, 0), (3, 1), (SIZE - 5, SIZE - 5)])
def test_paste_patch_sets_exactly_the_patch_and_nothing_else(dtype, patch_dtype, x, y):
    images = _images(4, 0, 1)
    images = _uint8(images) if dtype == torch.uint8 else images
    original = images.clone()
    patch = triggers.make_patch(5, seed=2, dtype=patch_dtype)
    out = triggers.paste_patch(images, patch, x, y)
    assert out.dtype == dtype and torch.equal(images, original)  # the input is left alone
    expected_patch = triggers.make_patch(5, seed=2, dtype=dtype)
    assert torch.equal(out[:, :, y:y + 5, x:x + 5], expected_patch.expand(4, -1, -1, -1))
    outside = ~triggers.patch_mask((3, SIZE, SIZE), (3, 5, 5), x, y)
    assert torch.equal(out[:, :, outside], original[:, :, outside])
    single = triggers.paste_patch(images[0], patch, x, y)  # one [C, H, W] image
    assert torch.equal(single, out[0])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_paste_patch_blends_with_alpha(dtype):
    images = torch.full((2, 3, SIZE, SIZE), 100, dtype=torch.uint8)
    patch = torch.full((1, 2, 2), 201, dtype=torch.uint8)  # one channel, broadcast
    images = images if dtype == torch.uint8 else images.float() / 255
    out = triggers.paste_patch(images, patch, 1, 2, alpha=0.5)
    region, rest = out[:, :, 2:4, 1:3], out.clone()
    rest[:, :, 2:4, 1:3] = images[:, :, 2:4, 1:3]
    expected = 150.5 if dtype == torch.float32 else 150  # uint8 rounds half to even
    assert torch.allclose(region.double() * (255 if dtype == torch.float32 else 1),
                          torch.full_like(region, expected, dtype=torch.float64), atol=1e-4)
    assert torch.equal(rest, images)


def test_paste_patch_refuses_what_does_not_fit_or_is_off_scale():
    images = torch.zeros(2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="does not fit"):
        triggers.paste_patch(images, triggers.make_patch(SIZE + 1), 0, 0)  # a trigger larger than the image
    with pytest.raises(ValueError, match="does not fit"):
        triggers.paste_patch(images, triggers.make_patch(5), *triggers.CLBD_LOCATION)  # 32x32 location on 8x8
    with pytest.raises(ValueError, match="x=-1"):
        triggers.paste_patch(images, triggers.make_patch(2), -1, 0)
    with pytest.raises(ValueError, match="channels"):
        triggers.paste_patch(images, triggers.make_patch(2, channels=2), 0, 0)
    with pytest.raises(ValueError, match=r"floats must lie in \[0, 1\]"):
        triggers.paste_patch(images + 2, triggers.make_patch(2), 0, 0)
    with pytest.raises(ValueError, match="alpha"):
        triggers.paste_patch(images, triggers.make_patch(2), 0, 0, alpha=0)


# --------------------------------------------------------------------------- clean-label backdoor
@pytest.mark.parametrize("clip_trigger", [True, False])
def test_clbd_budget_holds_trigger_included_and_the_trigger_is_clipped_as_the_benchmark(surrogate, clip_trigger):
    bases = _uint8(_images(12, 0, 20))
    bases[0] = 0  # pixels at both ends of the range
    bases[1] = 255
    labels = torch.zeros(12, dtype=torch.long)
    patch = triggers.make_patch(3, seed=5)
    x, y = SIZE - 3, SIZE - 3  # the bottom-right corner, as the benchmark's (27, 27) on 32x32
    poisons = clbd.craft_poisons(surrogate, bases, labels, patch, location=(x, y), steps=5, seed=1,
                                 clip_trigger=clip_trigger)
    adversarial = clbd.adversarial_bases(surrogate, bases, labels, steps=5, seed=1)
    base = bases.float() / 255
    assert poisons.dtype == torch.float32 and poisons.shape == bases.shape
    assert poisons.min() >= 0 and poisons.max() <= 1
    under = triggers.patch_mask((3, SIZE, SIZE), (3, 3, 3), x, y)
    gap = (poisons - base).abs()
    assert gap[:, :, ~under].max() <= EPS + TOL  # the PGD part, wherever the trigger is not
    assert torch.allclose(poisons[:, :, ~under], adversarial[:, :, ~under], atol=TOL)
    patch_unit = patch.float() / 255
    if clip_trigger:  # the whole poison, trigger included, within eps: the patch clipped to base +- eps
        assert gap.max() <= EPS + TOL
        clipped = torch.minimum(torch.maximum(patch_unit, base[:, :, y:, x:] - EPS), base[:, :, y:, x:] + EPS)
        assert torch.allclose(poisons[:, :, y:, x:], clipped.clamp(0, 1), atol=TOL)
        assert gap[:, :, under].max() > EPS - TOL  # and the trigger uses the budget there
    else:  # Turner et al.'s visible trigger: the patch whole, beyond the budget
        assert torch.equal(poisons[:, :, y:, x:], patch_unit.expand(12, -1, -1, -1))
        assert gap[:, :, under].max() > EPS


def test_clbd_pgd_raises_the_true_label_loss_beyond_random_noise_of_the_same_budget(surrogate):
    bases = _images(40, 1, 30)
    labels = torch.ones(40, dtype=torch.long)
    adversarial = clbd.adversarial_bases(surrogate, bases, labels, eps=EPS, steps=10, step_size=2 / 255, seed=0)
    g = torch.Generator().manual_seed(1)
    corners = (bases + EPS * torch.randint(0, 2, bases.shape, generator=g).mul(2).sub(1)).clamp(0, 1)
    uniform = (bases + EPS * (2 * torch.rand(bases.shape, generator=g) - 1)).clamp(0, 1)
    with torch.no_grad():
        loss = {name: F.cross_entropy(surrogate(x), labels, reduction="none")
                for name, x in (("clean", bases), ("pgd", adversarial), ("corners", corners), ("uniform", uniform))}
    assert (adversarial - bases).abs().max() <= EPS + TOL
    for control in ("clean", "corners", "uniform"):
        assert loss["pgd"].mean() > 1.5 * loss[control].mean(), control
        assert (loss["pgd"] > loss[control]).float().mean() >= 0.95, control


def test_clbd_is_seeded_and_restores_the_model_mode(surrogate):
    bases, labels, patch = _images(6, 0, 40), torch.zeros(6, dtype=torch.long), triggers.make_patch(3)
    surrogate.train()
    try:
        a = clbd.craft_poisons(surrogate, bases, labels, patch, location=(0, 0), steps=3, seed=7)
        assert surrogate.training
    finally:
        surrogate.eval()
    b = clbd.craft_poisons(surrogate, bases, labels, patch, location=(0, 0), steps=3, seed=7)
    c = clbd.craft_poisons(surrogate, bases, labels, patch, location=(0, 0), steps=3, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_clbd_refuses_bad_input_before_any_compute():
    class Untouchable(nn.Module):  # fails the test if any compute happens
        def forward(self, x):
            raise AssertionError("computed before checking the input")
    model = Untouchable()
    bases, labels, patch = _images(4, 0, 50), torch.zeros(4, dtype=torch.long), triggers.make_patch(3)
    cases = [
        (dict(eps=8), "did you mean 8/255"),
        (dict(step_size=2), "did you mean 2/255"),
        (dict(location=triggers.CLBD_LOCATION), "does not fit"),
        (dict(target_class=0), "target_class=0"),
        (dict(location=5), "need a pair"),
    ]
    for kwargs, message in cases:
        kwargs.setdefault("location", (0, 0))
        with pytest.raises(ValueError, match=message):
            clbd.craft_poisons(model, bases, labels, patch, **kwargs)
    with pytest.raises(ValueError, match="does not fit"):
        clbd.craft_poisons(model, bases, labels, triggers.make_patch(SIZE + 1), location=(0, 0))
    with pytest.raises(ValueError, match="non-empty"):
        clbd.craft_poisons(model, bases[:0], labels[:0], patch, location=(0, 0))
    with pytest.raises(ValueError, match="base_labels"):
        clbd.craft_poisons(model, bases, labels[:3], patch, location=(0, 0))


# --------------------------------------------------------------------------- the matching
def _naive_greedy(dist):
    """The definition: take the smallest remaining entry (first in row-major order), remove its
    row and column, repeat."""
    d = dist.clone().double()
    assignment = torch.full((d.shape[0],), -1)
    for _ in range(d.shape[0]):
        row, col = divmod(int(d.argmin()), d.shape[1])
        assignment[row] = col
        d[row, :] = float("inf")
        d[:, col] = float("inf")
    return assignment


@pytest.mark.parametrize("seed", range(8))
def test_greedy_matching_is_one_to_one_and_is_the_nearest_pair_greedy(seed):
    g = torch.Generator().manual_seed(seed)
    rows, cols = [(7, 7), (5, 9), (40, 40), (30, 45)][seed % 4]
    dist = torch.rand(rows, cols, generator=g)
    if seed >= 4:  # many exact ties
        dist = torch.randint(0, 3, (rows, cols), generator=g).float()
    assignment = htbd.greedy_matching(dist)
    assert len(set(assignment.tolist())) == rows and assignment.min() >= 0 and assignment.max() < cols
    assert torch.equal(assignment, _naive_greedy(dist))


def test_optimal_matching_never_increases_the_matched_distance_and_greedy_can():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        dist = torch.rand(5, 5, generator=g)
        costs = {perm: float(sum(dist[i, j] ** 2 for i, j in enumerate(perm)))
                 for perm in itertools.permutations(range(5))}
        optimal = htbd.optimal_matching(dist)
        assert float((dist[torch.arange(5), optimal] ** 2).sum()) == pytest.approx(min(costs.values()))
        greedy = htbd.greedy_matching(dist)
        assert float((dist[torch.arange(5), greedy] ** 2).sum()) >= min(costs.values()) - 1e-9
    # the greedy nearest pair can raise the total over a pairing already in place: it takes
    # (0, 0) at distance 1 and is left with (1, 1) at 100, where the crossed pairing costs 2 + 2
    dist = torch.tensor([[1.0, 2.0], [2.0, 100.0]])
    assert htbd.greedy_matching(dist).tolist() == [0, 1]
    assert htbd.optimal_matching(dist).tolist() == [1, 0]


def test_the_objective_matches_each_batch_with_the_sources_at_the_same_indices():
    # poison k's features equal source (3 - k)'s: matched over all four, every distance is 0;
    # in batches of two, poisons {0, 1} may only take sources {0, 1}
    sources = torch.eye(4)
    poisons = sources.flip(0)

    class Features(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(1))

        def features(self, x):
            return x
    objective = htbd.feature_matching_objective(sources)
    whole = objective(Features(), poisons, torch.arange(4))
    first_half = objective(Features(), poisons[:2], torch.arange(2))
    assert torch.equal(whole, torch.zeros(4))
    assert torch.equal(first_half, torch.full((2,), 2.0))  # ||e_3 - e_0||^2 and ||e_2 - e_1||^2
    fixed = htbd.feature_matching_objective(sources, "fixed")(Features(), poisons, torch.arange(4))
    assert torch.equal(fixed, torch.full((4,), 2.0))


# --------------------------------------------------------------------------- hidden-trigger backdoor
def _htbd_setup(n=16):
    bases, sources = _uint8(_images(n, 0, 60)), _uint8(_images(n, 1, 61))
    return bases, sources, triggers.make_patch(3, seed=1), (SIZE - 3 - 1, SIZE - 3 - 1)


@pytest.mark.parametrize("matching", ["greedy", "optimal"])
def test_htbd_feature_distance_falls_below_the_bases_and_the_budget_holds(surrogate, matching):
    bases, sources, patch, location = _htbd_setup()
    poisons, result = htbd.craft_poisons(surrogate, bases, sources, patch, location=location, steps=20,
                                         lr=1 / 255, step_rule="pgd", decay_every=None, matching=matching,
                                         return_result=True)
    base = bases.float() / 255
    assert poisons.min() >= 0 and poisons.max() <= 1 and (poisons - base).abs().max() <= EPS + TOL
    target = htbd.patched_source_features(surrogate, sources, patch, location)
    with torch.no_grad():
        before = htbd.matched_distance(surrogate.features(base), target, matching)
        after = htbd.matched_distance(surrogate.features(poisons), target, matching)
    assert after.mean() < 0.7 * before.mean()
    history = result.loss_history[0]
    assert history[-1] < history[0] and history[0] == pytest.approx(before.mean().item(), rel=1e-4)
    assert (history[1:] <= history[:-1] + 1e-3 * history[0]).float().mean() >= 0.8  # mostly monotone


def test_htbd_planted_backdoor_moves_patched_targets_to_the_base_class(surrogate):
    """Poisons of class 0 crafted against patched class-1 images; a linear head trained on the
    frozen features of clean data plus the poisons sends patched class-1 test images to class
    0, and the same head trained with the unperturbed bases in their place does not. (A toy
    budget of 32/255: the classes are close, and the trigger is the only cue.)"""
    bases, sources = _images(40, 0, 100), _images(40, 1, 101)
    patch, location = triggers.make_patch(3, seed=1, dtype=torch.float32), (4, 4)
    poisons = htbd.craft_poisons(surrogate, bases, sources, patch, location=location, eps=32 / 255, steps=30,
                                 lr=4 / 255, step_rule="pgd", decay_every=None)
    clean_x = torch.cat([_images(60, 0, 200), _images(100, 1, 201), _images(100, 2, 202)])
    clean_y = torch.tensor([0] * 60 + [1] * 100 + [2] * 100)
    patched_targets = triggers.paste_patch(_images(200, 1, 500), patch, *location)

    def rate_to_base_class(extra):
        with torch.no_grad():
            train_features = surrogate.features(torch.cat([clean_x, extra]))
            test_features = surrogate.features(patched_targets)
        labels = torch.cat([clean_y, torch.zeros(len(extra), dtype=torch.long)])
        torch.manual_seed(0)
        head = nn.Linear(train_features.shape[1], 3)
        opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        for _ in range(150):
            opt.zero_grad()
            F.cross_entropy(head(train_features), labels).backward()
            opt.step()
        with torch.no_grad():
            return (head(test_features).argmax(1) == 0).float().mean().item()
    poisoned, control = rate_to_base_class(poisons), rate_to_base_class(bases)
    assert poisoned >= 0.5 and control <= 0.1, (poisoned, control)


@needs_gd
def test_htbd_default_step_is_the_benchmarks_plain_gradient_descent_with_its_staircase(surrogate):
    """The loop's "gd" rule with the 0.95-per-``decay_every`` staircase reproduces a plain
    rewrite of the benchmark's iteration (craft_poisons_htbd.py), with the one-to-one matching."""
    bases, sources, patch, location = _htbd_setup(8)
    lr, steps, decay_every = 0.02, 6, 2
    seen_lr = []
    poisons = htbd.craft_poisons(surrogate, bases, sources, patch, location=location, steps=steps, lr=lr,
                                 decay_every=decay_every, on_step=lambda state: seen_lr.append(state.lr))
    base = bases.float() / 255
    target = htbd.patched_source_features(surrogate, sources, patch, location)
    x = base.clone()
    for j in range(steps):
        x.requires_grad_()
        feats = surrogate.features(x)
        assignment = htbd.greedy_matching(torch.cdist(feats.detach(), target))
        loss = torch.norm(feats - target[assignment]) ** 2
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() - lr * 0.95 ** (j // decay_every) * grad
        x = (base + (x - base).clamp(-EPS, EPS)).clamp(0, 1)
    assert seen_lr == pytest.approx([lr * 0.95 ** (j // decay_every) for j in range(steps)])
    assert (x - base).abs().max() > EPS / 4  # the step is large enough to move the poisons
    assert torch.allclose(poisons, x, atol=1e-5)


@needs_gd
def test_htbd_defaults_lower_the_feature_distance(surrogate):
    bases, sources, patch, location = _htbd_setup()
    _, result = htbd.craft_poisons(surrogate, bases, sources, patch, location=location, steps=10, lr=0.05,
                                   return_result=True)
    assert result.loss_history[0, -1] < 0.9 * result.loss_history[0, 0]


def test_htbd_refuses_bad_input_before_any_compute(surrogate):
    bases, sources, patch, location = _htbd_setup(4)
    run = dict(location=location, step_rule="pgd", decay_every=None)
    cases = [
        (dict(eps=8), "did you mean 8/255"),
        (dict(location=triggers.HTBD_LOCATION), "does not fit"),
        (dict(base_labels=torch.zeros(4), source_labels=torch.zeros(4)), "also among the base labels"),
        (dict(matching="hungarian"), "matching='hungarian'"),
        (dict(step_rule="newton"), "step_rule='newton'"),
        (dict(lr=0), "lr=0"),
        (dict(lr_decay=1.5), "lr_decay=1.5"),
        (dict(batch_size=0), "batch_size=0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            htbd.craft_poisons(surrogate, bases, sources, patch, **{**run, **kwargs})
    with pytest.raises(ValueError, match="source_images"):
        htbd.craft_poisons(surrogate, bases, sources[:3], patch, **run)
    with pytest.raises(ValueError, match="non-empty"):
        htbd.craft_poisons(surrogate, bases[:0], sources[:0], patch, **run)
    with pytest.raises(ValueError, match="features"):
        htbd.craft_poisons(nn.Conv2d(3, 3, 1), bases, sources, patch, **run)
    with pytest.raises(ValueError, match="does not fit"):
        htbd.craft_poisons(surrogate, bases, sources, triggers.make_patch(SIZE + 1), location=(0, 0))


def test_both_attacks_are_registered_with_their_taxonomy():
    from poisonrepro import registry
    for name, module in (("clean_label_backdoor", clbd), ("hidden_trigger_backdoor", htbd)):
        method = registry.get(name)
        assert method.function is module.craft_poisons and method.notebook == "04_witches_brew"
        assert method.taxonomy == dict(timing="poisoning", goal="targeted", knowledge="gray-box",
                                       universality="universal", influence="causative", violation="integrity",
                                       specificity="targeted")
