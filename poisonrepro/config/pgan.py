"""Config of notebook 07, generative poisoning: the autoencoder-based attack of Yang et al. (2017;
GEN-1) and pGAN (Munoz-Gonzalez et al. 2019; PGAN-1).

No setting of either paper is confirmed beyond pGAN's game itself (a 3-player GAN whose alpha
trades detectability against effectiveness; pGAN has no public code and its details are
UNCONFIRMED): every size, architecture and schedule here is ours, and the `paper` profile only
scales them up. The digits follow the lecture deck "Data Poisoning: Attacks and Defenses"
(Xingjun Ma, Fudan University): GEN-1 starts from MNIST "5"s.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import BaseConfig, ConfigError, param


@dataclass(frozen=True)
class Config(BaseConfig):
    """Fields feed the two stages of ``poisonrepro.papers.pgan.experiments``: one GEN-1 trial
    (``gen_attack``) and one pGAN generator seed (``pgan_sweep``). The repeat counts feed
    neither: each repeat has its own key (its index), so more repeats reuse the ones made."""
    # GEN-1: victim = 10-class logistic regression trained by gradient descent
    gen_n_train: int = param(min=20, max=5000, dry=60, stage="gen_attack")
    gen_n_val: int = param(min=20, max=5000, dry=40, stage="gen_attack")
    gen_n_test: int = param(min=20, max=10000, dry=60, stage="gen_attack")
    gen_source: int = param(min=0, max=9, stage="gen_attack")
    gen_fraction: float = param(min=0, below=1, stage="gen_attack")  # poisons / clean training points
    gen_attack_iters: int = param(min=1, max=2000, loop=True, stage="gen_attack")
    gen_attack_step: float = param(min=0, max=10, stage="gen_attack")
    gen_train_steps: int = param(min=1, max=100000, dry=5, stage="gen_attack")
    gen_train_lr: float = param(min=0, max=10, stage="gen_attack")
    gen_inner_steps: int = param(min=1, max=1000, dry=2, stage="gen_attack")
    gen_weight_decay: float = param(min=0, max=1, stage="gen_attack")
    gen_trials: int = param(min=1, max=100, loop=True, stage=())  # repeats of the whole experiment, seeds seed, seed + 1, ...
    ae_code: int = param(min=2, max=512, dry=4, stage="gen_attack")
    ae_pretrain_steps: int = param(min=1, max=100000, loop=True, stage="gen_attack")
    ae_attack_steps: int = param(min=1, max=100000, loop=True, stage="gen_attack")
    ae_lr: float = param(min=0, max=1, stage="gen_attack")
    ae_recon_weight: float = param(min=0, max=100, stage="gen_attack")
    ae_batch: int = param(min=1, max=1000, dry=4, stage="gen_attack")
    # PGAN-1: binary MNIST, poisons labeled `pgan_poison_class`
    pgan_poison_class: int = param(min=0, max=9, stage="pgan_sweep")
    pgan_other_class: int = param(min=0, max=9, stage="pgan_sweep")
    pgan_n_train: int = param(min=20, max=10000, dry=60, stage="pgan_sweep")
    pgan_n_test: int = param(min=20, max=5000, dry=60, stage="pgan_sweep")
    pgan_fraction: float = param(min=0, below=1, stage="pgan_sweep")
    pgan_alphas: tuple[float, ...] = param(min=0, max=1, stage="pgan_sweep")
    pgan_lambda: float = param(min=0, max=1, stage="pgan_sweep")
    pgan_pretrain_steps: int = param(min=1, max=100000, loop=True, stage="pgan_sweep")
    pgan_steps: int = param(min=1, max=100000, loop=True, stage="pgan_sweep")
    pgan_batch: int = param(min=2, max=1000, dry=8, stage="pgan_sweep")
    pgan_hidden: int = param(min=4, max=2048, dry=8, stage="pgan_sweep")
    pgan_z_dim: int = param(min=1, max=512, dry=4, stage="pgan_sweep")
    pgan_lr: float = param(min=0, max=1, stage="pgan_sweep")
    pgan_seeds: int = param(min=1, max=100, loop=True, stage=())  # generators trained per alpha (seeds seed + 100 k)
    trusted_per_class: int = param(min=2, max=5000, dry=10, stage="pgan_sweep")
    od_quantile: float = param(min=0.5, max=1, stage="pgan_sweep")

    def check(self):
        if self.pgan_poison_class == self.pgan_other_class:
            raise ConfigError("pgan_poison_class and pgan_other_class must differ")
        if int(round(self.gen_fraction * self.gen_n_train)) < 1 or int(round(self.pgan_fraction * self.pgan_n_train)) < 1:
            raise ConfigError(f"gen_fraction={self.gen_fraction} of {self.gen_n_train} or pgan_fraction="
                              f"{self.pgan_fraction} of {self.pgan_n_train} rounds to zero poisons")
        if 1.0 not in self.pgan_alphas:
            raise ConfigError(f"pgan_alphas={self.pgan_alphas} must include 1.0 (the plain GAN, the reference)")
        if len({a for a in self.pgan_alphas if a > 0}) < 2:
            raise ConfigError(f"pgan_alphas={self.pgan_alphas} needs at least two distinct values above 0 "
                              "(the trend tests leave alpha = 0 out)")


_COMMON = dict(seed=0, gen_source=5, gen_fraction=0.1, gen_attack_step=0.5, gen_train_lr=0.5, gen_weight_decay=0.001,
               ae_lr=1e-3, ae_recon_weight=0.03, pgan_poison_class=3, pgan_other_class=5, pgan_fraction=0.1,
               pgan_lambda=0.5, pgan_lr=2e-4, od_quantile=0.95)

PROFILES = {
    "smoke": dict(_COMMON, gen_n_train=100, gen_n_val=100, gen_n_test=200, gen_attack_iters=2, gen_train_steps=50,
                  gen_inner_steps=3, ae_code=8, ae_pretrain_steps=20, ae_attack_steps=3, ae_batch=5, gen_trials=2,
                  pgan_n_train=200, pgan_n_test=200, pgan_alphas=(0.0, 0.5, 1.0), pgan_pretrain_steps=10,
                  pgan_steps=5, pgan_batch=16, pgan_hidden=32, pgan_z_dim=8, pgan_seeds=2, trusted_per_class=20),
    # gen_trials, pgan_seeds: as many repeats as the 15-minute cpu budget allows (issue 7: one run, or one
    # generator per alpha, moved a lot between machines); about 42 s per GEN-1 trial, ~130 s per pGAN seed (2 cores)
    # ae_recon_weight: with a unit-length ascent direction the optimum of -u.x + w ||x - x0||^2 lies at
    # ||x - x0|| = 1 / (2 w); 0.03 gives ~17, about as far as the direct method may move a poison (30 x 0.5)
    "cpu": dict(_COMMON, gen_n_train=300, gen_n_val=300, gen_n_test=2000, gen_attack_iters=30, gen_train_steps=1000,
                gen_inner_steps=20, ae_code=32, ae_pretrain_steps=1500, ae_attack_steps=150, ae_batch=10, gen_trials=5,
                pgan_n_train=600, pgan_n_test=1000, pgan_alphas=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                pgan_pretrain_steps=2000, pgan_steps=1500, pgan_batch=64, pgan_hidden=256, pgan_z_dim=32,
                pgan_seeds=4, trusted_per_class=100),
    "paper": dict(_COMMON, gen_n_train=1000, gen_n_val=1000, gen_n_test=10000, gen_attack_iters=200,
                  gen_train_steps=1500, gen_inner_steps=100, ae_code=32, ae_pretrain_steps=10000,
                  ae_attack_steps=1000, ae_batch=20, gen_trials=10, pgan_n_train=5000, pgan_n_test=1800,
                  pgan_alphas=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), pgan_pretrain_steps=20000,
                  pgan_steps=5000, pgan_batch=128, pgan_hidden=512, pgan_z_dim=64, pgan_seeds=10,
                  trusted_per_class=200,
                  _sources={
                      "gen_source": "GEN-1 panels start from MNIST '5' (lecture deck 'Data Poisoning: Attacks and "
                                    "Defenses', X. Ma, Fudan University)",
                      "pgan_alphas": "alpha in [0, 1] trades detectability against effectiveness (the same deck); "
                                     "sizes and schedules are ours (pGAN has no code; details UNCONFIRMED)",
                      "gen_trials": "ours: repeats that the claims' statistical tests need (issue 7)",
                      "pgan_seeds": "ours: generator seeds that the trend tests need (issue 7)",
                  }),
}
