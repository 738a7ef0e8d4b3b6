"""The victim trainer and the crafting loop on a CUDA device (the ``paper`` profile's runs).
Skipped without one; run on a GPU machine with ``pytest tests/test_device.py``."""
import pytest
import torch

from poisonrepro import models as M
from poisonrepro import train as T
from poisonrepro.attacks import convex_polytope as CP
from poisonrepro.attacks import witches_brew as WB

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _images(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(n) % 10


def test_train_victim_on_cuda_learns_and_stays_there():
    x, y = _images(512)
    x[y == 3] = 255  # a class anyone can learn: white images
    model = M.build_model("convnet_bn").cuda()
    T.train_victim(model, x, y, T.VictimRecipe(epochs=8, batch_size=64), seed=0)
    assert next(model.parameters()).is_cuda
    pred = T.predict_logits(model, T.to_unit(x[y == 3]).cuda()).argmax(1)
    assert (pred == 3).float().mean() > 0.9


@pytest.fixture
def float32():
    """cuDNN's TF32 off, so that the GPU computes what the CPU does to float32 rounding."""
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = True


def test_gradient_matching_on_cuda_follows_the_cpu_and_keeps_the_budget(float32):
    torch.manual_seed(0)
    net = M.build_model("resnet18_standin").eval()
    x, _ = _images(20)
    x01, y, target = x.float() / 255, torch.full((20,), 8), torch.rand(1, 3, 32, 32)
    kwargs = dict(eps=16 / 255, steps=30, restarts=1, batch_size=20, augment=False, seed=0)
    cpu = WB.craft_poisons([net], x01, y, target, 3, **kwargs)
    gpu = WB.craft_poisons([net.cuda()], x01, y, target, 3, **kwargs)
    assert not gpu.delta.is_cuda  # deltas stay on the CPU
    assert gpu.delta.abs().max() <= 16 / 255 + 1e-6
    assert gpu.loss_history[0, -1] < gpu.loss_history[0, 0]  # the cosine rises
    torch.testing.assert_close(gpu.loss_history, cpu.loss_history, rtol=1e-3, atol=1e-6)


def test_convex_polytope_on_cuda_follows_the_cpu(float32):
    torch.manual_seed(0)
    nets = [M.build_model("convnet_bn").eval() for _ in range(2)]
    bases, targets = torch.rand(5, 3, 32, 32), torch.rand(2, 3, 32, 32)
    # Adam's first steps are nearly signed, so single pixels may differ: compare the objective
    _, cpu, _ = CP.craft_poisons(nets, bases, targets, steps=20)
    poisons, gpu, _ = CP.craft_poisons([n.cuda() for n in nets], bases, targets, steps=20)
    assert not poisons.is_cuda
    assert (poisons - bases).abs().max() <= 0.1 + 1e-6
    assert gpu.loss_history[0, -1] < gpu.loss_history[0, 0]
    torch.testing.assert_close(gpu.loss_history, cpu.loss_history, rtol=1e-3, atol=1e-6)


def test_train_classifier_and_train_many_train_where_the_models_are_from_cpu_data():
    """01, 08 and 10 keep their data on the CPU and put their networks on train.default_device()."""
    x = torch.randn(256, 20)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(20, 2)).cuda()
    T.train_classifier(model, x, y, epochs=20, lr=0.05, seed=0)
    logits = T.predict_logits(model, x)
    assert logits.device.type == "cpu" and T.accuracy(logits, y) > 0.9  # back where the data are
    heads = [torch.nn.Linear(20, 2).cuda() for _ in range(3)]
    stack = T.train_many(heads, x, y, [torch.arange(256)] * 3, epochs=20, lr=0.05, seed=0)
    pred = stack.predict(x)
    assert pred.device.type == "cpu" and (pred.argmax(-1) == y).float().mean() > 0.9
