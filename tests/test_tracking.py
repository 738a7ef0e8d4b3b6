"""Per-sample losses after every epoch (``poisonrepro.tracking``): a fixed sample that leaves the
global generators alone, a bad sample size refused before training, and a tracked network that is
the same network as an untracked one."""
import numpy as np
import pytest
import torch

from poisonrepro import evaluation as EV
from poisonrepro import train as T
from poisonrepro import tracking


def test_the_tracked_sample_is_fixed_sorted_and_leaves_the_global_generators_alone():
    torch.manual_seed(5)
    np.random.seed(5)
    before = torch.rand(1), np.random.rand()
    torch.manual_seed(5)
    np.random.seed(5)
    first = tracking.tracked_indices(1000, 50)
    second = tracking.tracked_indices(1000, 50)
    assert (torch.rand(1), np.random.rand()) == before
    assert torch.equal(first, second) and len(first) == 50 and len(set(first.tolist())) == 50
    assert torch.equal(first, first.sort().values) and first.max() < 1000
    assert torch.equal(tracking.tracked_indices(30, 0), torch.arange(30))
    assert torch.equal(tracking.tracked_indices(30, 100), torch.arange(30))   # more than there are: all


@pytest.mark.parametrize("bad", [-1, 2.5, True, "all"])
def test_a_bad_sample_size_is_refused_before_any_training(bad):
    with pytest.raises(ValueError, match="track_sample"):
        tracking.LossTrackingLearner(arch="convnet_bn", track_sample=bad)


def test_at_tracked_indexes_a_per_sample_mask_by_the_tracked_samples():
    bad = np.array([True, False, True, False])
    assert at(bad, {"tracked": torch.tensor([0, 3])}) == [True, False]
    assert at(bad, {}) == [True, False, True, False]


def at(values, result):
    return tracking.at_tracked(result, values).tolist()


def test_tracking_records_each_epoch_of_the_sample_and_does_not_change_the_network():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(96) % 10
    recipe = T.VictimRecipe(epochs=2, batch_size=32)
    torch.manual_seed(1)  # the initial weights (the shared trial seeds them from its key)
    plain = EV.SupervisedLearner(arch="convnet_bn").train(x, y, recipe, seed=3)
    torch.manual_seed(1)
    model, diag = tracking.LossTrackingLearner(arch="convnet_bn", track_sample=40, track_fitted=True).train(
        x, y, recipe, seed=3)
    for a, b in zip(plain.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert diag["tracked"].shape == (40,) and diag["epoch_loss"].shape == (2, 40)
    assert diag["epoch_fitted"].dtype == torch.bool and diag["epoch_fitted"].shape == (2, 40)
    # the last row is the trained network's loss on those samples
    last, _ = T.per_sample_losses(model, x[diag["tracked"]], y[diag["tracked"]])
    assert torch.allclose(diag["epoch_loss"][-1], last)
