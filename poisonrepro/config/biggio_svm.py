"""Config of notebook 05, poisoning attacks against SVMs (Biggio, Nelson, Laskov, ICML 2012).

The paper's MNIST protocol (100 training and 500 validation digits per pair, the test set for
reporting, linear kernel, C = 1) is attributed to the paper (Sec. 5.2) but UNCONFIRMED, not
checked against its text: it is used as a setting, never as a paper value. The 2-D example
(Fig. 1: two Gaussians, linear and RBF kernels with gamma 0.5, C = 1) is the paper's Fig. 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import BaseConfig, ConfigError, param

PAIRS = ("7v1", "9v8", "4v0")
SINGLE, MULTI, TOY = "biggio_svm/single_point", "biggio_svm/multi_point", "biggio_svm/toy_surface"  # the trial stages


@dataclass(frozen=True)
class Config(BaseConfig):
    """Fields feed the three trial stages of ``poisonrepro.papers.biggio_svm.experiments``; each
    trial is keyed by its spec (built from these fields) and the experiments' code hash."""
    pairs: tuple[str, ...] = param(choices=PAIRS, stage=(SINGLE, MULTI))
    kernels: tuple[str, ...] = param(choices=("linear", "rbf"), stage=(SINGLE, TOY))
    n_train: int = param(min=4, max=2000, dry=20, stage=(SINGLE, MULTI))
    n_val: int = param(min=4, max=2000, dry=20, stage=(SINGLE, MULTI))
    n_test: int = param(min=10, max=2500, dry=50, stage=(SINGLE, MULTI))  # per pair, from the MNIST test set
    splits: int = param(min=1, max=100, loop=True, stage=SINGLE)
    C: float = param(above=0, below=1e6, stage=(SINGLE, MULTI, TOY))  # scikit-learn's SVC needs C > 0
    rbf_gamma: float = param(min=0, stage=(SINGLE, MULTI))
    step: float = param(min=0, stage=(SINGLE, MULTI))
    max_iter: int = param(min=1, loop=True, stage=(SINGLE, TOY))
    patience: int = param(min=1, stage=(SINGLE, MULTI, TOY))
    attack_fractions: tuple[float, ...] = param(min=0, below=1, stage=MULTI)
    multi_kernel: str = param(choices=("linear", "rbf"), stage=MULTI)
    multi_splits: int = param(min=1, max=100, loop=True, stage=MULTI)
    multi_max_iter: int = param(min=1, loop=True, stage=MULTI)
    toy_per_class: int = param(min=2, max=500, dry=5, stage=TOY)
    toy_gamma: float = param(min=0, stage=TOY)
    toy_step: float = param(min=0, stage=TOY)
    toy_grid: int = param(min=3, max=200, dry=4, stage=TOY)

    def check(self):
        if max(self.attack_fractions) * self.n_train < 1 and len(self.attack_fractions) > 1:
            raise ConfigError(f"attack_fractions={self.attack_fractions}: with n_train={self.n_train} "
                              "every fraction rounds to zero attack points")


_COMMON = dict(seed=0, C=1.0, rbf_gamma=0.01, patience=10, toy_gamma=0.5, toy_step=0.1)

PROFILES = {
    "smoke": dict(_COMMON, pairs=("7v1", "9v8", "4v0"), kernels=("linear", "rbf"), n_train=40, n_val=60, n_test=200,
                  splits=1, step=0.5, max_iter=5, attack_fractions=(0.0, 0.05), multi_kernel="linear", multi_splits=1,
                  multi_max_iter=3,
                  toy_per_class=10, toy_grid=8),
    "cpu": dict(_COMMON, pairs=("7v1", "9v8", "4v0"), kernels=("linear", "rbf"), n_train=100, n_val=500,
                n_test=2000, splits=5, step=0.5, max_iter=200, attack_fractions=(0.0, 0.01, 0.02, 0.05, 0.1),
                multi_kernel="linear", multi_splits=3, multi_max_iter=30, toy_per_class=25, toy_grid=40),
    "paper": dict(_COMMON, pairs=("7v1", "9v8", "4v0"), kernels=("linear", "rbf"), n_train=100, n_val=500,
                  n_test=2000, splits=10, step=0.5, max_iter=500, attack_fractions=(0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2),
                  multi_kernel="linear", multi_splits=10, multi_max_iter=200, toy_per_class=25, toy_grid=60,
                  _sources={
                      "pairs": "Sec. 5.2: digit pairs 7 vs 1, 9 vs 8, 4 vs 0 (not checked against the paper's text)",
                      "n_train/n_val": "100 training, 500 validation digits (Sec. 5.2, UNCONFIRMED: not checked "
                                       "against the paper's text)",
                      "C": "C = 1 (Fig. 1)",
                      "multi_kernel": "the multi-point experiment on the linear kernel (the paper; not checked against "
                                      "its text)",
                      "toy_gamma": "Fig. 1: RBF gamma 0.5 on 2-D Gaussians",
                  }),
}
