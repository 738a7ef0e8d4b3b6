"""Toy data and a tiny network for the availability-noise tests (12's noises, 13's and 14's
baselines): written once, each test file fixing its own number of classes and sizes."""
import torch
import torch.nn.functional as F
from torch import nn


def colour_toy(n: int, classes: int, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 size x size RGB images of ``classes`` classes: a class colour plus heavy noise
    (learnable, not trivially); the first two at the ends of the pixel range, where clipping binds."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    colours = torch.rand(classes, 3, 1, 1, generator=g) * 0.3 - 0.15
    x = (0.5 + colours[y] + 0.25 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    x[0], x[1] = 0.0, 1.0
    return (x * 255).round().to(torch.uint8), y


def small_net(classes: int, seed: int = 0) -> nn.Module:
    """A one-conv network for 8x8 images, its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, classes))


def trained_net(x: torch.Tensor, y: torch.Tensor, classes: int, epochs: int = 30, seed: int = 0) -> nn.Module:
    """``small_net`` trained full-batch with Adam on the uint8 images ``x``; in eval mode."""
    net = small_net(classes, seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xf = x.float() / 255
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(net(xf), y).backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def mean_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The network's mean cross-entropy on the uint8 images ``x`` (eval mode)."""
    return float(F.cross_entropy(net.eval()(x.float() / 255), y))
