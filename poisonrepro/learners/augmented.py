"""Supervised training with a data augmentation: the augmentation defences against unlearnable
examples.

Unlearnable Examples (Huang et al., ICLR 2021, Table 3: Cutout, Mixup, CutMix, Fast AutoAugment)
and Unlearnable Clusters (Zhang et al., CVPR 2023, Table 3: Mixup, Gaussian, CutMix, Cutout) train
the victim with one augmentation to see whether it breaks the protection. Each augmentation acts
on a batch of [0, 1] pixels after the recipe's flip-and-crop:

- ``mixup`` (Zhang et al., ICLR 2018, Eq. 1): x~ = lam x_i + (1 - lam) x_j, y~ = lam y_i +
  (1 - lam) y_j, lam ~ Beta(alpha, alpha) per batch (``torchvision.transforms.v2.MixUp``);
- ``cutmix`` (Yun et al., ICCV 2019, Eq. 1): x~ = M * x_i + (1 - M) * x_j for a box mask M of
  area 1 - lam, y~ = lam y_i + (1 - lam) y_j with lam the exact kept area
  (``v2.CutMix``), applied to a batch with probability ``cutmix_prob``;
- ``cutout`` (DeVries and Taylor, 2017): a ``cutout_size`` x ``cutout_size`` square set to 0,
  one per image, wholly inside it as in UC's code (``v2.RandomErasing``);
- ``gaussian_noise``: x + N(0, ``noise_sigma``^2) per pixel, clipped to [0, 1];
- ``gaussian_blur``: a ``blur_kernel`` x ``blur_kernel`` Gaussian filter of ``blur_sigma``
  pixels (``v2.GaussianBlur``; UC's code has a GaussianSmoothing module with kernel 7, sigma 3
  on 224 px, which its "Gaussian" defence may mean: UNCONFIRMED, so both are here);
- ``crop_flip``: nothing more (the default victim's own augmentation, ``train.crop_flip``);
- ``none``: not even flip-and-crop (the recipe's ``crop_pad`` and ``flip`` are switched off).

Mixed labels enter the loss as soft targets, y~ = M onehot(y) with M the batch's mixing
matrix, in the recipe's label-smoothed cross-entropy. ``train.train_victim`` takes no batch
transform that also mixes labels, so the augmentation sits in front of the network
(``AugmentedNetwork``: in training mode only) and hands its mixing matrix to the ``loss_fn``
of the same step; the victim's schedule, optimizer and adversarial batches stay train_victim's.
Every random draw comes from a CPU generator seeded by the trial's seed, so a GPU run draws the
same.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from .. import models as M
from .. import train as T
from ..evaluation import SupervisedLearner
from ..rng import seeded

#: each augmentation's parameters and their defaults (the papers' CIFAR settings where known)
AUGMENTATIONS: dict[str, dict[str, float]] = {
    "crop_flip": {},
    "none": {},
    "mixup": {"mixup_alpha": 1.0},  # Zhang et al. 2018, CIFAR-10
    "cutmix": {"cutmix_alpha": 1.0, "cutmix_prob": 0.5},  # Yun et al. 2019, CIFAR
    "cutout": {"cutout_size": 16},  # DeVries and Taylor 2017, CIFAR-10
    "gaussian_noise": {"noise_sigma": 0.1},  # a stand-in: no paper states it
    "gaussian_blur": {"blur_kernel": 7, "blur_sigma": 3.0},  # UC's GaussianSmoothing defaults
}


def augmentations() -> tuple[str, ...]:
    """The augmentation names ``AugmentedLearner`` takes."""
    return tuple(AUGMENTATIONS)


def check_augmentation(augmentation: str, params: dict) -> dict:
    """The augmentation's parameters, defaults filled in; a clear error for an unknown name, a
    parameter of another augmentation, or a value out of range."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation={augmentation!r}: unknown; allowed: {', '.join(AUGMENTATIONS)}")
    allowed = AUGMENTATIONS[augmentation]
    stray = sorted(set(params) - set(allowed))
    if stray:
        raise ValueError(f"augmentation {augmentation!r} takes {', '.join(allowed) or 'no parameters'}; "
                         f"got {', '.join(stray)}")
    p = {**allowed, **params}
    ranges = {
        "mixup_alpha": (lambda v: v > 0, "a Beta parameter > 0"),
        "cutmix_alpha": (lambda v: v > 0, "a Beta parameter > 0"),
        "cutmix_prob": (lambda v: 0 < v <= 1, "a probability in (0, 1]"),
        "cutout_size": (lambda v: isinstance(v, int) and v >= 1, "an integer side in pixels >= 1"),
        "noise_sigma": (lambda v: 0 < v <= 1, "a standard deviation on the [0, 1] pixel scale, in (0, 1] "
                                              "(8/255, not 8)"),
        "blur_kernel": (lambda v: isinstance(v, int) and v >= 1 and v % 2 == 1, "an odd integer >= 1"),
        "blur_sigma": (lambda v: v > 0, "a standard deviation in pixels > 0"),
    }
    for name, value in p.items():
        ok, what = ranges[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(f"{name}={value!r}: {what}")
    return p


def augment(x: torch.Tensor, augmentation: str, generator: torch.Generator,
            **params) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply ``augmentation`` to a batch ``x`` of [0, 1] floats [B, C, H, W]: the augmented batch,
    in [0, 1], and the mixing matrix M [B, B] (row i: the weights of the batch's labels in image
    i's target; None where labels are kept). Draws come from ``generator`` (CPU)."""
    p = check_augmentation(augmentation, params)
    if augmentation in ("crop_flip", "none"):
        return x, None
    if augmentation == "gaussian_noise":
        # drawn on the CPU (v2.GaussianNoise draws on the batch's device): the same noise on a GPU
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return (x + p["noise_sigma"] * noise).clamp_(0, 1), None
    if augmentation == "gaussian_blur":
        return v2.GaussianBlur(p["blur_kernel"], sigma=float(p["blur_sigma"]))(x), None
    if augmentation == "cutmix" and torch.rand((), generator=generator) >= p["cutmix_prob"]:
        return x, None
    # torchvision draws from torch's global CPU generator: fork it (the CPU's only), seeded from ours
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(torch.randint(2 ** 62, (), generator=generator)))
        b = len(x)
        if augmentation == "cutout":
            side = p["cutout_size"]
            if side >= min(x.shape[-2:]):  # RandomErasing would silently erase nothing
                raise ValueError(f"cutout_size={side}: must be smaller than the images' {x.shape[-2]} x {x.shape[-1]}")
            erase = v2.RandomErasing(p=1.0, scale=(side * side / (x.shape[-2] * x.shape[-1]),) * 2, ratio=(1.0, 1.0),
                                     value=0.0)
            return torch.stack([erase(image) for image in x]), None  # one box per image
        # the labels are the batch positions, so the soft labels are the mixing matrix itself
        mix = v2.MixUp(alpha=p["mixup_alpha"], num_classes=b) if augmentation == "mixup" \
            else v2.CutMix(alpha=p["cutmix_alpha"], num_classes=b)
        mixed, weights = mix(x, torch.arange(b, device=x.device))
        return mixed, weights


class AugmentedNetwork(nn.Module):
    """``net`` behind ``augmentation`` in training mode (the identity in eval mode, so that
    adversarial batches, scoring and prediction see the plain network); the last batch's mixing
    matrix is kept for the loss of the same step."""

    def __init__(self, net: nn.Module, augmentation: str, generator: torch.Generator, params: dict):
        super().__init__()
        self.net, self.augmentation, self.generator, self.params = net, augmentation, generator, params
        self.mixing: torch.Tensor | None = None

    @property
    def normalize(self):  # train.whiten_stem reads the network's input normalisation
        return self.net.normalize

    def forward(self, x):
        if self.training:
            x, self.mixing = augment(x, self.augmentation, self.generator, **self.params)
        return self.net(x)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        """The recipe's cross-entropy, at the mixed (soft) targets where the batch was mixed."""
        if self.mixing is None:
            return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        targets = self.mixing.to(logits.device, logits.dtype) @ F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


@dataclass(frozen=True)
class AugmentedLearner(SupervisedLearner):
    """A network of ``arch`` trained from scratch by ``train.train_victim`` with
    ``augmentation`` (module docstring) on top of the recipe's flip-and-crop, and only that
    augmentation's parameters (None: its default in ``AUGMENTATIONS``), e.g.
    ``{"kind": "poisonrepro.learners.augmented:AugmentedLearner", "arch": "resnet18_standin",
    "augmentation": "cutmix", "cutmix_alpha": 1.0, "cutmix_prob": 0.5}``."""
    augmentation: str = "crop_flip"
    mixup_alpha: float | None = None
    cutmix_alpha: float | None = None
    cutmix_prob: float | None = None
    cutout_size: int | None = None
    noise_sigma: float | None = None
    blur_kernel: int | None = None
    blur_sigma: float | None = None

    def __post_init__(self):
        if self.arch not in M.MODELS:
            raise ValueError(f"arch={self.arch!r}: unknown; allowed: {', '.join(M.MODELS)}")
        self.params  # checked before any compute

    @property
    def params(self) -> dict:
        """The augmentation's parameters, defaults filled in (checked)."""
        given = {f: getattr(self, f) for f in _PARAMETERS if getattr(self, f) is not None}
        return check_augmentation(self.augmentation, given)

    def train(self, x, y, recipe, seed, *, score=None):
        if self.augmentation == "none":
            recipe = replace(recipe, crop_pad=0, flip=False)
        with seeded(seed):  # the initial weights are a function of the seed alone
            net = M.build_model(self.arch).to(T.default_device())
        generator = torch.Generator().manual_seed(seed + 1)  # not the trainer's own stream
        model = AugmentedNetwork(net, self.augmentation, generator, self.params)
        T.train_victim(model, x, y, recipe, seed=seed, desc=f"victim {self.arch} + {self.augmentation}",
                       loss_fn=lambda logits, labels: model.loss(logits, labels, recipe.label_smoothing))
        return model.net


_PARAMETERS = sorted({name for params in AUGMENTATIONS.values() for name in params})
