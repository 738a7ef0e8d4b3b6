"""Config of notebook 01, Poison Frogs (Shafahi et al., NeurIPS 2018).

``paper`` gives the published settings (sources in ``_sources``); ``cpu`` the reduced-scale
reproduction on 2 cores; ``smoke`` the plumbing check.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ConfigError, ExtractorConfig, param
from ..data import CIFAR10_CLASSES

C = CIFAR10_CLASSES


@dataclass(frozen=True)
class Config(ExtractorConfig):
    """Fields feed the stages of ``poisonrepro.papers.poison_frogs.experiments``: the transfer
    attack (on the extractor's features), the end-to-end victim and the end-to-end attack (on
    that victim). A sweep's values (``beta_sweep``, ``sweep_targets``, the upsampled run) reach
    the transfer attack as explicit arguments, each part of its own key."""
    UPSTREAM = {"transfer_attack": ("extractor",), "e2e_attack": ("e2e_victim",)}

    # the stand-in extractor's recipe (``pretrained.cifar_standin``): issue 23's floor needs "fast"
    standin_recipe: str = param(choices=("adam", "fast"), stage="extractor")

    # --- transfer learning (frozen feature extractor, last layer retrained)
    transfer_class_a: str = param(choices=C, stage="transfer_attack")
    transfer_class_b: str = param(choices=C, stage="transfer_attack")
    train_per_class: int = param(min=1, max=4500, dry=4, stage="transfer_attack")
    test_per_class: int = param(min=1, max=1000, dry=4, stage=("transfer_attack", "e2e_attack"))
    n_targets: int = param(min=1, max=2000, dry=2, stage="transfer_attack")
    head_epochs: int = param(min=1, loop=True, stage="transfer_attack")
    head_lr: float = param(min=0, max=1, stage="transfer_attack")
    head_batch_size: int = param(min=1, stage="transfer_attack")
    craft_iters: int = param(min=1, loop=True, stage="transfer_attack")
    craft_lr: float = param(min=0, stage=("transfer_attack", "e2e_attack"))
    beta0: float = param(min=0, stage="transfer_attack")  # Eq. 2 on the paper's [0, 255] pixel scale (converted in the attack)
    beta_sweep: tuple[float, ...] = param(min=0, loop=True, stage=())  # multipliers of the paper's beta
    sweep_targets: int = param(min=1, max=2000, dry=1, stage=())  # the first targets, for each swept beta
    clean_label_linf_255: float = param(min=0, max=255, stage=())  # the clean-label gate, L-inf on the 0-255 scale
    # issue 23: the extractor (on its own task) and the end-to-end victims must reach this clean
    # accuracy, else the claims they decide are untested (read by the report only)
    accuracy_floor: float = param(min=0, max=1, stage=())
    upsampled_size: int = param(min=0, max=1024, dry=0, stage=())  # poisons at this resolution (0: skip), net sees 32x32
    upsampled_targets: int = param(min=0, max=2000, dry=1, stage=())
    evasion_eps: float = param(min=0, max=1, epsilon=True, stage=())
    evasion_steps: int = param(min=1, loop=True, stage=())
    # --- end-to-end training (every layer retrained on the poisoned set)
    # convnet_bn trains with the fast victim recipe (e2e_pretrain_lr and e2e_width unused), the
    # others with Adam at e2e_pretrain_lr (experiments.train_from_scratch)
    e2e_model: str = param(choices=("convnet", "convnet_bn", "alexnet_cifar"), stage="e2e_victim")
    e2e_width: int = param(min=4, max=256, dry=4, stage="e2e_victim")
    e2e_num_classes: int = param(choices=(2, 10), stage="e2e_victim")
    e2e_target_class: str = param(choices=C, stage="e2e_victim")
    e2e_base_class: str = param(choices=C, stage="e2e_victim")
    e2e_train_per_class: int = param(min=1, max=5000, dry=4, stage="e2e_victim")
    e2e_pretrain_epochs: int = param(min=1, loop=True, stage="e2e_victim")
    e2e_pretrain_lr: float = param(min=0, max=1, stage="e2e_victim")
    e2e_finetune_epochs: int = param(min=1, loop=True, stage="e2e_attack")
    e2e_finetune_lr: float = param(min=0, max=1, stage="e2e_attack")
    e2e_poison_counts: tuple[int, ...] = param(min=1, max=1000, loop=True, stage="e2e_attack")
    e2e_opacities: tuple[float, ...] = param(min=0, max=1, loop=True, stage="e2e_attack")
    e2e_targets: int = param(min=1, max=1000, dry=1, stage="e2e_attack")
    e2e_craft_iters: int = param(min=1, loop=True, stage="e2e_attack")
    e2e_beta_255: float = param(min=0, stage="e2e_attack")  # the paper's raw beta, [0, 255] pixel scale
    scratch_targets: int = param(min=0, max=1000, dry=1, stage="e2e_attack")

    def check(self):
        if self.transfer_class_a == self.transfer_class_b:
            raise ConfigError("transfer_class_a and transfer_class_b must differ")
        if self.e2e_target_class == self.e2e_base_class:
            raise ConfigError("e2e_target_class and e2e_base_class must differ")
        if self.upsampled_size and self.upsampled_size < 32:
            raise ConfigError(f"upsampled_size={self.upsampled_size}: 0 (skip) or at least the 32x32 input")
        if self.sweep_targets > self.n_targets:
            raise ConfigError(f"sweep_targets={self.sweep_targets}: at most n_targets={self.n_targets}")
        if self.upsampled_targets > self.n_targets:
            raise ConfigError(f"upsampled_targets={self.upsampled_targets}: at most n_targets={self.n_targets}")
        if self.n_targets > 2 * self.test_per_class:
            raise ConfigError(f"n_targets={self.n_targets}: at most 2 * test_per_class = "
                              f"{2 * self.test_per_class} test images can serve as targets")


_COMMON = dict(
    seed=0, transfer_class_a="airplane", transfer_class_b="frog",
    head_lr=0.01, head_batch_size=32, beta0=0.25, evasion_eps=8 / 255,
    e2e_target_class="bird", e2e_base_class="dog", e2e_beta_255=0.1,
    # poisons of at most 16/255 in L-inf count as clean-label: the largest budget of the
    # benchmarks that followed (Witches' Brew: 16/255; Just How Toxic: 8/255); the paper
    # itself states none and shows near-invisible poisons (Fig. 2, Fig. 5)
    clean_label_linf_255=16.0,
    # the accuracy floor of issue 23, at every profile (smoke's networks do not reach it: its claims
    # come out untested, as they should)
    accuracy_floor=0.8,
    # from the paper's beta down to 255^-2 times it (what the old [0, 1]-scale bug used)
    beta_sweep=(0.1, 0.01, 1e-3, 1 / 255 ** 2),
)

PROFILES = {
    "smoke": dict(_COMMON,
                  extractor="standin_convnet", standin_width=8, standin_per_class=60, standin_epochs=1,
                  standin_lr=1e-3, standin_recipe="fast", train_per_class=40, test_per_class=40, n_targets=4, head_epochs=5,
                  craft_iters=20, craft_lr=0.05, evasion_steps=5, upsampled_size=64, upsampled_targets=2,
                  sweep_targets=2,
                  e2e_model="convnet_bn", e2e_width=8, e2e_num_classes=2, e2e_train_per_class=60,
                  e2e_pretrain_epochs=1, e2e_pretrain_lr=1e-3, e2e_finetune_epochs=1,
                  e2e_finetune_lr=1e-4, e2e_poison_counts=(1, 4), e2e_opacities=(0.3,), e2e_targets=2,
                  e2e_craft_iters=10, scratch_targets=1),
    # issue 23, from docs/probes/01_floor_probe.json (AMD EPYC): the stand-in extractor with the fast
    # recipe on all 40,000 images of its 8 classes, 14 epochs (82.9%; Adam reached 74.3%, the fast
    # recipe 79.4% at 8); the end-to-end victim ConvNet-BN, fast recipe, 2,500 images per class,
    # 16 epochs (88.3%; ConvNet-16 with Adam 82.7% at 20); 10 end-to-end targets and 10
    # from-scratch victims, the power analysis's (0.85 and 1.0 at Holm's level)
    "cpu": dict(_COMMON,
                extractor="standin_convnet", standin_width=32, standin_per_class=5000, standin_epochs=14,
                standin_lr=1e-3, standin_recipe="fast", train_per_class=500, test_per_class=500, n_targets=60, head_epochs=100,
                craft_iters=500, craft_lr=0.05, evasion_steps=20, upsampled_size=299, upsampled_targets=30,
                sweep_targets=30,
                e2e_model="convnet_bn", e2e_width=16, e2e_num_classes=2, e2e_train_per_class=2500,
                e2e_pretrain_epochs=16, e2e_pretrain_lr=1e-3, e2e_finetune_epochs=10,
                e2e_finetune_lr=1e-4, e2e_poison_counts=(1, 10, 50), e2e_opacities=(0.3,),
                e2e_targets=10, e2e_craft_iters=300, scratch_targets=10),
    "paper": dict(_COMMON,
                  extractor="inception_v3_imagenet", standin_width=32, standin_per_class=5000,
                  standin_epochs=30, standin_lr=1e-3, standin_recipe="fast", train_per_class=900, test_per_class=1000,
                  n_targets=1099, head_epochs=100, craft_iters=1000, craft_lr=0.05, evasion_steps=50,
                  upsampled_size=0, upsampled_targets=0, sweep_targets=1099,
                  e2e_model="alexnet_cifar", e2e_width=32, e2e_num_classes=10, e2e_train_per_class=5000,
                  e2e_pretrain_epochs=100, e2e_pretrain_lr=1e-3, e2e_finetune_epochs=10,
                  e2e_finetune_lr=1.85e-5, e2e_poison_counts=(1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70),
                  e2e_opacities=(0.2, 0.3), e2e_targets=30, e2e_craft_iters=12000,
                  scratch_targets=30,
                  _sources={
                      "extractor": "Sec. 4.1: ImageNet-pretrained InceptionV3, frozen",
                      "train_per_class": "Sec. 4.1: 900 training images per class (dog vs fish)",
                      "n_targets": "Sec. 4.1: all 1099 test images serve as targets",
                      "head_epochs/head_lr/head_batch_size": "authors' code: Adam 0.01, 100 epochs, batch 32, cold start",
                      "craft_iters": "authors' code: MaxIter 1000 (paper text: 100)",
                      "beta0": "Sec. 4.1, Eq. 2: beta0 = 0.25, beta = beta0 * 2048^2 / dim_b^2 on pixels in "
                               "[0, 255] (the authors' code: coeffSimInp 0.2 * (2048 / dim_b)^2 on the raw "
                               "image's dim_b, pixels 0-255); x 255^2 on our [0, 1] scale",
                      "upsampled_size": "not needed: InceptionV3's inputs are already 299x299 (the stand-in "
                                        "fallback skips the resolution check)",
                      "e2e_model": "Sec. 4.2: scaled-down AlexNet, CIFAR-10, warm start",
                      "e2e_finetune_lr/e2e_finetune_epochs": "Sec. 4.2: Adam 1.85e-5, 10 epochs",
                      "e2e_poison_counts": "Fig. 6: 1-70 poisons step 5",
                      "e2e_targets": "Sec. 4.2: >= 30 trials per point",
                      "e2e_craft_iters/e2e_beta_255": "Sec. 4.2 (single poison): beta 0.1, 12000 iterations. "
                                                      "A raw beta, not beta0: Eq. 2 is introduced for the "
                                                      "variable-size ImageNet images, and CIFAR-10 inputs "
                                                      "are a fixed 32x32; on the authors' 0-255 pixel "
                                                      "scale (assumed: their end-to-end code is not public). "
                                                      "Equivalent to beta0 = 0.1 * 3072^2 / 2048^2 = 0.225 "
                                                      "in Eq. 2 with 2048 features",
                      "e2e_opacities": "Fig. 6b: opacity 20% and 30% (the single poison, Fig. 4, has none)",
                      "accuracy_floor": "not in the paper: the project's floor (issue 23) on the extractor's "
                                        "own-task accuracy and the end-to-end victims' clean accuracy",
                      "clean_label_linf_255": "no bound in the paper; 16/255, the largest budget of the "
                                              "follow-up benchmarks (Witches' Brew)",
                      "e2e_target_class/e2e_base_class": "Fig. 6b: bird target, dog bases",
                  }),
}
