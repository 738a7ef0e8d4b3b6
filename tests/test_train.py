import copy

import torch

from poisonrepro import models
from poisonrepro import train as T


def test_train_many_trains_each_model_on_its_own_set():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = torch.cat([torch.zeros(100), torch.ones(100)]).long()
    heads = [torch.nn.Linear(5, 2) for _ in range(2)]
    sets = [torch.arange(0, 100), torch.arange(100, 200)]  # model 0 sees only class 0, model 1 only class 1
    stack = T.train_many(heads, x, y, sets, epochs=20, lr=0.05, batch_size=16)
    pred = stack.predict(x).argmax(-1)
    assert (pred[0] == 0).all() and (pred[1] == 1).all()


def test_train_many_learns_and_is_deterministic():
    torch.manual_seed(1)
    x = torch.randn(300, 8)
    y = (x[:, 0] > 0).long()
    def run():
        torch.manual_seed(2)
        heads = [torch.nn.Linear(8, 2) for _ in range(3)]
        return T.train_many(heads, x, y, [torch.arange(300)] * 3, epochs=10, lr=0.05, batch_size=32, seed=5)
    a, b = run(), run()
    acc = (a.predict(x).argmax(-1) == y).float().mean(1)
    assert (acc > 0.95).all()
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k])


def test_transfer_learning_changes_only_the_head():
    torch.manual_seed(0)
    net = models.convnet(num_classes=2, width=4)
    body_before = copy.deepcopy(net.body.state_dict())
    head_before = net.head.weight.detach().clone()
    T.freeze_for_transfer(net)
    x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 2, (32,))
    T.train_classifier(net, x, y, epochs=2, lr=0.01, batch_size=8)
    assert all(torch.equal(v, net.body.state_dict()[k]) for k, v in body_before.items())
    assert not torch.equal(head_before, net.head.weight)


def test_augmentation_crops_and_flips_per_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32)
    out = T.augment_batch(x, gen)
    assert out.shape == x.shape
    same = [(torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2))) for i in range(64)]
    assert 0 < sum(same) < 64  # some images unshifted, most moved


def test_every_model_exposes_penultimate_features():
    x = torch.rand(2, 3, 32, 32)
    for name in ("convnet", "alexnet_cifar", "resnet18", "mobilenet_v2", "vgg11"):
        net = models.build_model(name, num_classes=10).eval()
        f = net.features(x)
        assert f.shape == (2, net.feature_dim)
        assert torch.allclose(net.head(f), net(x), atol=1e-5)
    tab = torch.rand(4, 57)
    for net in (models.mlp(57), models.logistic_regression(57), models.adaline(57)):
        assert torch.allclose(net.head(net.features(tab)), net(tab))


def test_adaline_uses_the_squared_error():
    torch.manual_seed(0)
    x = torch.randn(100, 3)
    y = (x[:, 0] > 0).long()
    net = T.train_classifier(models.adaline(3), x, y, epochs=30, lr=0.05, batch_size=20)
    assert ((net(x).squeeze(-1) > 0).long() == y).float().mean() > 0.9


def test_train_many_is_faster_than_a_loop_for_many_small_heads():
    from poisonrepro.bench import bench_many_case as bench_case
    torch.manual_seed(0)
    feats, y = torch.randn(256, 512), torch.randint(0, 2, (256,))
    row = bench_case("heads", lambda: torch.nn.Linear(512, 2), feats, y, 40, 2, 32)
    assert row["speed_up"] > 2, row


# --------------------------------------------------------------------------- fast victims
def test_crop_flip_translates_with_reflection_and_flips_each_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8)
    out = T.crop_flip(x, gen, pad=2)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    # every output is one of the 25 reflected translations of its input, or of its mirror image
    def shifted(img, dy, dx):
        padded = torch.nn.functional.pad(img[None].float(), (2, 2, 2, 2), mode="reflect")[0]
        return padded[:, 2 + dy:34 + dy, 2 + dx:34 + dx].to(torch.uint8)
    kinds = set()
    for i in range(40):
        match = [(dy, dx, f) for dy in range(-2, 3) for dx in range(-2, 3) for f in (0, 1)
                 if torch.equal(out[i], shifted(x[i].flip(2) if f else x[i], dy, -dx if f else dx))]
        assert match, f"image {i} is no flip-and-translate of its input"
        kinds.add(match[0])
    assert len(kinds) > 10  # drawn per image, not once per batch
    assert torch.equal(T.crop_flip(x, gen, pad=0, flip=False), x)


def test_crop_flip_is_differentiable_for_float_batches():
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    T.crop_flip(x, torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad is not None and x.grad.sum() > 0


def _two_class_images(n=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randint(0, 120, (n, 32, 32, 3), dtype=torch.uint8, generator=gen)
    x[y == 1, :, :, 0] += 120  # class 1 is redder
    return x, y


def test_train_victim_learns_from_uint8_and_is_deterministic():
    x, y = _two_class_images()
    recipe = T.VictimRecipe(epochs=3, batch_size=32, lr=0.05)
    def run():
        torch.manual_seed(0)
        net = models.build_model("convnet_bn", num_classes=2, widths=(4, 8, 8), stem=4)
        return T.train_victim(net, x, y, recipe, seed=3)
    a, b = run(), run()
    assert T.victim_accuracy(a, x, y) > 0.95
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_train_victim_schedule_ends_at_zero_without_fall_back():
    x, y = _two_class_images(64)
    net = models.build_model("convnet_bn", num_classes=2, widths=(4, 4, 4), stem=4)
    lrs = []
    def on_step(step, total):
        lrs.append(opt_lr[0].param_groups[0]["lr"])
    opt_lr = []
    orig = T._victim_optimizer
    def spy(model, recipe):
        opt_lr.append(orig(model, recipe))
        return opt_lr[-1]
    T._victim_optimizer = spy
    try:
        T.train_victim(net, x, y, T.VictimRecipe(epochs=10, batch_size=16, lr=0.1, warmup=0.2), on_step=on_step)
    finally:
        T._victim_optimizer = orig
    peak = lrs.index(max(lrs))
    assert len(lrs) == 40 and max(lrs) <= 0.1 + 1e-9 and lrs[-1] == 0.0
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))  # then falls to zero


def test_train_victim_rejects_bad_input_before_training():
    import pytest
    net = models.build_model("convnet_bn", num_classes=2, widths=(4, 4, 4), stem=4)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        T.train_victim(net, torch.rand(8, 3, 32, 32) * 255, torch.zeros(8).long())
    with pytest.raises(ValueError, match="labels"):
        T.train_victim(net, torch.rand(8, 3, 32, 32), torch.zeros(7).long())
    with pytest.raises(ValueError, match="epochs"):
        T.VictimRecipe(epochs=0)


def test_standins_keep_the_block_types_of_their_architectures_and_are_labelled():
    from torchvision.models.efficientnet import MBConv
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.regnet import ResBottleneckBlock
    from torchvision.models.resnet import BasicBlock
    from torch.utils.flop_counter import FlopCounterMode
    block = {"resnet18": BasicBlock, "mobilenet_v2": InvertedResidual, "efficientnet_b1": MBConv,
             "regnetx_1_6gf": ResBottleneckBlock, "vgg11": torch.nn.BatchNorm2d}
    x = torch.rand(1, 3, 32, 32)

    def flops(net):
        with FlopCounterMode(display=False) as c:
            net.eval()(x)
        return c.get_total_flops()
    for standin, real in models.STANDIN_OF.items():
        small, big = models.build_model(standin), models.build_model(real)
        kinds = {type(m) for m in small.modules()}
        assert block[real] in kinds and kinds <= {type(m) for m in big.modules()} | {torch.nn.Flatten}, standin
        assert small(x).shape == (1, 10) and small.features(x).shape[1] == small.feature_dim
        assert flops(small) < flops(big) / 3
        assert "STAND-IN" in models.display_name(standin) and "STAND-IN" not in models.display_name(real)


def _robust_and_brittle(n=256, seed=0):
    """Two classes of 16x16 images, told apart by a robust feature (the red channel's mean, 0.25
    apart, under noise that makes it about 90% separable) and a brittle one (a faint +-4/255
    checkerboard in the green channel, 100% predictive); the test budget, 8/255, can flip the
    brittle one only."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.5 + 0.05 * torch.randn(n, 3, 16, 16, generator=gen)
    x[:, 0] += (0.125 * (2 * y - 1) + 0.1 * torch.randn(n, generator=gen))[:, None, None]
    board = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2 - 1
    x[:, 1] += (4 / 255) * (2 * y - 1)[:, None, None] * board
    return x.clamp(0, 1), y


def test_adversarial_training_is_robust_where_standard_training_is_not():
    from poisonrepro.attacks.evasion_pgd import untargeted_pgd
    x, y = _robust_and_brittle()
    x_test, y_test = _robust_and_brittle(seed=1)
    eps = 8 / 255

    def robust_accuracy(adversarial_eps):
        torch.manual_seed(0)
        net = models.build_model("convnet_bn", num_classes=2, widths=(8, 16, 16), stem=4)
        recipe = T.VictimRecipe(epochs=15, batch_size=32, lr=0.05, crop_pad=0, flip=False, label_smoothing=0.0,
                                adversarial_eps=adversarial_eps, adversarial_steps=5, adversarial_step_size=eps / 2)
        T.train_victim(net, x, y, recipe, seed=0)
        x_adv = untargeted_pgd(net, x_test, y_test, eps=eps, steps=10, step_size=eps / 4)
        assert (x_adv - x_test).abs().max() <= eps + 1e-6
        return T.victim_accuracy(net, x_test, y_test, flip_tta=False), T.victim_accuracy(net, x_adv, y_test,
                                                                                         flip_tta=False)
    clean_std, robust_std = robust_accuracy(0.0)
    clean_at, robust_at = robust_accuracy(eps)
    # one run measured clean/robust 0.82/0.18 (standard) and 0.86/0.77 (adversarial); wide margins
    assert clean_std > 0.7 and robust_std < 0.5  # standard training leans on the brittle feature
    assert clean_at > 0.75 and robust_at > robust_std + 0.3  # adversarial training on the robust one


def test_adversarial_training_refuses_a_budget_on_the_255_scale():
    import pytest
    with pytest.raises(ValueError, match="8/255"):
        T.VictimRecipe(adversarial_eps=8)
