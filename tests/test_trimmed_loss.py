"""Iterative trimmed loss minimisation (``defenses.trimmed_loss``): bad input refused before any
fit, the trimmed subset has the stated size and is deterministic, alpha = 1 is plain training,
and on systematic label noise (40% of one class relabelled) the trimming drops mostly bad samples,
their losses separate from the clean ones, and the model recovers test accuracy."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from poisonrepro.defenses import trimmed_loss as TL


@pytest.mark.parametrize("alpha", [0, -0.1, 1.5, float("nan"), True])
def test_alpha_outside_0_1_is_refused_before_any_fit(alpha):
    calls = []
    with pytest.raises(ValueError, match="alpha="):
        TL.trimmed_loss_minimization(10, alpha, 2, lambda s, i: calls.append(i), lambda s: np.zeros(10))
    assert not calls


def test_rounds_and_losses_are_checked():
    with pytest.raises(ValueError, match="rounds="):
        TL.trimmed_loss_minimization(10, 0.5, 0, lambda s, i: s, lambda s: np.zeros(10))
    with pytest.raises(ValueError, match="one loss per training sample"):
        TL.trimmed_loss_minimization(10, 0.5, 1, lambda s, i: s, lambda s: np.zeros(9))
    with pytest.raises(ValueError, match="NaN"):
        TL.lowest_loss_subset([0.1, float("nan")], 0.5)


def test_the_subset_keeps_the_lowest_losses_with_stable_ties():
    losses = np.array([3.0, 1.0, 1.0, 0.5, 9.0, 1.0])
    assert TL.lowest_loss_subset(losses, 0.5).tolist() == [1, 2, 3]   # 0.5, then the first two 1.0s
    assert TL.lowest_loss_subset(losses, 0.01).tolist() == [3]         # at least one sample
    assert TL.lowest_loss_subset(losses, 1.0).tolist() == list(range(6))


def _systematic_noise(seed=0, n=600, share=0.4):
    rng = np.random.default_rng(seed)

    def draw(m):
        y = rng.integers(0, 2, m)
        return rng.normal(0, 1, (m, 2)) + np.where(y[:, None] == 1, 1.5, -1.5) * np.array([1, 0.3]), y
    x, y = draw(n)
    bad = (y == 1) & (rng.random(n) < share)   # a share of class 1 relabelled as class 0
    return x, np.where(bad, 0, y), bad, *draw(4000)


def test_trimming_systematic_label_noise_drops_bad_samples_and_recovers_accuracy():
    x, noisy, bad, xt, yt = _systematic_noise()
    n = len(x)

    def update(state, idx):
        return LogisticRegression().fit(x[idx], noisy[idx])

    def losses(model):
        return -np.log(np.clip(model.predict_proba(x)[np.arange(n), noisy], 1e-12, 1))

    plain = update(None, np.arange(n)).score(xt, yt)
    rounds = []
    res = TL.trimmed_loss_minimization(n, 1 - bad.mean(), 5, update, losses, on_round=lambda t, r: rounds.append(t))
    assert rounds == [0, 1, 2, 3, 4] and len(res.subsets) == 6 and len(res.losses) == 5
    assert all(len(s) == int(np.floor((1 - bad.mean()) * n)) for s in res.subsets[1:])
    assert bad[res.subsets[-1]].mean() < bad.mean() - 0.05          # the kept set is cleaner
    assert roc_auc_score(bad, res.losses[0]) > 0.7                 # bad samples have higher loss
    assert res.state.score(xt, yt) >= plain + 0.03                 # and the trimmed model recovers
    again = TL.trimmed_loss_minimization(n, 1 - bad.mean(), 5, update, losses)
    assert all((a == b).all() for a, b in zip(again.subsets, res.subsets))
    everything = TL.trimmed_loss_minimization(n, 1.0, 2, update, losses)
    assert everything.state.score(xt, yt) == plain                 # alpha = 1: plain training


def test_itlm_is_registered_with_its_barreno_cells():
    from poisonrepro import registry
    method = registry.get("trimmed_loss")
    assert method.notebook == "09_trimmed_loss" and ("causative", "availability", "indiscriminate") in method.defends
