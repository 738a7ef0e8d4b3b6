"""Generative poisoning (07): the autoencoder attack and pGAN."""
import pytest
import torch

from poisonrepro.attacks.back_gradient import DTYPE, Learner, train_gd, validation_objective
from poisonrepro.attacks.generative import pretrain_autoencoder, train_generative_poisoner
from poisonrepro.attacks.pgan import PGAN, train_pgan
from poisonrepro.config import ConfigError, load_config


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centers = torch.tensor([[0.7, 0.5], [0.3, 0.5]])
    return (centers[y] + 0.05 * torch.randn(n, 2, generator=g)).clamp(0, 1), y


def test_generative_poisoner_raises_the_victims_validation_loss():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(200, 10, generator=g, dtype=DTYPE)
    y = (X[:, :3].sum(1) > 1.5).to(DTYPE)
    X_tr, y_tr, X_val, y_val, X_src = X[:60], y[:60], X[60:140], y[60:140], X[140:][y[140:] == 1]
    learner = Learner("logistic", 10, weight_decay=0.01)
    objective = validation_objective(learner, X_val, y_val)
    ae = pretrain_autoencoder(X[140:], code=6, steps=300, lr=1e-2, batch=32, seed=0)
    y_src = torch.ones(len(X_src), dtype=DTYPE)

    def loss_with(poisons):
        w = train_gd(learner, torch.cat([X_tr, poisons]), torch.cat([y_tr, y_src[:len(poisons)]]), steps=300, lr=0.5)
        return objective(w).item()
    with torch.no_grad():
        before = loss_with(ae(X_src[:12]))
    ae, values, _ = train_generative_poisoner(ae, learner, X_tr, y_tr, X_src, y_src, objective, steps=40, lr=1e-2,
                                              recon_weight=0.1, train_steps=300, train_lr=0.5, inner_steps=20,
                                              inner_lr=0.5, batch=12, seed=0)
    with torch.no_grad():
        after = loss_with(ae(X_src[:12]))
    assert after > before + 0.02
    assert values[-1] > values[0]


def _play(alpha, X, y, steps=400):
    torch.manual_seed(0)
    model = PGAN(2, z_dim=4, hidden=32)
    train_pgan(model, X[y == 1], X, y, 1, alpha=alpha, lam=0.5, steps=steps, batch=32, lr=2e-3, seed=0)
    with torch.no_grad():
        return model.sample(200, torch.Generator().manual_seed(1))


def test_pgan_alpha_trades_realism_for_effectiveness():
    X, y = _blobs(400, 0)
    realistic, effective = _play(1.0, X, y), _play(0.0, X, y)
    centroid = X[y == 1].mean(0)
    # alpha = 1: a plain GAN of class 1, its samples near that class; alpha = 0: pushed away, towards class 0
    assert (realistic - centroid).norm(dim=1).mean() < 0.15
    assert (effective - centroid).norm(dim=1).mean() > 2 * (realistic - centroid).norm(dim=1).mean()
    assert (effective[:, 0] - centroid[0]).mean() > 0.1  # class 0 lies at larger x


def test_pgan_rejects_alpha_outside_the_unit_interval():
    X, y = _blobs(20, 0)
    with pytest.raises(ValueError, match="alpha=1.5"):
        train_pgan(PGAN(2, 2, 4), X, X, y, 1, alpha=1.5, lam=0.5, steps=1, batch=4, lr=1e-3, seed=0)


@pytest.mark.parametrize("key,value,pattern", [
    ("gen_fraction", 1.0, r"gen_fraction=1.0: must lie in \[0, 1\)"),
    ("pgan_fraction", -0.2, r"pgan_fraction=-0.2"),
    ("pgan_alphas", (0.0, 0.5), "must include 1.0"),
    ("pgan_alphas", (0.5, 1.0, 1.2), r"pgan_alphas=1.2: must lie in \[0, 1\]"),
    ("pgan_other_class", 3, "must differ"),
    ("gen_fraction", 0.001, "rounds to zero poisons"),
])
def test_pgan_config_refuses_bad_input(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("pgan", "cpu", **{key: value})
