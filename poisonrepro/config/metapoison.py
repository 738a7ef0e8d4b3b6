"""Config of notebook 03, MetaPoison (Huang et al., NeurIPS 2020), MP-1.

``paper`` gives the published settings (sources in ``_sources``); ``cpu`` the reduced-scale
reproduction on 2 cores; ``smoke`` the plumbing check.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import EVERY_STAGE, BaseConfig, ConfigError, param
from ..data import CIFAR10_CLASSES

C = CIFAR10_CLASSES


@dataclass(frozen=True)
class Config(BaseConfig):
    """Fields feed the stages of ``poisonrepro.papers.metapoison.experiments``: the staggered
    surrogate ensemble (from scratch), the poisons crafted on it for every target and budget, the
    victims trained from scratch on them (trials), and the fine-tuning comparison with Poison
    Frogs (a pretrained network, poisons of both attacks, fine-tuned victims)."""
    UPSTREAM = {"craft": ("ensemble",), "victims": ("craft",), "finetune": ("pretrained",)}

    target_class: str = param(choices=C, stage=EVERY_STAGE)
    poison_class: str = param(choices=C, stage=EVERY_STAGE)  # the poisons' class and the adversarial class
    train_per_class: int = param(min=13, max=5000, dry=13, stage=EVERY_STAGE)  # >= one batch of 125
    budgets: tuple[float, ...] = param(min=1e-5, below=1, loop=True, stage=())  # each budget keys its own stage
    n_targets: int = param(min=1, max=1000, dry=1, stage=EVERY_STAGE)
    eps: float = param(min=1 / 255, max=1, epsilon=True, stage=("craft", "finetune"))
    color_eps: float = param(min=0, below=1, stage=("craft", "finetune"))  # per YUV channel; 0: no colour part
    members: int = param(min=1, max=100, stage=("ensemble", "finetune"))  # M staggered surrogates
    unroll_steps: int = param(min=1, max=20, loop=True, stage=("craft", "finetune"))  # K
    craft_steps: int = param(min=1, loop=True, stage=("craft", "finetune"))
    advance_steps: int = param(min=0, stage=("craft", "finetune"))  # SGD steps per crafting step; 0: one epoch (the code)
    surrogate_epochs: int = param(min=1, max=1000, loop=True, stage="ensemble")  # T: the surrogates' life (the code: M)
    epochs: int = param(min=1, max=1000, loop=True, stage=("victims", "pretrained"))  # the victims' training
    warmup_epochs: int = param(min=0, max=100, stage=("ensemble", "victims", "pretrained"))
    victim_seeds: int = param(min=1, max=100, dry=1, stage="victims")
    finetune_targets: int = param(min=0, max=1000, dry=1, stage="finetune")  # 0: no fine-tuning comparison
    finetune_budget: float = param(min=1e-5, below=1, stage="finetune")
    finetune_epochs: int = param(min=1, max=1000, loop=True, stage="finetune")
    finetune_lr: float = param(min=1e-6, max=1, stage="finetune")
    pf_iters: int = param(min=1, loop=True, stage="finetune")
    pf_opacity: float = param(min=0, max=1, stage="finetune")
    test_images: int = param(min=1, max=10_000, dry=50, stage=("victims", "pretrained", "finetune"))
    accuracy_floor: float = param(min=0, max=1, stage=())  # precondition: clean victims' test accuracy above it
    cost_per_class: int = param(min=13, max=5000, dry=13, stage=())  # images per class that time the floor's cost

    def poisons_at(self, budget: float) -> int:
        """The number of poisons of a budget (a fraction of the training set), at least one."""
        return max(1, round(budget * 10 * self.train_per_class))

    def check(self):
        if self.target_class == self.poison_class:
            raise ConfigError(f"target_class and poison_class must differ (both {self.target_class!r}): a clean-label "
                              "attack poisons another class than the target's")
        for b in self.budgets + (self.finetune_budget,):
            if self.poisons_at(b) > self.train_per_class:
                raise ConfigError(f"budget {b!r}: {self.poisons_at(b)} poisons, but the poison class has only "
                                  f"{self.train_per_class} training images")
        if list(self.budgets) != sorted(set(self.budgets)):
            raise ConfigError(f"budgets={self.budgets!r}: distinct and increasing")


_COMMON = dict(seed=0, target_class="bird", poison_class="dog", eps=8 / 255, color_eps=0.04, unroll_steps=2,
               pf_opacity=0.3, accuracy_floor=0.8,
               cost_per_class=5000)

PROFILES = {
    "smoke": dict(_COMMON, train_per_class=20, budgets=(0.001, 0.005, 0.01), n_targets=1, members=2, craft_steps=2,
                  advance_steps=2, surrogate_epochs=2, epochs=2, warmup_epochs=1, victim_seeds=1,
                  finetune_targets=1, finetune_budget=0.05, finetune_epochs=1, finetune_lr=0.01, pf_iters=3,
                  test_images=100, cost_per_class=20),
    # sized for 25 minutes on 2 cores from timings alone, before any attack ran (README, "03 at
    # cpu"): a crafting step on 4 surrogates took 5.3 s and a victim of 12 epochs 21 s (43 minutes
    # in all), so 2 surrogates, 12 steps, victims of 8 epochs, a shorter fine-tuning comparison
    "cpu": dict(_COMMON, train_per_class=200, budgets=(0.001, 0.005, 0.01), n_targets=4, members=2, craft_steps=12,
                advance_steps=4, surrogate_epochs=8, epochs=8, warmup_epochs=2, victim_seeds=3,
                finetune_targets=3, finetune_budget=0.01, finetune_epochs=2, finetune_lr=0.01, pf_iters=100,
                test_images=1000),
    "paper": dict(_COMMON, train_per_class=5000, budgets=(0.001, 0.005, 0.01), n_targets=10, members=24,
                  craft_steps=60, advance_steps=0, surrogate_epochs=24, epochs=200, warmup_epochs=5,
                  victim_seeds=8, finetune_targets=10, finetune_budget=0.0014, finetune_epochs=10, finetune_lr=0.01,
                  pf_iters=1000, test_images=10_000,
                  _sources={
                      "target_class/poison_class": "metapoison README and MP-1: dog poisons, bird target (dog-poisoned-"
                                                  "as-bird); the adversarial class is the poison class (ytargetadv -1)",
                      "train_per_class/budgets": "Fig. 4: all of CIFAR-10; 0.1% to 1% of the training set poisoned",
                      "n_targets/victim_seeds": "Fig. 4: 8 victims per poison set; the number of targets is "
                                                "UNCONFIRMED (10 here)",
                      "eps/color_eps": "parse.py: eps 8 (0-255), ReColorAdv epscolor 0.04, grid 10x10x10, smoothcoef 1",
                      "members/unroll_steps/craft_steps": "parse.py: M = 24 (3 processes x nreplay 8), nadapt K = 2, "
                                                          "60 crafting steps, Adam craftrate 200 (0-255), x0.1 at 20 and 40",
                      "advance_steps": "main.py: every surrogate trains one epoch per crafting step; the poisons "
                                       "are spread over the batches of 125 they fall in (every profile: the "
                                       "unrolled batch holds the training set's share of poisons, "
                                       "metapoison.poisons_per_unrolled_batch)",
                      "epochs/warmup_epochs": "parse.py and victim.py: SGD lr 0.1, batch 125, no momentum, weight "
                                              "decay or augmentation, warm-up over 5 epochs, x0.1 at 100/150; victims "
                                              "200 epochs",
                      "surrogate_epochs": "main.py: the surrogates live maxepoch = M x stagger (1 epoch) = 24 epochs, "
                                          "member m starting at epoch m",
                      "finetune_*/pf_*": "Fig. 3: fine-tuning a pretrained network, MetaPoison against Poison Frogs "
                                         "(30% watermark) at an equal number of poisons (70 of 50,000 = 0.14%); "
                                         "its epochs, lr and PF iterations are UNCONFIRMED",
                      "test_images": "CIFAR-10's 10,000 test images for clean accuracy",
                      "accuracy_floor": "issue 23: decided claims need from-scratch CIFAR-10 victims at >= 80% clean "
                                        "test accuracy",
                  }),
}
