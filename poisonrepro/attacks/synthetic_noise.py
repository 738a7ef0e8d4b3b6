"""Synthetic noise ("SynPer"): the shortcut noise of D. Yu, H. Zhang, W. Chen, J. Yin, T.-Y. Liu,
"Availability Attacks Create Shortcuts", KDD 2022 (Sec. 5, "synthetic perturbations"; the authors'
code dayu11/Availability-Attacks-Create-Shortcuts, ``synthetic_perturbations/cifar_train.py``), a
baseline of Unlearnable Clusters (Zhang et al. 2023, notebook 13).

Yu et al. show that availability poisons work because they are (almost) linearly separable
shortcuts, and build one with no model at all:

1. a synthetic classification problem with as many classes K as the training set,
   ``sklearn.datasets.make_classification(n_features=48, n_informative=48, n_redundant=0,
   n_repeated=0, n_classes=K, n_clusters_per_class=1, class_sep=10, flip_y=0)``: one Gaussian
   cluster per class around a vertex of the hypercube [-class_sep, class_sep]^48, far apart;
2. sample i of class c gets one point s_i of the synthetic class c (the first n_c points of that
   class, n_c the class's size), so the noise is sample-wise but drawn from its class's cluster;
3. s_i becomes a 4 x 4 grid of patches per channel (the authors reshape the 48 values to
   [4, 4, 3], rows x columns x channels): each value fills an (H/4) x (W/4) patch of its
   channel, 8 x 8 on 32 x 32 images (``patch_grid``);
4. the delta is scaled to the L2 norm of Yu et al.'s budget, ``l2 = sqrt(l2_level^2 * C*H*W)``
   with l2_level = 6/255 (``l2_normalise``; the authors' ``normalize_l2norm``), and added to the
   image, clipped into [0, 1].

Departures: (a) the delta is finally clipped to the L-inf budget ``eps`` (8/255 by default) so
that it fits this project's artifact (``availability.noise_artifact``, int8 pixel levels within
eps) and compares with the other noises at the same L-inf budget; Yu et al. bound the L2 norm
only, and an 8x8 patch may exceed 8/255 there. Clipping only shrinks the delta: the artifact's
``l2_norm`` (after clipping, before the rounding to whole pixel levels) is at most ``l2_target``.
(b) For C channels the grid has 16 C values (48 for RGB). (c) The synthetic set has
K * (largest class + 1) points, so every class has enough (the authors draw N, about N/K per
class, which suffices for CIFAR's balanced classes); labels need not be 0..K-1 (the k-th smallest
label takes synthetic class k). (d) ``make_classification`` is seeded with ``seed`` (mod 2^32);
the authors seed NumPy's global generator.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..registry import register_attack
from .availability import check_budget, check_training_set, noise_artifact

GRID = 4  # patches per side: 8 x 8 patches on 32 x 32 images (the authors' --patchsize 8)
PAPER = dict(l2_level=6 / 255, class_sep=10.0)  # Yu et al., cifar_train.py: --eps 6, class_sep=10.


def target_l2(l2_level: float, shape) -> float:
    """Yu et al.'s L2 budget for images of ``shape`` (C, H, W): sqrt(l2_level^2 * C*H*W)."""
    return math.sqrt(l2_level ** 2 * math.prod(shape))


def l2_normalise(delta: torch.Tensor, l2: float) -> torch.Tensor:
    """``delta`` [N, ...] scaled so that every sample's L2 norm is ``l2``."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta / norms.view(-1, *[1] * (delta.dim() - 1)) * l2


def patch_grid(points: torch.Tensor, shape) -> torch.Tensor:
    """[N, 16 C] synthetic points -> [N, C, H, W]: the values as a 4 x 4 grid per channel (laid out
    [4, 4, C] as the authors reshape them), each filling a ceil(H/4) x ceil(W/4) patch, cropped."""
    c, h, w = shape
    grid = points.reshape(len(points), GRID, GRID, c).permute(0, 3, 1, 2)
    patches = grid.repeat_interleave(math.ceil(h / GRID), dim=2).repeat_interleave(math.ceil(w / GRID), dim=3)
    return patches[:, :, :h, :w].contiguous()


def synthetic_points(y: torch.Tensor, *, features: int, class_sep: float, seed: int) -> torch.Tensor:
    """One synthetic point [features] per sample (float64 [N, features]): sample i of the k-th
    smallest label takes one of the points of synthetic class k (module docstring, steps 1-2)."""
    from sklearn.datasets import make_classification
    classes, index = torch.unique(y, return_inverse=True)
    k = len(classes)
    per_class = int(torch.bincount(index).max()) + 1  # +1: make_classification's float shares may round down
    n_classes = max(k, 2)  # one label only: draw two classes, use the first
    points, labels = make_classification(
        n_samples=n_classes * per_class, n_features=features, n_informative=features, n_redundant=0,
        n_repeated=0, n_classes=n_classes, n_clusters_per_class=1, class_sep=class_sep, flip_y=0.0,
        shuffle=True, random_state=seed % 2 ** 32)
    out = np.empty((len(y), features))
    for c in range(k):
        members = torch.nonzero(index == c).flatten().numpy()
        pool = points[labels == c]
        if len(pool) < len(members):  # cannot happen with per_class above; never assign silently short
            raise RuntimeError(f"synthetic class {c}: {len(pool)} points for {len(members)} samples")
        out[members] = pool[:len(members)]
    return torch.from_numpy(out)


def _check(x, y, eps, l2_level, class_sep, seed) -> torch.Tensor:
    check_budget(eps)
    y = check_training_set(x, y)
    if isinstance(l2_level, bool) or not isinstance(l2_level, numbers.Real) or not 0 < l2_level <= 1:
        raise ValueError(f"l2_level={l2_level!r}: Yu et al.'s per-pixel L2 level must lie in (0, 1] on the "
                         f"[0, 1] pixel scale (6/255, not 6)")
    if isinstance(class_sep, bool) or not isinstance(class_sep, numbers.Real) or not 0 < class_sep < math.inf:
        raise ValueError(f"class_sep={class_sep!r}: need a finite class separation > 0 (10 in Yu et al.)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r}: need an integer")
    h, w = x.shape[2:]
    if h < GRID or w < GRID:
        raise ValueError(f"x: images of {h}x{w} pixels; need at least {GRID}x{GRID} (a {GRID} x {GRID} grid of "
                         f"patches per channel)")
    return y


@register_attack("synthetic_noise", paper="Yu et al. 2022 (baseline of Zhang et al. 2023)",
                 notebook="13_unlearnable_clusters",
                 summary="sample-wise synthetic shortcut noise (SynPer): patch patterns drawn from one "
                         "well-separated cluster per class, L2-scaled, no model needed",
                 timing="poisoning", goal="untargeted", knowledge="black-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def synthetic_noise(x: torch.Tensor, y: torch.Tensor, *, eps: float = 8 / 255,
                    l2_level: float = PAPER["l2_level"], class_sep: float = PAPER["class_sep"],
                    seed: int = 0) -> dict:
    """Yu et al.'s synthetic noise for the training set (``x`` uint8 or floats in [0, 1], only its
    shape is used; ``y`` the labels): one delta per sample, drawn from its class's synthetic
    cluster, scaled to the L2 norm sqrt(l2_level^2 * C*H*W), then clipped to [-eps, eps] (module
    docstring). Returns ``availability.noise_artifact`` with ``l2_norm`` [N] (each delta's L2
    norm after the clipping) and ``l2_target`` (the norm before it)."""
    y = _check(x, y, eps, l2_level, class_sep, seed)
    shape = tuple(x.shape[1:])
    points = synthetic_points(y, features=GRID * GRID * shape[0], class_sep=float(class_sep), seed=int(seed))
    target = target_l2(l2_level, shape)
    delta = l2_normalise(patch_grid(points, shape), target).clamp(-eps, eps)
    return noise_artifact(delta.float(), eps=eps, by_class=False, groups=torch.arange(len(x)),
                          l2_norm=delta.flatten(1).norm(dim=1).float(), l2_target=torch.tensor(target))
