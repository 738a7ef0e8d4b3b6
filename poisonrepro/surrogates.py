"""Networks for crafting, built the way victims are: ``build`` draws a ``models`` network's initial
weights from a seed alone, and ``Autocast`` runs a network under the precision in force (bf16
autocast where the processor has it, as ``train.train_victim`` trains), its outputs in fp32, so that a
crafting step costs what a victim's step costs. Notebooks 13 and 14 use them; 12's experiments still
hold their own copies, to be moved here with its next full rerun (a change to its code stales its
committed run)."""
from __future__ import annotations

from torch import nn

from . import models as M
from . import precision as PR
from . import train as T
from .rng import seeded


class Autocast(nn.Module):
    """``net`` under the precision in force; its logits (or ``features``) in fp32."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        with PR.autocast(x.device):
            return self.net(x).float()

    def features(self, x):
        with PR.autocast(x.device):
            return self.net.features(x).float()


def build(arch: str, seed: int) -> nn.Module:
    """A new ``arch`` network on ``train.default_device()``, its initial weights drawn from ``seed``
    (the caller's random generators untouched)."""
    with seeded(seed):
        return M.build_model(arch).to(T.default_device())
