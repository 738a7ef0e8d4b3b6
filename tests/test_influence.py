import pytest
import torch
from scipy.stats import spearmanr

from poisonrepro.attacks.influence import (LogisticHead, influence_pert_loss, influence_up_loss, inverse_hvp,
                                           training_set_attack)


def _data(n=100, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = ((X @ w + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)) > 0).long()
    return X, y


def test_influence_predicts_leave_one_out_retraining():
    X, y = _data()
    xt, yt = torch.randn(1, X.shape[1], dtype=torch.float64), torch.tensor([1])
    head = LogisticHead.fit(X, y, 0.01)
    predicted = -influence_up_loss(head, X, y, xt, yt) / len(y)
    base = head.losses(xt, yt)[0]
    actual = []
    for i in range(len(y)):
        keep = torch.arange(len(y)) != i
        actual.append(float(LogisticHead.fit(X[keep], y[keep], 0.01).losses(xt, yt)[0] - base))
    assert spearmanr(predicted.numpy(), actual).statistic >= 0.9


def test_conjugate_gradients_agree_with_the_exact_solve():
    X, y = _data(d=20)
    head = LogisticHead.fit(X, y, 0.01)
    v = torch.randn(21, dtype=torch.float64)
    assert torch.allclose(inverse_hvp(head, X, v, "exact"), inverse_hvp(head, X, v, "cg"), atol=1e-8)
    with pytest.raises(ValueError, match="method='lissa'"):
        inverse_hvp(head, X, v, "lissa")


class _Tanh(torch.nn.Module):
    """A fixed differentiable 'extractor' for the tests."""
    def __init__(self, d_in, d_out):
        super().__init__()
        self.lin = torch.nn.Linear(d_in, d_out).double()

    def features(self, x):
        return torch.tanh(self.lin(x.flatten(1).double()))


def _extractor_task(seed, n):
    """A fixed extractor, n images, their features, median-split labels, a test image and the head."""
    torch.manual_seed(seed)
    ext = _Tanh(6, 5)
    imgs = torch.rand(n, 6, dtype=torch.float64)
    with torch.no_grad():
        feats = ext.features(imgs)
    y = (feats[:, 0] > feats[:, 0].median()).long()
    xt = torch.rand(1, 6, dtype=torch.float64)
    return ext, imgs, feats, y, xt, LogisticHead.fit(feats, y, 0.01)


def test_perturbation_influence_predicts_the_retrained_test_loss():
    ext, imgs, feats, y, xt, head = _extractor_task(1, 80)
    yt = torch.tensor([0])
    with torch.no_grad():
        ft = ext.features(xt)
    s_test = inverse_hvp(head, feats, head.grads(ft, yt)[0])
    i = 3
    ipert = influence_pert_loss(ext, head, imgs[i:i + 1], y[i:i + 1], s_test)[0]
    base = head.losses(ft, yt)[0]
    h = 1e-4
    for j in range(3):
        moved = imgs.clone()
        moved[i, j] += h
        with torch.no_grad():
            f2 = ext.features(moved)
        change = LogisticHead.fit(f2, y, 0.01).losses(ft, yt)[0] - base
        assert float(change) == pytest.approx(float(ipert[j]) * h / len(y), rel=0.05, abs=1e-9)


def test_training_set_attack_raises_the_test_loss_within_its_box():
    ext, imgs, feats, y, xt, head = _extractor_task(2, 60)
    with torch.no_grad():
        yt = head.predict(ext.features(xt))  # attack the model's own (correct) prediction
    before = head.losses(ext.features(xt).detach(), yt)[0]
    flipped, idx, x, new_head = training_set_attack(ext, head, imgs, y, feats, xt, yt, n_perturb=5, eps=0.1,
                                                    step=0.02, iters=3, weight_decay=0.01)
    after = new_head.losses(ext.features(xt).detach(), yt)[0]
    assert after > before
    assert (x - imgs[idx]).abs().max() <= 0.1 + 1e-12 and x.min() >= 0 and x.max() <= 1
