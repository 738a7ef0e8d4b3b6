"""Config of notebook 06, back-gradient poisoning (Munoz-Gonzalez et al., AISec 2017), with
label flipping and its defences (Paudice et al. 2018a, 2018b; Natarajan et al. 2013).

Settings from the authors' MATLAB repository,
github.com/lmunoz-gonzalez/Poisoning-Attacks-with-Back-gradient-Optimization: MNIST 1 vs 7, 10 splits of
100 training and 400 validation points, up to 20 poisons added greedily, each initialised
from a random validation point with its label flipped, normalised gradient ascent clipped to
[0, 1]. Learners: logistic regression (GD lr 0.5, 1500 iterations; attack step 1, at most 300
attack iterations, T = 100 back-gradient steps), ADALINE (lr 0.01, 2000 iterations; step 1,
100 iterations, T = 60), a 10-unit tanh MLP (lr 0.1, 400 epochs; step 0.2, 200 iterations,
T = 200). The repository gives a second number beside T for LR (0.1) and ADALINE (0.02); we read it
as the learning rate of the T inner steps (our reading). Spambase/Ransomware sizes, the
multiclass experiment and the defences' settings are not confirmed from the paper or its code: ours.

The Ransomware stand-in's features are binary, so its poisons stay binary: each attack iteration
flips ``binary_flips`` bits (one: the smallest binary move, L2 length 1, no shorter than the
continuous step); ``ransomware_standin_continuous`` is the same data with continuous poisons in
[0, 1]^d, a labeled variant (not a claim).

Per-learner tuples follow the order of ``LEARNERS`` (adaline, logistic, mlp).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import BaseConfig, ConfigError, param
from ..attacks.back_gradient import LEARNERS

DATASETS = ("spambase", "mnist_1v7", "ransomware_standin", "ransomware_standin_continuous")
MAIN_DATASETS = DATASETS[:3]


@dataclass(frozen=True)
class Config(BaseConfig):
    """Fields feed the stages of ``poisonrepro.papers.back_gradient.experiments``. Two groups feed
    several: the learners' settings (``learner``) and the data splits (``data_splits``). MG-5,
    MG-6/10 and MG-7/8 reuse MG-3's poisons, so MG-3's inputs feed them too."""
    UPSTREAM = {"bg_indiscriminate": ("learner", "data_splits"), "bg_transfer": ("bg_indiscriminate",),
                "bg_outlier": ("bg_indiscriminate",), "bg_flipping": ("bg_indiscriminate",),
                "bg_multiclass": ("learner",), "bg_toy": ("learner",)}

    datasets: tuple[str, ...] = param(choices=DATASETS, stage="bg_indiscriminate")
    learners: tuple[str, ...] = param(choices=LEARNERS, stage="bg_indiscriminate")
    n_train: int = param(min=10, max=2000, dry=60, stage="data_splits")
    n_val: int = param(min=10, max=2000, dry=20, stage="data_splits")
    n_test: int = param(min=10, max=5000, dry=40, stage=("data_splits", "bg_label_noise"))
    splits: int = param(min=1, max=100, loop=True, stage=("data_splits", "bg_label_noise"))
    poison_fractions: tuple[float, ...] = param(min=0, below=1, stage="bg_indiscriminate")  # poisons / clean training points
    per_round: int = param(min=1, max=100, stage="bg_indiscriminate")  # poisons optimised jointly per greedy round (paper: 1)
    attack_iters: tuple[int, ...] = param(min=1, max=1000, dry=(1, 1, 1), stage="learner")  # per learner
    attack_step: tuple[float, ...] = param(min=0, max=10, stage="learner")  # per learner, L2 length of a normalised step
    train_steps: tuple[int, ...] = param(min=1, max=100000, dry=(5, 5, 5), stage="learner")  # per learner, victim's full GD training
    train_lr: tuple[float, ...] = param(min=0, max=10, stage="learner")
    inner_steps: tuple[int, ...] = param(min=1, max=1000, dry=(2, 2, 2), stage="learner")  # per learner, T of Algorithm 2
    inner_lr: tuple[float, ...] = param(min=0, max=10, stage="learner")
    weight_decay: float = param(min=0, max=1, stage="learner")
    mlp_hidden: int = param(min=1, max=1000, dry=2, stage="learner")
    ransomware_features: int = param(min=10, max=5000, stage="data_splits")
    binary_flips: int = param(min=1, max=100, stage="data_splits")  # bits flipped per attack iteration on binary features
    # MG-4, multiclass MNIST logistic regression
    mc_n_train: int = param(min=20, max=5000, dry=100, stage="bg_multiclass")
    mc_n_val: int = param(min=20, max=5000, dry=30, stage="bg_multiclass")
    mc_n_test: int = param(min=20, max=10000, dry=50, stage="bg_multiclass")
    mc_fractions: tuple[float, ...] = param(min=0, below=1, stage="bg_multiclass")
    mc_per_round: int = param(min=1, max=500, stage="bg_multiclass")
    mc_attack_iters: int = param(min=1, max=1000, loop=True, stage="bg_multiclass")
    mc_splits: int = param(min=1, max=100, loop=True, stage="bg_multiclass")
    mc_source: int = param(min=0, max=9, stage="bg_multiclass")
    mc_target: int = param(min=0, max=9, stage="bg_multiclass")
    # MG-5 .. MG-10 and LF-1
    transfer_dataset: str = param(choices=DATASETS, stage="bg_transfer")
    defence_datasets: tuple[str, ...] = param(choices=DATASETS, stage="bg_outlier")
    trusted_per_class: int = param(min=2, max=2000, dry=10, stage="data_splits")
    od_quantile: float = param(min=0.5, max=1, stage=("bg_outlier", "bg_flipping"))
    constraint_radii: tuple[float, ...] = param(min=0, max=10, stage="bg_outlier")  # in detector thresholds
    flip_dataset: str = param(choices=DATASETS, stage="bg_flipping")
    ilf_candidates: int = param(min=1, max=2000, dry=10, stage="bg_flipping")
    ilf_warm_steps: int = param(min=1, max=10000, loop=True, stage="bg_flipping")
    knn_ks: tuple[int, ...] = param(min=1, max=500, stage="bg_flipping")
    knn_confidence: float = param(min=0, max=1, stage="bg_flipping")
    knn_k: int = param(min=1, max=500, stage=())  # the k of the MG-7 table and the claims (one of knn_ks)
    lf_fractions: tuple[float, ...] = param(min=0, below=1, stage="bg_label_noise")
    lf_n_train: int = param(min=20, max=5000, dry=50, stage="bg_label_noise")
    lf_source: int = param(min=0, max=9, stage="bg_label_noise")
    lf_target: int = param(min=0, max=9, stage="bg_label_noise")
    toy_per_class: int = param(min=3, max=500, dry=6, stage="bg_toy")
    toy_poisons: int = param(min=1, max=100, dry=2, stage="bg_toy")
    toy_grid: int = param(min=3, max=200, dry=4, stage="bg_toy")

    def counts(self, fractions=None, n=None) -> list[int]:
        """Numbers of poisons at each fraction of the clean training set."""
        n = n or self.n_train
        return [int(round(f * n)) for f in (fractions or self.poison_fractions)]

    def check(self):
        for name in ("attack_iters", "attack_step", "train_steps", "train_lr", "inner_steps", "inner_lr"):
            if len(getattr(self, name)) != len(LEARNERS):
                raise ConfigError(f"{name}={getattr(self, name)!r}: one value per learner "
                                  f"({', '.join(LEARNERS)})")
        for fractions, n, per_round, what in ((self.poison_fractions, self.n_train, self.per_round, "poison"),
                                              (self.mc_fractions, self.mc_n_train, self.mc_per_round, "mc")):
            counts = [int(round(f * n)) for f in fractions]
            if counts[0] != 0 or counts != sorted(counts) or len(set(counts)) != len(counts):
                raise ConfigError(f"{what} fractions {fractions}: must start at 0 and give increasing "
                                  f"numbers of poisons out of {n}, got {counts}")
            if any(c % per_round for c in counts):
                raise ConfigError(f"{what} fractions {fractions}: {counts} poisons are not multiples of "
                                  f"the round size {per_round}")
        if self.mc_source == self.mc_target or self.lf_source == self.lf_target:
            raise ConfigError("the error-specific source and target classes must differ")
        if self.transfer_dataset not in self.datasets or self.flip_dataset not in self.datasets \
                or not set(self.defence_datasets) <= set(self.datasets):
            raise ConfigError(f"transfer_dataset, flip_dataset and defence_datasets must be among "
                              f"datasets={self.datasets}")
        if "logistic" not in self.learners:
            raise ConfigError("learners must include 'logistic' (the defences are evaluated on it)")
        if max(self.knn_ks) >= self.n_train:
            raise ConfigError(f"knn_ks={self.knn_ks}: k must be below n_train={self.n_train}")
        if 1.0 not in self.constraint_radii:
            raise ConfigError(f"constraint_radii={self.constraint_radii} must include 1.0 (the detector's threshold)")
        if self.knn_k not in self.knn_ks:
            raise ConfigError(f"knn_k={self.knn_k} must be one of knn_ks={self.knn_ks}")
        if self.ilf_candidates > self.n_val:
            raise ConfigError(f"ilf_candidates={self.ilf_candidates} exceeds n_val={self.n_val}")


# per-learner settings, order (adaline, logistic, mlp); paper values from the authors' repository (docstring)
_PAPER_LEARNERS = dict(attack_iters=(100, 300, 200), attack_step=(1.0, 1.0, 0.2), train_steps=(2000, 1500, 400),
                       train_lr=(0.01, 0.5, 0.1), inner_steps=(60, 100, 200), inner_lr=(0.02, 0.1, 0.1))
_CPU_LEARNERS = dict(attack_iters=(15, 15, 15), attack_step=(0.5, 0.5, 0.2), train_steps=(1000, 1000, 400),
                     train_lr=(0.05, 0.5, 0.1), inner_steps=(20, 20, 20), inner_lr=(0.05, 0.5, 0.1))
_COMMON = dict(seed=0, datasets=DATASETS, learners=LEARNERS, weight_decay=0.001, mlp_hidden=10,
               ransomware_features=400, binary_flips=1, mc_source=8, mc_target=3, transfer_dataset="mnist_1v7",
               od_quantile=0.95, knn_confidence=0.5, knn_k=10, flip_dataset="spambase", lf_source=8, lf_target=3)

PROFILES = {
    "smoke": dict(_COMMON, **dict(_CPU_LEARNERS, attack_iters=(2, 2, 2), inner_steps=(3, 3, 3),
                                  train_steps=(50, 50, 50)),
                  n_train=40, n_val=40, n_test=100, splits=1, poison_fractions=(0.0, 0.1), per_round=4,
                  mc_n_train=40, mc_n_val=40, mc_n_test=100, mc_fractions=(0.0, 0.1), mc_per_round=4,
                  mc_attack_iters=2, mc_splits=1, defence_datasets=("spambase", "mnist_1v7"), trusted_per_class=10,
                  constraint_radii=(0.5, 1.0), ilf_candidates=10, ilf_warm_steps=5, knn_ks=(3, 10),
                  lf_fractions=(0.0, 0.2), lf_n_train=200, toy_per_class=10, toy_poisons=2, toy_grid=6),
    "cpu": dict(_COMMON, **_CPU_LEARNERS, n_train=100, n_val=400, n_test=1000, splits=6,
                poison_fractions=(0.0, 0.05, 0.1, 0.15), per_round=5,
                mc_n_train=300, mc_n_val=300, mc_n_test=2000, mc_fractions=(0.0, 0.05, 0.1), mc_per_round=15,
                mc_attack_iters=10, mc_splits=3, defence_datasets=("spambase", "mnist_1v7"), trusted_per_class=50,
                constraint_radii=(0.5, 0.75, 1.0), ilf_candidates=60, ilf_warm_steps=50, knn_ks=(3, 5, 10, 20),
                lf_fractions=(0.0, 0.1, 0.2, 0.3, 0.4), lf_n_train=1000, toy_per_class=30, toy_poisons=6,
                toy_grid=40),
    "paper": dict(_COMMON, **_PAPER_LEARNERS, n_train=100, n_val=400, n_test=2000, splits=10,
                  poison_fractions=(0.0, 0.05, 0.1, 0.15, 0.2), per_round=1,
                  mc_n_train=1000, mc_n_val=1000, mc_n_test=10000, mc_fractions=(0.0, 0.02, 0.04, 0.06),
                  mc_per_round=1, mc_attack_iters=100, mc_splits=10, defence_datasets=MAIN_DATASETS,
                  trusted_per_class=100,
                  constraint_radii=(0.25, 0.5, 0.75, 1.0, 1.5), ilf_candidates=400, ilf_warm_steps=200,
                  knn_ks=(1, 3, 5, 10, 20, 50), lf_fractions=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), lf_n_train=5000,
                  toy_per_class=50, toy_poisons=10, toy_grid=80,
                  _sources={
                      "n_train/n_val/splits": "MNIST 1 vs 7: 10 splits, 100 training, 400 validation (the authors' "
                                              "repository, lmunoz-gonzalez/Poisoning-Attacks-with-Back-gradient-"
                                              "Optimization)",
                      "poison_fractions/per_round": "up to 20 poisons (~16.7%), added one at a time (the authors' "
                                                    "repository)",
                      "learner tuples": "LR lr 0.5 x1500, step 1, <=300 iters, T=100; ADALINE lr 0.01 x2000, "
                                        "step 1, <=100, T=60; MLP-10 tanh lr 0.1 x400, step 0.2, 200, T=200 "
                                        "(the authors' repository)",
                      "inner_lr": "the number beside T in the authors' repository, read as the inner learning rate",
                      "mc_source/mc_target": "error-specific attack: 8 classified as 3 (lecture deck 'Adversarial "
                                             "Machine Learning', L. Munoz-Gonzalez, Imperial College London, 2018)",
                      "ransomware_features": "Ransomware: 400 features (lecture deck 'Adversarial Machine Learning', "
                                             "L. Munoz-Gonzalez); data unavailable, stand-in",
                      "knn_confidence": "confidence 0.5 (lecture deck 'Adversarial Machine Learning', "
                                        "L. Munoz-Gonzalez, sensitivity plot)",
                  }),
}
