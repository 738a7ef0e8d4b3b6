"""Config of notebook 14, Transferable Unlearnable Examples (J. Ren, H. Xu, Y. Wan, X. Ma, L. Sun,
J. Tang, "Transferable Unlearnable Examples", ICLR 2023; the authors' code renjie3/TUE).

Every protection is crafted once on CIFAR-10's first ``train_per_class`` training images of each
class and scored by victims trained from scratch on the protected set: supervised networks
(``model``) and contrastive learners (``ssl_learners``: SimCLR, MoCo v2, SimSiam, each followed by a
linear probe trained on the protected images' features) with the encoder ``encoder``.

``paper`` gives the published settings (sources in ``_sources``); ``cpu`` the reduced-scale
reproduction on 2 cores; ``smoke`` the plumbing check (its numbers mean nothing).

**The cpu profile's time, estimated before the run (issue 25) from speeds measured on this host
(AMD EPYC, 2 cores; every stage at the cpu settings, with a scratch artifact cache):**

- crafting, measured: the clean surrogate 20 s, EMN 102 s, SN 1 s, UCL 147 s, TUE 56 s, EMaxN 12 s,
  TensorClog 19 s, Alignment 263 s at 20 steps (so 10 steps here, ~130 s), the DeepConfuse stand-in
  89 s, the NTGA stand-in 88 s: ~660 s;
- the separability test (TUE-LS), measured: the clean images 50 s (linear) and 65 s (two-layer),
  EMN 6 s and 70 s, EMaxN 8 s and 22 s, the DeepConfuse stand-in 60 s (linear), the other sets
  4-16 s (linear); a set that is not separable takes the fit's every iteration: ~450 s in all, the
  two-layer network for the deck's five sets only;
- supervised victims (10 epochs, ~25 s each): 3 clean seeds, 9 protections, 6 swaps, and 4 on the
  MNIST-sized SVHN stand-in (~12 s): ~500 s;
- SimCLR victims: ~6 s an epoch on 10,000 images with the batched views under bf16 autocast (61 s
  for 10 epochs, probe included; 103 s in fp32, 190 s with torchvision's per-image views), so 15
  epochs ~100 s each: clean, EMN and TUE on 3 seeds, SN and UCL on one, 11 in all, ~1,100 s; the
  random-feature probes on 3 seeds: ~15 s.

After the first cpu run (2,357 s; TUE with 10 noise steps had no effect), TUE's noise steps went to the
script's 800 (``tue_noise_steps``): a noise step computes the CSD of a batch's perturbations and no
network, 0.4 s a pass here (measured: 40 passes over 10,000 images in 16 s), so about 5 more minutes; to stay
within the 45 minutes, Alignment runs 5 steps (was 10, ~65 s less) and the DeepConfuse stand-in 5 rounds (was
10, ~45 s less). Estimate: 2,357 + 320 - 110 = ~2,570 s.

About 2,800 s with 15 SimCLR epochs: over the 45 minutes, so SimCLR trains 12 (~80 s each, ~880 s),
which brings the estimate to about 2,550 s. Measured on clean data before the run
(one seed, 2,000 test images): the random-feature probe 35.5%, SimCLR 41-42% after 10 epochs (lr
0.06 or 0.3 alike), 46.5% after 30; 12 epochs is what the time allows.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from . import BaseConfig, ConfigError, param

#: the protections (each a module of ``poisonrepro.attacks``): Ren et al.'s EMN, SN, UCL and TUE,
#: and the baselines of their separability tables
METHODS = ("emn", "sn", "ucl", "tue", "emaxn", "tensorclog", "alignment", "deepconfuse", "ntga")
REQUIRED = ("emn", "sn", "tue")  # the headline claims' protections
SSL_LEARNERS = ("simclr", "moco_v2", "simsiam")
SWAPS = ("intra", "inter")  # Table 2 and Table 5's correspondences besides the original
TRANSFER_TARGETS = ("svhn_small",)  # Table 6 (SVHN and CIFAR-100: not on this machine, no stand-in)
SEPARABILITY_MODELS = ("linear", "two_layer")
ARCHS = ("convnet_bn", "resnet18_standin", "resnet18")
MIN_VICTIM_SEEDS = {"smoke": 1, "cpu": 3, "paper": 3}

SLOW_DRY_RUN = True  # the paper profile's dry run builds and trains ResNet-18 on a CPU


@dataclass(frozen=True)
class Config(BaseConfig):
    """The protections are crafted on the first ``train_per_class`` CIFAR-10 training images of
    each class (the alignment and NTGA stand-ins use the next ``val_per_class`` as their validation
    data); victims are trained on the protected set and scored on the clean test set."""
    UPSTREAM = {"protections": ("surrogate",), "separability": ("protections",), "victims": ("protections",)}
    DATA = ("surrogate", "protections", "separability", "victims")

    model: str = param(choices=ARCHS, stage=("surrogate", "protections", "victims"))  # supervised victims and surrogates
    encoder: str = param(choices=ARCHS, stage=("protections", "victims"))  # the contrastive learners' and crafters'
    recipe: str = param(choices=("fast", "tue"), stage=("surrogate", "victims"))  # experiments.RECIPES
    train_per_class: int = param(min=1, max=4900, dry=20, stage=DATA)
    val_per_class: int = param(min=1, max=100, dry=2, stage="protections")
    test_per_class: int = param(min=1, max=1000, dry=5, stage="victims")
    epochs: float = param(above=0, loop=True, stage="victims")  # supervised victims
    surrogate_epochs: float = param(above=0, loop=True, stage="surrogate")
    ssl_learners: tuple[str, ...] = param(choices=SSL_LEARNERS, stage="victims")
    ssl_epochs: float = param(above=0, loop=True, stage="victims")
    methods: tuple[str, ...] = param(choices=METHODS, stage="protections")
    eps: float = param(above=0, max=1, epsilon=True, stage="protections")
    step_size: float = param(above=0, max=1, epsilon=True, stage="protections")  # every PGD of 0.8/255
    craft_batch: int = param(min=2, max=4096, stage="protections")
    # EMN (Huang et al. 2021)
    noise_steps: int = param(min=1, loop=True, stage="protections")
    train_steps: int = param(min=1, stage="protections")
    max_rounds: int = param(min=1, loop=True, stage="protections")
    stop_error: float = param(min=0, below=1, stage="protections")
    # EMaxN (Fowl et al. 2021b), TensorClog, Alignment, DeepConfuse and NTGA (stand-ins where labelled)
    emax_steps: int = param(min=1, loop=True, stage="protections")
    clog_steps: int = param(min=1, loop=True, stage="protections")
    align_steps: int = param(min=1, loop=True, stage="protections")
    confuse_rounds: int = param(min=1, loop=True, stage="protections")
    confuse_steps: int = param(min=1, loop=True, stage="protections")
    ntga_steps: int = param(min=1, loop=True, stage="protections")
    ntga_block: int = param(min=2, max=4096, stage="protections")
    # UCL and TUE: the contrastive min-min (S1 train steps of the encoder, S2 noise passes)
    cl_rounds: int = param(min=1, loop=True, stage="protections")
    cl_train_steps: int = param(min=1, loop=True, stage="protections")
    cl_noise_steps: int = param(min=1, loop=True, stage="protections")
    # TUE's noise passes per round: with tue_ssl_weight 0 (the authors' SimCLR setting) a noise step
    # computes the CSD of the batch's perturbations only, no network, so the script's 800 cost seconds
    tue_noise_steps: int = param(min=1, loop=True, stage="protections")
    tue_ssl_weight: float = param(min=0, max=100, stage="protections")
    tue_csd_weight: float = param(min=0, max=100, stage="protections")
    # the report's grids (each a victim of stage "victims"; the fields only pick which run)
    swap_methods: tuple[str, ...] = param(choices=METHODS, stage=())  # TUE-T2, TUE-T5
    transfer_methods: tuple[str, ...] = param(choices=METHODS, stage=())  # TUE-T6
    transfer_per_class: int = param(min=1, max=5000, dry=5, stage="victims")
    separability_models: tuple[str, ...] = param(choices=SEPARABILITY_MODELS, stage="separability")
    separability_steps: int = param(min=1, max=1000, loop=True, stage="separability")
    victim_seeds: int = param(min=1, max=100, dry=1, stage=())  # headline arms: the claims' unit
    accuracy_floor: float = param(min=0, max=1, stage=())  # precondition: clean supervised victims above it
    ssl_margin: float = param(min=0, max=1, stage=())  # precondition: SimCLR's probe above random features'
    separable: float = param(above=0, max=1, stage=())  # claim: separable at this training accuracy
    drop_margin: float = param(above=0, max=1, stage=())  # claim: TUE lowers the probe by at least this, EMN by less

    def check(self):
        missing = [m for m in REQUIRED if m not in self.methods]
        if missing:
            raise ConfigError(f"methods={self.methods}: the headline claims need {', '.join(missing)}; "
                              f"allowed: {', '.join(METHODS)}")
        if "simclr" not in self.ssl_learners:
            raise ConfigError(f"ssl_learners={self.ssl_learners}: the headline tests SimCLR; name 'simclr' "
                              f"(allowed: {', '.join(SSL_LEARNERS)})")
        for name in ("methods", "ssl_learners", "swap_methods", "transfer_methods", "separability_models"):
            value = getattr(self, name)
            if len(set(value)) != len(value):
                raise ConfigError(f"{name}={value}: each value once")
        for name in ("swap_methods", "transfer_methods"):
            extra = sorted(set(getattr(self, name)) - set(self.methods))
            if extra:
                raise ConfigError(f"{name}={getattr(self, name)}: {', '.join(extra)} not among methods={self.methods}")
        if "linear" not in self.separability_models:
            raise ConfigError(f"separability_models={self.separability_models}: the claim uses 'linear'")
        if self.step_size > self.eps:
            raise ConfigError(f"step_size={self.step_size:.5g}: a PGD step must not exceed the budget eps={self.eps:.5g}")
        if self.tue_ssl_weight == 0 and self.tue_csd_weight == 0:
            raise ConfigError("tue_ssl_weight=0 and tue_csd_weight=0: TUE's noise step would have no objective")
        if self.victim_seeds < MIN_VICTIM_SEEDS[self.profile] and not self._dry():
            raise ConfigError(f"victim_seeds={self.victim_seeds}: the claims are tested over victim trainings, "
                              f"so the {self.profile} profile needs at least {MIN_VICTIM_SEEDS[self.profile]}")

    def _dry(self) -> bool:
        """A dry run (``config.dry_run``: every size at its dry value), which runs one seed by design."""
        sized = [f for f in fields(self) if f.metadata.get("dry") is not None]
        return all(getattr(self, f.name) == f.metadata["dry"] for f in sized)


_COMMON = dict(seed=0, methods=METHODS, eps=8 / 255, step_size=0.8 / 255, train_steps=10, stop_error=0.01,
               tue_ssl_weight=0.0, tue_csd_weight=0.1, swap_methods=("emn", "sn", "tue"),
               transfer_methods=("emn", "sn", "tue"), separability_models=("linear", "two_layer"),
               separability_steps=50, accuracy_floor=0.6, ssl_margin=0.05, separable=0.95, drop_margin=0.1)

PROFILES = {
    # the plumbing check runs cpu's arms and grids (one seed each), so that it regenerates cpu's tables and claims
    "smoke": dict(_COMMON, model="convnet_bn", encoder="convnet_bn", recipe="fast", train_per_class=30,
                  val_per_class=5, test_per_class=10, epochs=1, surrogate_epochs=1, ssl_learners=("simclr",),
                  ssl_epochs=1, craft_batch=128, noise_steps=2, max_rounds=1, emax_steps=2, clog_steps=2,
                  align_steps=2, confuse_rounds=1, confuse_steps=2, ntga_steps=2, ntga_block=64, cl_rounds=1,
                  cl_train_steps=1, cl_noise_steps=1, tue_noise_steps=1, transfer_per_class=20, separability_steps=5,
                  victim_seeds=1),
    # sized before the run (the module docstring): 10,000 images, 10 supervised and 12 SimCLR epochs;
    # 3 seeds for the headline arms (the Power section), one for the descriptive grids
    "cpu": dict(_COMMON, model="convnet_bn", encoder="convnet_bn", recipe="fast", train_per_class=1000,
                val_per_class=50, test_per_class=1000, epochs=10, surrogate_epochs=10, ssl_learners=("simclr",),
                ssl_epochs=12, craft_batch=512, noise_steps=10, max_rounds=3, emax_steps=5, clog_steps=5,
                align_steps=5, confuse_rounds=5, confuse_steps=40, ntga_steps=5, ntga_block=512, cl_rounds=5,
                # tue_noise_steps: 5 rounds x 160 = the script's 800 noise steps; changed after the first cpu run, where
                # 2 a round (10 in all, as UCL's) left TUE without effect (the notebook says so)
                cl_train_steps=20, cl_noise_steps=2, tue_noise_steps=160, transfer_per_class=500,
                victim_seeds=3),
    "paper": dict(_COMMON, model="resnet18", encoder="resnet18", recipe="tue", train_per_class=4900,
                  val_per_class=100, test_per_class=1000, epochs=200, surrogate_epochs=40,
                  ssl_learners=SSL_LEARNERS, ssl_epochs=1000, craft_batch=512, noise_steps=20, max_rounds=50,
                  emax_steps=250, clog_steps=250, align_steps=250, confuse_rounds=50, confuse_steps=100,
                  ntga_steps=10, ntga_block=512, cl_rounds=40, cl_train_steps=20, cl_noise_steps=20, tue_noise_steps=20,
                  transfer_per_class=5000, victim_seeds=3,
                  _sources={
                      "model/recipe/epochs": "the notes on Ren et al. 2023: supervised evaluation ResNet-18 200 "
                                             "epochs (the authors' supervised_test.py; its optimiser UNCONFIRMED: "
                                             "SGD 0.1, the project's schedule)",
                      "encoder": "Ren et al. 2023: ResNet-18 backbones for SimCLR, MoCo and SimSiam (demo.sh)",
                      "train_per_class/val_per_class": "CIFAR-10's 50,000 training images in the paper; here 4,900 "
                                                       "per class, the last 100 kept as the validation data of "
                                                       "Alignment and NTGA (their sizes UNCONFIRMED)",
                      "ssl_learners/ssl_epochs": "TUE-TT: SimCLR, MoCo, SimSiam; the evaluation's pre-training "
                                                 "epochs UNCONFIRMED (1,000, the usual CIFAR-10 length)",
                      "eps/step_size": "demo.sh: --epsilon 8 --step_size 0.8 (of 255)",
                      "tue_noise_steps": "demo.sh for SimCLR: --num_steps 20 per epoch, 40 epochs (800 noise steps)",
                      "cl_rounds/cl_train_steps/cl_noise_steps": "demo.sh for SimCLR: --epochs 40 --train_step 20 "
                                                                 "--num_steps 20",
                      "tue_ssl_weight/tue_csd_weight": "demo.sh for SimCLR: --ssl_weight 0 "
                                                       "--linear_noise_csd_weight 0.1 (MoCo: 1 and 1)",
                      "noise_steps/train_steps/max_rounds/stop_error": "EMN as Huang et al. 2021: 20 steps of "
                                                                       "0.8/255, 10 surrogate batches, stop below "
                                                                       "1% error",
                      "emax_steps": "EMaxN as Fowl et al. 2021b: 250 PGD steps (their step eps/20 is 0.4/255; here "
                                    "0.8/255, UNCONFIRMED)",
                      "clog_steps/align_steps": "TensorClog and Alignment as reimplemented by Fowl et al. 2021 "
                                                "(250 steps, UNCONFIRMED)",
                      "confuse_rounds/confuse_steps": "DeepConfuse (Feng et al. 2019) STAND-IN sizes (UNCONFIRMED)",
                      "ntga_steps/ntga_block": "NTGA (Yuan and Wu 2021): 10 steps, t = 64; block size UNCONFIRMED; "
                                               "an empirical-NTK STAND-IN",
                      "swap_methods": "Table 2 (EMN, SN) and Table 5 (with TUE): original, intra-, inter-class",
                      "transfer_methods/transfer_per_class": "Table 6: CIFAR-10 perturbations on SVHN-small (5,000 "
                                                             "per class, UNCONFIRMED); STAND-IN: MNIST as SVHN",
                      "separability_models/separability_steps": "the separability table (Yu et al. 2022's test): a "
                                                                "linear model and a two-layer network, 50 L-BFGS "
                                                                "steps",
                      "victim_seeds": "not stated; 3 (the claims' unit: a victim training)",
                      "accuracy_floor": "the project's floor for supervised victims (the paper's clean ResNet-18: "
                                        "93.79%)",
                      "ssl_margin": "the project's: a contrastive learner must beat the random-feature probe",
                      "separable": "the issue: 'linearly separable (>= 95%)'",
                      "drop_margin": "TUE-TT: SimCLR's probe 90.04% clean, 52.38% with TUE, 89.79% with EMN; "
                                     "the claim asks for 10 points",
                  }),
}
