"""Config of notebook 08, influence functions and the training-set attack (Koh and Liang, ICML 2017).

The paper's setting (the paper and its code, kohpangwei/influence-release): Inception-v3 features
of dog vs fish, 900 training and 300 test images per class, logistic regression with L2 0.001,
signed steps on the training pixels (0.02 on the [-1, 1] scale) inside an L-inf box of 0.5 pixel
levels (0-255 scale), 100 iterations, 1, 2, 3, 5 or 10 perturbed training images.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ConfigError, ExtractorConfig, param
from ..data import CIFAR10_CLASSES as C


@dataclass(frozen=True)
class Config(ExtractorConfig):
    """Fields feed the stages of ``poisonrepro.papers.influence.experiments``: the leave-one-out
    check, the attack and its control, each on the task (the two classes, their features, the
    clean head and its targets), which runs on the extractor."""
    UPSTREAM = {"task": ("extractor",), "influence_loo": ("task",), "influence_attack": ("task",),
                "influence_control": ("task",)}

    # the stand-in extractor's recipe (``pretrained.cifar_standin``): issue 23's floor needs "fast"
    standin_recipe: str = param(choices=("adam", "fast"), stage="extractor")

    class_a: str = param(choices=C, stage="task")
    class_b: str = param(choices=C, stage="task")
    train_per_class: int = param(min=2, max=4500, dry=6, stage="task")
    test_per_class: int = param(min=1, max=1000, dry=4, stage="task")
    weight_decay: float = param(min=0, stage="task")
    loo_points: int = param(min=3, max=2000, dry=4, stage="influence_loo")
    n_targets: int = param(min=1, max=2000, dry=1, stage="task")
    perturb_counts: tuple[int, ...] = param(min=1, max=100, loop=True, stage=("influence_attack", "influence_control"))
    eps: tuple[float, ...] = param(min=0, max=1, epsilon=True, loop=True, stage=("influence_attack", "influence_control"))
    step_fraction: float = param(min=0, max=10, stage="influence_attack")  # step = step_fraction * eps
    attack_iters: int = param(min=1, loop=True, stage="influence_attack")

    def check(self):
        if self.class_a == self.class_b:
            raise ConfigError("class_a and class_b must differ")
        if max(self.perturb_counts) > 2 * self.train_per_class:
            raise ConfigError(f"perturb_counts={self.perturb_counts}: at most {2 * self.train_per_class} "
                              "training images exist")


# the stand-in extractor's settings equal notebook 01's, so both share one cached extractor
_STANDIN = dict(extractor="standin_convnet", standin_width=32, standin_per_class=5000, standin_epochs=14,
                standin_lr=1e-3, standin_recipe="fast")
_COMMON = dict(seed=0, class_a="airplane", class_b="frog", weight_decay=0.001, perturb_counts=(1, 2, 3, 5, 10))

PROFILES = {
    "smoke": dict(_COMMON, extractor="standin_convnet", standin_width=8, standin_per_class=60, standin_epochs=1,
                  standin_lr=1e-3, standin_recipe="fast", train_per_class=30, test_per_class=20, loo_points=8, n_targets=2,
                  eps=(2 / 255, 16 / 255), step_fraction=0.5, attack_iters=2),
    "cpu": dict(_COMMON, **_STANDIN, train_per_class=300, test_per_class=200, loo_points=40, n_targets=20,
                eps=(2 / 255, 16 / 255), step_fraction=0.25, attack_iters=5),
    "paper": dict(_COMMON, **dict(_STANDIN, extractor="inception_v3_imagenet"), train_per_class=900,
                  test_per_class=300, loo_points=100, n_targets=600, eps=(0.5 / 255, 2 / 255, 16 / 255),
                  step_fraction=5.1, attack_iters=100,
                  _sources={
                      "train_per_class/test_per_class": "dog vs fish, 900/300 per class (the paper; "
                                                        "kohpangwei/influence-release)",
                      "weight_decay": "L2 0.001 (kohpangwei/influence-release)",
                      "eps/step_fraction/attack_iters": "0.5 pixel levels box, step 0.02 on [-1, 1] (= 5.1 boxes), "
                                                        "100 iterations (the paper; kohpangwei/influence-release); "
                                                        "larger boxes added as a sweep",
                      "perturb_counts": "1, 2, 3, 5, 10 perturbed training images (the paper; "
                                        "kohpangwei/influence-release)",
                  }),
}
