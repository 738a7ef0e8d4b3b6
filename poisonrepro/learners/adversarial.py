"""Adversarial training as a defence against unlearnable examples (Madry et al., ICLR 2018, Eq. 2.1):

    min_theta E_(x, y) [ max_{||delta||_inf <= eps} CE(f_theta(x + delta), y) ],

the inner maximisation by L-inf PGD from a random start (``attacks.evasion_pgd.untargeted_pgd``,
as ``train.VictimRecipe.adversarial_eps`` runs it), each step x <- Proj(x + alpha sign(grad)).

Unlearnable Clusters (Zhang et al., CVPR 2023) reports test accuracy under adversarial training
"rho = 1, 2" against every protection. rho is the adversarial-training radius in the notation of
Robust Unlearnable Examples (Fu et al., ICLR 2022), which UC cites for the claim that AT breaks
error-minimising noise: an L-inf budget of rho/255 (their rho_a in {1, 2, 3, 4}/255). UC states
no steps or step size, nor releases AT code (UNCONFIRMED); the clean accuracy it reports under AT
(58.80 and 58.01 against 62.31 without, Pets) fits such small budgets. Here ``rho`` sets
eps = rho/255; ``eps=8/255`` is adversarial training at the noise's own budget (Unlearnable
Examples' 8/255).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .. import models as M
from .. import train as T
from ..evaluation import SupervisedLearner
from ..rng import seeded


@dataclass(frozen=True)
class AdversarialLearner(SupervisedLearner):
    """A network of ``arch`` trained by ``train.train_victim`` on L-inf PGD batches of radius
    ``eps`` (or ``rho``/255, UC's notation: give one of them), ``steps`` steps of ``step_size``
    (default eps/4: 2/255 at 8/255, Madry et al.'s CIFAR ratio, 7 steps), after the recipe's
    flip-and-crop, e.g. ``{"kind": "poisonrepro.learners.adversarial:AdversarialLearner",
    "arch": "resnet18_standin", "rho": 2}``."""
    eps: float | None = None
    rho: float | None = None
    steps: int = 7
    step_size: float | None = None

    def __post_init__(self):
        if self.arch not in M.MODELS:
            raise ValueError(f"arch={self.arch!r}: unknown; allowed: {', '.join(M.MODELS)}")
        if (self.eps is None) == (self.rho is None):
            raise ValueError(f"AdversarialLearner: give eps (on the [0, 1] scale, e.g. 8/255) or rho (in 1/255 "
                             f"units, UC's rho = 1, 2), not {'both' if self.eps is not None else 'neither'}")
        if self.rho is not None and not 0 < self.rho <= 255:
            raise ValueError(f"rho={self.rho!r}: the L-inf radius in units of 1/255, in (0, 255]")
        if self.eps is not None and not 0 < self.eps <= 1:
            raise ValueError(f"eps={self.eps!r}: an L-inf radius on the [0, 1] pixel scale, in (0, 1] "
                             f"(did you mean {self.eps}/255?)")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps={self.steps!r}: an integer >= 1")
        if self.step_size is not None and not 0 < self.step_size <= 1:
            raise ValueError(f"step_size={self.step_size!r}: on the [0, 1] pixel scale, in (0, 1]")

    @property
    def radius(self) -> float:
        """The L-inf radius on the [0, 1] scale."""
        return self.eps if self.eps is not None else self.rho / 255

    def adversarial_recipe(self, recipe: T.VictimRecipe) -> T.VictimRecipe:
        """``recipe`` with this learner's adversarial training switched on."""
        return replace(recipe, adversarial_eps=self.radius, adversarial_steps=self.steps,
                       adversarial_step_size=self.step_size or self.radius / 4)

    def train(self, x, y, recipe, seed, *, score=None):
        with seeded(seed):  # the initial weights are a function of the seed alone
            model = M.build_model(self.arch).to(T.default_device())
        return T.train_victim(model, x, y, self.adversarial_recipe(recipe), seed=seed,
                              desc=f"adversarial victim {self.arch} (eps {self.radius * 255:g}/255)")
