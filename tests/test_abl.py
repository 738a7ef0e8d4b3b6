"""Anti-Backdoor Learning (``defenses.abl``): bad settings refused before any training, and LGA turns
to ascent below gamma. (The planted-backdoor test comes with notebook 11: on small CIFAR-10 subsets
the fast victim does not learn BadNets within a few epochs, so it has no backdoor to remove yet.)"""
import pytest
import torch

from poisonrepro import train as T
from poisonrepro.defenses import abl


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, True])
def test_an_isolation_ratio_outside_0_1_is_refused(ratio):
    r = T.VictimRecipe(epochs=1)
    with pytest.raises(ValueError, match="isolation_ratio="):
        abl.ABLSchedule(r, r, r, isolation_ratio=ratio)


@pytest.mark.parametrize("gamma", [-0.5, float("nan"), float("inf")])
def test_a_bad_gamma_is_refused(gamma):
    with pytest.raises(ValueError, match="gamma="):
        abl.lga_loss(gamma)


def test_lga_descends_above_gamma_and_ascends_below():
    logits = torch.zeros(4, 3, requires_grad=True)
    labels = torch.zeros(4, dtype=torch.long)
    high = abl.lga_loss(0.5)(logits, labels)      # ce = ln 3 > 0.5: plain cross-entropy
    (g_high,) = torch.autograd.grad(high, logits)
    low = abl.lga_loss(2.0)(logits, labels)       # ce < 2: its negative
    (g_low,) = torch.autograd.grad(low, logits)
    torch.testing.assert_close(g_low, -g_high)
    assert float(high.detach()) == pytest.approx(float(torch.log(torch.tensor(3.0))))
