"""Transferable Unlearnable Examples (Ren et al. 2023): the class-wise separability discriminant
is small for class-wise clustered perturbations and large for random ones, matches a hand
computation, and TUE's crafting lowers it while keeping its budget and refusing bad input."""
import math

import pytest
import torch
from torch import nn

from poisonrepro.attacks import tue as TUE
from poisonrepro.registry import get

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_csd_matches_a_hand_computation():
    # two classes, two 1-D perturbations each: centres 0 and 4, spreads 1 and 1, distance 4
    delta = torch.tensor([[-1.0], [1.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert float(TUE.csd_loss(delta, labels)) == pytest.approx((1 + 1) / 4)
    # three classes on a line: centres 0, 4, 10; spreads 1, 1, 2
    delta = torch.tensor([[-1.0], [1.0], [3.0], [5.0], [8.0], [12.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    pairs = {(0, 1): (1 + 1) / 4, (0, 2): (1 + 2) / 10, (1, 2): (1 + 2) / 6}
    assert float(TUE.csd_loss(delta, labels)) == pytest.approx(2 * sum(pairs.values()) / 6)
    # the labels' values and order do not matter, only the grouping
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    assert float(TUE.csd_loss(delta[perm], (labels[perm] + 7))) == pytest.approx(2 * sum(pairs.values()) / 6)
    assert float(TUE.csd_loss(delta, torch.zeros(6, dtype=torch.long))) == 0.0  # one class: nothing to separate
    with pytest.raises(ValueError, match=r"labels of shape \(5,\): need one per perturbation \(6\)"):
        TUE.csd_loss(delta, labels[:5])


def test_class_wise_patterns_have_a_small_csd_and_random_noise_a_large_one():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 10
    patterns = torch.rand(10, 3, 8, 8, generator=g) * 2 - 1
    clustered = patterns[labels] + 0.05 * torch.randn(200, 3, 8, 8, generator=g)
    random = torch.rand(200, 3, 8, 8, generator=g) * 2 - 1
    assert float(TUE.csd_loss(clustered, labels)) < 0.2 < 2.0 < float(TUE.csd_loss(random, labels))


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.feature_dim = 32

    def features(self, x):
        return self.body(x)


def _data(n=48, classes=4):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % classes
    x = (torch.rand(n, 3, 16, 16, generator=g) * 255).round().to(torch.uint8)
    return x, y


def test_tue_lowers_the_csd_keeps_its_budget_and_is_registered():
    x, y = _data()
    torch.manual_seed(0)
    art = TUE.craft_tue(_Encoder(), x, y, eps=8 / 255, step_size=2 / 255, noise_steps=4, train_steps=2, rounds=2,
                        batch_size=16, ssl_weight=0.0, csd_weight=1.0, seed=0)
    assert art["delta_levels"].shape == (len(x), 3, 16, 16) and int(art["delta_levels"].abs().max()) <= 8
    assert float(art["csd_final"]) < 0.5 * float(art["csd_clean"])  # far more separable than the random start
    history = art["loss_history"]
    assert float(history[-1]) < float(history[0])
    assert math.isfinite(float(art["loss_clean"])) and math.isfinite(float(art["loss_poisoned"]))
    assert get("tue").notebook == "14_tue"
    with_ssl = TUE.craft_tue(_Encoder(), x, y, eps=8 / 255, step_size=2 / 255, noise_steps=2, train_steps=1,
                             rounds=1, batch_size=16, ssl_weight=1.0, csd_weight=0.1, seed=0)
    assert int(with_ssl["delta_levels"].abs().max()) <= 8


@pytest.mark.parametrize("kwargs, match", [
    ({"ssl_weight": 0.0, "csd_weight": 0.0}, r"the noise step would have no objective"),
    ({"csd_weight": -1.0}, r"csd_weight=-1.0: need a finite weight >= 0"),
    ({"step_size": 1.0}, r"step_size=1.0: need a PGD step in \(0, eps"),
    ({"rounds": 0}, r"rounds=0: need an integer >= 1"),
])
def test_tue_refuses_bad_arguments_before_any_compute(kwargs, match):
    x, y = _data()
    with pytest.raises(ValueError, match=match):
        TUE.craft_tue(_Encoder(), x, y, **kwargs)
