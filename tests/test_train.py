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
    from poisonrepro.bench import bench_case
    torch.manual_seed(0)
    feats, y = torch.randn(256, 512), torch.randint(0, 2, (256,))
    row = bench_case("heads", lambda: torch.nn.Linear(512, 2), feats, y, 40, 2, 32)
    assert row["speed_up"] > 2, row
