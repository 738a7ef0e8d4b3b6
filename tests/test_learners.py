"""The learner layer of notebooks 12-14 (``poisonrepro.learners``): each augmentation does what it
says, adversarial training's inner PGD keeps to its radius, the contrastive learners' pieces
(NT-Xent, MoCo's momentum key encoder and queue, SimSiam's stop-gradient) behave, and each
contrastive learner beats the random-feature probe on a task built so that learned features help.
Tiny synthetic data; seconds per test."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from poisonrepro import evaluation as EV
from poisonrepro import learners
from poisonrepro import train as T
from poisonrepro.attacks import evasion_pgd
from poisonrepro.learners import adversarial as AD
from poisonrepro.learners import augmented as AU
from poisonrepro.learners import contrastive as C
from poisonrepro.rng import seeded

RECIPE = T.VictimRecipe(epochs=2, batch_size=64, lr=0.1, channels_last=False)


def constant_images(b: int = 8, size: int = 16) -> torch.Tensor:
    """Image i is the constant (i + 1) / (b + 1): every pixel tells which image it came from."""
    return ((torch.arange(b, dtype=torch.float32) + 1) / (b + 1)).view(b, 1, 1, 1).expand(b, 3, size, size).clone()


def two_class_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An easy two-class task: class 1 has a bright square somewhere, class 0 a dark one."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.5 + 0.1 * torch.randn(n, 3, 32, 32, generator=g)
    for i in range(n):
        r, c = torch.randint(0, 22, (2,), generator=g).tolist()
        x[i, :, r:r + 10, c:c + 10] = 0.9 if y[i] else 0.1
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


# --------------------------------------------------------------------------- names and errors
def test_kinds_name_importable_learners():
    assert set(learners.kinds()) == {"augmented", "adversarial", "simclr", "moco_v2", "simsiam", "random_features"}
    for name in learners.kinds():
        factory = EV.learner_factory(learners.kind_path(name))
        assert callable(factory)
    with pytest.raises(ValueError, match="allowed: augmented, adversarial"):
        learners.kind_path("byol")


def test_bad_augmentation_arguments_fail_before_compute():
    with pytest.raises(ValueError, match="allowed: crop_flip, none, mixup, cutmix, cutout, gaussian_noise"):
        AU.AugmentedLearner("convnet_bn", augmentation="autoaugment")
    with pytest.raises(ValueError, match="takes mixup_alpha; got cutout_size"):
        AU.AugmentedLearner("convnet_bn", augmentation="mixup", cutout_size=8)
    with pytest.raises(ValueError, match=r"noise_sigma=8: .*8/255, not 8"):
        AU.AugmentedLearner("convnet_bn", augmentation="gaussian_noise", noise_sigma=8)
    with pytest.raises(ValueError, match="cutmix_prob=1.5: a probability"):
        AU.AugmentedLearner("convnet_bn", augmentation="cutmix", cutmix_prob=1.5)
    with pytest.raises(ValueError, match="arch='resnet1000'"):
        AU.AugmentedLearner("resnet1000", augmentation="mixup")
    # an evaluation spec checks them when the trial is built
    spec = {"kind": learners.kind_path("augmented"), "arch": "convnet_bn", "augmentation": "mix_up"}
    with pytest.raises(ValueError, match="augmentation='mix_up'"):
        EV.evaluate_poisons({"name": "cifar10", "per_class": 10}, None, spec, {}, 0, {"test_images": 10})


# --------------------------------------------------------------------------- augmentations
def test_mixup_mixes_images_and_labels_with_convex_weights():
    x = constant_images()
    lams = []
    for seed in range(5):
        out, weights = AU.augment(x, "mixup", torch.Generator().manual_seed(seed), mixup_alpha=1.0)
        assert weights.shape == (8, 8)
        assert ((weights >= 0) & (weights <= 1)).all() and torch.allclose(weights.sum(1), torch.ones(8))
        assert ((weights > 0).sum(1) <= 2).all()  # each image mixes two images
        # the image is the mixture its label weights say
        assert torch.allclose(out, torch.einsum("ij,jchw->ichw", weights, x), atol=1e-6)
        lams.append(weights.max(1).values[0].item())
    assert len(set(round(v, 4) for v in lams)) > 1 and min(lams) < 0.99  # lam drawn, not fixed at 1


def test_cutmix_pastes_a_box_and_mixes_labels_by_area():
    x = constant_images(size=16)
    out, weights = AU.augment(x, "cutmix", torch.Generator().manual_seed(3), cutmix_alpha=1.0, cutmix_prob=1.0)
    assert ((weights >= 0) & (weights <= 1)).all() and torch.allclose(weights.sum(1), torch.ones(8))
    for i in range(8):
        own = (out[i, 0] == x[i, 0]).float()
        pasted = 1 - own
        others = [j for j in range(8) if j != i and weights[i, j] > 0]
        if not others:  # an empty box: the image is unchanged
            assert pasted.sum() == 0
            continue
        j, = others
        assert torch.allclose(out[i, 0][pasted.bool()], x[j, 0][pasted.bool()])  # pasted from image j
        rows, cols = pasted.nonzero(as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == pasted.sum()  # one rectangle
        assert weights[i, j].item() == pytest.approx(pasted.mean().item(), abs=1e-6)  # labels mixed by area
    # cutmix_prob: a batch is left alone with probability 1 - p
    kept = sum(AU.augment(x, "cutmix", torch.Generator().manual_seed(s), cutmix_prob=0.3)[1] is None
               for s in range(200))
    assert 110 <= kept <= 170  # 140 expected


def test_cutout_zeroes_one_box_per_image_and_keeps_labels():
    x = constant_images(size=16)
    out, weights = AU.augment(x, "cutout", torch.Generator().manual_seed(0), cutout_size=5)
    assert weights is None
    corners = set()
    for i in range(8):
        zero = out[i] == 0
        assert zero.all(0).sum() == 25 and (zero.any(0) == zero.all(0)).all()  # 5 x 5, every channel
        rows, cols = zero[0].nonzero(as_tuple=True)
        assert rows.max() - rows.min() == 4 and cols.max() - cols.min() == 4
        assert torch.equal(out[i][~zero], x[i][~zero])
        corners.add((rows.min().item(), cols.min().item()))
    assert len(corners) > 1  # a box per image, not one per batch
    with pytest.raises(ValueError, match="cutout_size=16: must be smaller than the images' 16 x 16"):
        AU.augment(x, "cutout", torch.Generator(), cutout_size=16)


def test_gaussian_noise_has_its_sigma_and_stays_in_range():
    x = torch.full((16, 3, 32, 32), 0.5)
    out, weights = AU.augment(x, "gaussian_noise", torch.Generator().manual_seed(0), noise_sigma=0.05)
    assert weights is None
    assert (out - x).std().item() == pytest.approx(0.05, rel=0.03)
    assert abs((out - x).mean().item()) < 0.002
    bright = torch.ones(4, 3, 8, 8)
    out, _ = AU.augment(bright, "gaussian_noise", torch.Generator().manual_seed(0), noise_sigma=0.2)
    assert out.max() <= 1 and out.min() >= 0 and out.min() < 0.9


@pytest.mark.parametrize("augmentation", ["mixup", "cutmix", "cutout", "gaussian_noise", "gaussian_blur"])
def test_every_augmentation_keeps_pixels_in_range_and_is_seeded(augmentation):
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    params = {"cutmix": {"cutmix_prob": 1.0}, "cutout": {"cutout_size": 8}}.get(augmentation, {})
    a, wa = AU.augment(x, augmentation, torch.Generator().manual_seed(5), **params)
    b, wb = AU.augment(x, augmentation, torch.Generator().manual_seed(5), **params)
    c, _ = AU.augment(x, augmentation, torch.Generator().manual_seed(6), **params)
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape
    assert torch.equal(a, b) and (wa is None or torch.equal(wa, wb))
    assert not torch.equal(a, x)
    if augmentation != "gaussian_blur":  # the blur is not random
        assert not torch.equal(a, c)


def test_gaussian_blur_spreads_an_impulse_and_keeps_a_constant():
    x = torch.zeros(1, 3, 15, 15)
    x[..., 7, 7] = 1
    out, _ = AU.augment(x, "gaussian_blur", torch.Generator(), blur_kernel=5, blur_sigma=1.0)
    assert out[0, 0, 7, 7] < 0.3 and out[0, 0, 7, 8] > 0 and out.sum().item() == pytest.approx(3.0, rel=1e-4)
    flat = torch.full((1, 3, 15, 15), 0.3)
    assert torch.allclose(AU.augment(flat, "gaussian_blur", torch.Generator())[0], flat)


def test_mixed_loss_is_the_label_mixture_and_eval_mode_is_plain():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    wrapped = AU.AugmentedNetwork(net, "mixup", torch.Generator().manual_seed(0), {"mixup_alpha": 1.0})
    x, y = constant_images(), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    wrapped.train()
    logits = wrapped(x)
    m = wrapped.mixing
    expected = sum(m[i, j] * F.cross_entropy(logits[i:i + 1], y[j:j + 1]) for i in range(8) for j in range(8)) / 8
    assert wrapped.loss(logits, y, 0.0).item() == pytest.approx(expected.item(), rel=1e-5)
    wrapped.eval()
    assert torch.equal(wrapped(x), net(x))


def test_augmented_learner_learns_is_deterministic_and_none_switches_off_crop_flip(monkeypatch):
    x, y = two_class_images(256, 0)
    tx, ty = two_class_images(200, 1)
    learner = AU.AugmentedLearner("convnet_bn", augmentation="mixup")
    a = learner.train(x, y, RECIPE, seed=3)
    b = learner.train(x, y, RECIPE, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    accuracy = (learner.predict(a, tx) == ty).float().mean().item()
    assert accuracy > 0.8  # chance is 0.5

    calls = []
    monkeypatch.setattr(T, "crop_flip", lambda xb, *args: calls.append(1) or xb)
    AU.AugmentedLearner("convnet_bn", augmentation="cutout", cutout_size=4).train(x[:64], y[:64], RECIPE, seed=0)
    assert calls  # on top of the recipe's flip-and-crop
    calls.clear()
    AU.AugmentedLearner("convnet_bn", augmentation="none").train(x[:64], y[:64], RECIPE, seed=0)
    assert not calls


# --------------------------------------------------------------------------- adversarial training
def test_adversarial_learner_arguments():
    assert AD.AdversarialLearner("convnet_bn", rho=2).radius == pytest.approx(2 / 255)
    assert AD.AdversarialLearner("convnet_bn", eps=8 / 255).adversarial_recipe(RECIPE).adversarial_step_size \
        == pytest.approx(2 / 255)
    with pytest.raises(ValueError, match="give eps .* or rho .*not both"):
        AD.AdversarialLearner("convnet_bn", eps=1 / 255, rho=1)
    with pytest.raises(ValueError, match="not neither"):
        AD.AdversarialLearner("convnet_bn")
    with pytest.raises(ValueError, match=r"eps=8: .*8/255"):
        AD.AdversarialLearner("convnet_bn", eps=8)


def test_adversarial_training_inner_pgd_keeps_to_its_radius(monkeypatch):
    seen = []
    real = evasion_pgd.untargeted_pgd

    def recording(model, xb, yb, **kw):
        out = real(model, xb, yb, **kw)
        seen.append((T.to_unit(xb), out, kw["eps"]))
        return out
    monkeypatch.setattr(evasion_pgd, "untargeted_pgd", recording)
    x, y = two_class_images(128, 0)
    AD.AdversarialLearner("convnet_bn", rho=2, steps=3).train(x, y, RECIPE, seed=0)
    assert len(seen) == 4  # every batch of the 2 epochs
    for clean, adv, eps in seen:
        assert eps == pytest.approx(2 / 255)
        gap = (adv - clean).abs().max().item()
        assert gap <= 2 / 255 + 1e-6 and gap > 0.9 * 2 / 255  # on the ball's surface, never past it
        assert adv.min() >= 0 and adv.max() <= 1


# --------------------------------------------------------------------------- contrastive learners
def shape_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes of outline shapes (square ring, circle ring, plus, cross) of random size at
    random places, dark on light grey, with pixel noise: the class is a shape under nuisance of
    place and size, which a random network's pooled features capture poorly and contrastive
    learning (crops, flips) learns within a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    x = torch.empty(n, 3, 32, 32)
    for i in range(n):
        cy, cx = torch.randint(10, 22, (2,), generator=g).float()
        r = 7 + 3 * torch.rand((), generator=g)
        dy, dx = rows - cy, cols - cx
        mask = [(dy.abs() < r) & (dx.abs() < r) & ((dy.abs() > r - 3) | (dx.abs() > r - 3)),
                (dy ** 2 + dx ** 2 < r ** 2) & (dy ** 2 + dx ** 2 > (r - 3) ** 2),
                ((dy.abs() < 1.6) & (dx.abs() < r)) | ((dx.abs() < 1.6) & (dy.abs() < r)),
                (((dy - dx).abs() < 2.2) | ((dy + dx).abs() < 2.2)) & (dy.abs() < 0.75 * r) & (dx.abs() < 0.75 * r),
                ][int(y[i])]
        x[i] = torch.where(mask, 0.2, 0.8) + 0.1 * torch.randn(3, 32, 32, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


@pytest.fixture(scope="module")
def shapes():
    return shape_images(256, 0), shape_images(400, 1)


def test_two_views_are_seeded_independent_views_in_range():
    x, _ = shape_images(8, 0)
    a1, a2 = C.two_views(x, torch.Generator().manual_seed(0))
    b1, b2 = C.two_views(x, torch.Generator().manual_seed(0))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert a1.shape == (8, 3, 32, 32) and a1.dtype == torch.float32 and a1.min() >= 0 and a1.max() <= 1
    assert not torch.equal(a1, a2) and not torch.equal(a1, T.to_unit(x))


def test_nt_xent_is_simclr_loss():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.T / 0.5
    by_hand = 0.0
    for i in range(8):
        j = (i + 4) % 8
        by_hand += -s[i, j] + torch.logsumexp(torch.cat([s[i, :i], s[i, i + 1:]]), 0)
    assert C.nt_xent(z1, z2, 0.5).item() == pytest.approx(by_hand.item() / 8, rel=1e-5)
    # aligned views of distinct instances score far lower than unrelated views
    assert C.nt_xent(z1, z1 + 0.01, 0.5) < C.nt_xent(z1, z2, 0.5) - 0.5


def test_info_nce_positive_first():
    g = torch.Generator().manual_seed(1)
    q, k = F.normalize(torch.randn(3, 5, generator=g), dim=1), F.normalize(torch.randn(3, 5, generator=g), dim=1)
    queue = F.normalize(torch.randn(6, 5, generator=g), dim=1)
    by_hand = torch.stack([-(q[i] @ k[i]) / 0.2
                           + torch.logsumexp(torch.cat([(q[i] @ k[i]).view(1), queue @ q[i]]) / 0.2, 0)
                           for i in range(3)]).mean()
    assert C.info_nce(q, k, queue, 0.2).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_simsiam_targets_have_no_gradient():
    g = torch.Generator().manual_seed(2)
    p1, p2, z1, z2 = (torch.randn(4, 6, generator=g).requires_grad_() for _ in range(4))
    loss = C.simsiam_loss(p1, p2, z1, z2)
    grads = torch.autograd.grad(loss, [p1, p2, z1, z2], allow_unused=True)
    assert grads[0] is not None and grads[1] is not None and grads[0].abs().sum() > 0
    assert grads[2] is None and grads[3] is None  # the stop-gradient
    assert C.simsiam_loss(z1, z2, z1, z2) > C.simsiam_loss(z2, z1, z1, z2) - 1e-6  # -cos is minimal at p = target
    assert C.simsiam_loss(z2, z1, z1, z2).item() == pytest.approx(-1.0, abs=1e-5)


def test_momentum_update_is_the_ema():
    query, key = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = copy.deepcopy(key)
    C.momentum_update(key, query, 0.9)
    for k, k0, q in zip(key.parameters(), before.parameters(), query.parameters()):
        assert torch.allclose(k, 0.9 * k0 + 0.1 * q)


def test_moco_key_encoder_is_a_momentum_copy_that_tracks_the_query(shapes):
    (x, _), _ = shapes
    learner = C.MoCoV2Learner("convnet_bn", epochs=2, batch_size=64, lr=0.3, queue_size=128, key_momentum=0.9)
    start = learner.encoder(0)
    encoder, nets = learner.pretrain(x[:128], 0)
    key = nets["key_encoder"]
    assert not any(p.requires_grad for p in key.parameters())  # never trained by gradients

    def distance(a, b):
        return math.sqrt(sum(((p - q) ** 2).sum().item() for p, q in zip(a.parameters(), b.parameters())))
    assert distance(key, encoder) > 0  # a copy that lags
    assert distance(key, encoder) < distance(start, encoder)  # and has followed the query from the start
    assert distance(key, start) > 0
    with seeded(0):  # the queue as pretrain drew it: random unit vectors
        initial = learner.networks(learner.encoder(0)).queue
    # 4 steps of 64 keys have replaced all 128 rows with unit-length keys
    assert not (nets.queue == initial).all(1).any()
    assert torch.allclose(nets.queue.norm(dim=1), torch.ones(128), atol=1e-5)


def test_linear_probe_gives_classes_and_handles_missing_ones(shapes):
    (x, y), _ = shapes
    keep = y != 2  # class 2 absent: never predicted
    learner = C.RandomFeatureLearner("convnet_bn")
    model = learner.train(x[keep], y[keep], RECIPE, seed=0)
    predicted = learner.predict(model, x)
    assert predicted.dtype == torch.long and set(predicted.tolist()) <= {0, 1, 3}
    with pytest.raises(ValueError, match="uint8"):
        learner.train(T.to_unit(x), y, RECIPE, seed=0)


CONTRASTIVE = {
    "simclr": C.SimCLRLearner("convnet_bn", epochs=10, batch_size=64, lr=0.3),
    "moco_v2": C.MoCoV2Learner("convnet_bn", epochs=10, batch_size=64, lr=0.3, queue_size=256, key_momentum=0.9),
    "simsiam": C.SimSiamLearner("convnet_bn", epochs=10, batch_size=64, lr=0.3),
}


@pytest.fixture(scope="module")
def random_feature_accuracy(shapes):
    (x, y), (tx, ty) = shapes
    learner = C.RandomFeatureLearner("convnet_bn")
    return [(learner.predict(learner.train(x, y, RECIPE, seed=s), tx) == ty).float().mean().item() for s in range(3)]


@pytest.mark.parametrize("name", list(CONTRASTIVE))
def test_contrastive_learner_beats_random_features(name, shapes, random_feature_accuracy):
    """The stated margins: 5 points over the probe of the same encoder at its initial weights
    (seed 0), and 10 points over the mean of three random encoders' probes (0.71 here)."""
    (x, y), (tx, ty) = shapes
    learner = CONTRASTIVE[name]
    spec = {"kind": learners.kind_path(name), **{f: getattr(learner, f) for f in learner.__dataclass_fields__}}
    assert EV.build_learner(spec) == learner  # what an evaluation spec builds
    accuracy = (learner.predict(learner.train(x, y, RECIPE, seed=0), tx) == ty).float().mean().item()
    assert accuracy >= random_feature_accuracy[0] + 0.05
    assert accuracy >= sum(random_feature_accuracy) / 3 + 0.10


def test_learners_run_in_the_evaluation_trial(monkeypatch):
    """The shared trial trains each kind of learner by its import path and scores its predictions."""
    test_x, test_y = shape_images(100, 1)
    monkeypatch.setitem(EV.DATASETS, "shapes", EV.Dataset(
        training_set=lambda n: shape_images(n, 0), test_set=lambda count: (test_x[:count], test_y[:count]),
        test_images=lambda indices: test_x[list(indices)]))
    recipe = {"epochs": 1, "batch_size": 64, "channels_last": False}
    for spec in ({"kind": learners.kind_path("random_features"), "arch": "convnet_bn"},
                 {"kind": learners.kind_path("augmented"), "arch": "convnet_bn", "augmentation": "cutmix"},
                 {"kind": learners.kind_path("adversarial"), "arch": "convnet_bn", "rho": 1, "steps": 1}):
        out = EV.evaluation_trial(dataset={"name": "shapes", "n": 128}, poisons=None, learner=spec, recipe=recipe,
                                  seed=0, probes={"test_images": 100, "targets": [0, 1, 2], "fit": True})
        assert 0 <= out["test_accuracy"] <= 1 and out["prediction"].shape == (3,)
        assert out["prediction"].dtype == torch.long and 0 <= out["train_accuracy"] <= 1
