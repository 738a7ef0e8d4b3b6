"""Additive availability noise: its artifact format and the producer that spoils a training set.

Shared machinery (it registers no method) for the noises of notebooks 12-14 and their baselines:
error-minimising noise (H. Huang, X. Ma, S. M. Erfani, J. Bailey, Y. Wang, "Unlearnable
Examples: Making Personal Data Unexploitable", ICLR 2021, Eq. 2 and Sec. 4), uniform random
noise and error-maximising noise (the baselines of its Fig. 1), and later the cluster-wise noise
of Unlearnable Clusters (Zhang et al. 2023) and TUE (Ren et al. 2023).

An unlearnable training set is D_u = {(x_i + delta_{g(i)}, y_i)}, Eq. 1 of Huang et al., with
||delta||_inf <= eps and the pixels clipped into [0, 1]; g(i) is the sample itself (sample-wise
noise, Delta_s), its class y_i (class-wise, Delta_c) or its cluster (Unlearnable Clusters).

The artifact (``noise_artifact``) is a ``dict[str, Tensor]`` for ``ArtifactCache.tensors``:

- ``delta_levels``: int8 [G, C, H, W], the deltas in pixel levels (units of 1/255). Training
  images are uint8, so x + delta is stored as uint8 anyway; rounding the delta to whole levels
  first keeps |delta| <= eps exactly (|255 delta| <= 255 eps, an integer for the budgets of the
  papers, rounds to at most itself) and takes a quarter of float32's space (150 MB for CIFAR-10's
  50,000 sample-wise deltas);
- ``by_class``: bool scalar; True: sample i takes delta[y_i] (class-wise noise, applicable to any
  training set of those classes); False: sample i takes delta[groups[i]];
- ``groups``: long [N] (sample-wise: ``arange(N)``; cluster-wise: the cluster of each sample),
  empty when ``by_class``;
- ``eps``: the budget it was made under; any further entries (``train_error``, ``rounds``,
  ``loss_history``) are diagnostics.

``poison_training_set`` (for an evaluation spec's producer) applies an artifact from the cache to
a share of the training set: ``fraction`` of all samples (UE-4, "what percentage of the data needs
to be unlearnable", the authors' ``poison_rate``: a seeded random subset of
round(fraction * N) samples), or of the samples of ``classes`` (UE-5 (c, d), one class made
unlearnable: the authors' ``poison_classwise_idx`` with fraction 1):

    {"producer": "poisonrepro.attacks.availability:poison_training_set",
     "args": {"stage": "ue_noise", "key": key, "fraction": 0.4, "seed": 0}}
"""
from __future__ import annotations

import math
import numbers

import torch

from ..cache import ArtifactCache
from ..train import check_pixels

MODES = ("sample", "class")


def check_budget(eps: float, name: str = "eps") -> None:
    """A clear error for a budget off the [0, 1] pixel scale (8 where 8/255 is meant)."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps <= 1:
        raise ValueError(f"{name}={eps!r}: an L-inf budget must lie in (0, 1] on the [0, 1] pixel scale "
                         f"(8/255, not 8)")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: unknown; allowed: {', '.join(map(repr, MODES))} "
                         f"(sample-wise or class-wise noise)")


def check_training_set(x, y) -> torch.Tensor:
    """A clear error, before any compute, unless ``x`` is a non-empty image batch [N, C, H, W] of
    uint8 pixels or floats in [0, 1] with one integer label per image; returns the labels."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) == 0:
        raise ValueError("x: need a non-empty tensor of images [N, C, H, W]")
    check_pixels("x", x)
    return check_labels(x, y)


def check_labels(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (len(x),):
        raise ValueError(f"y: need integer labels of shape [{len(x)}], got {y.dtype} {tuple(y.shape)}")
    if len(y) and int(y.min()) < 0:
        raise ValueError("y: labels must be >= 0")
    return y.long()


def noise_artifact(delta: torch.Tensor, *, eps: float, by_class: bool, groups: torch.Tensor | None = None,
                   **diagnostics) -> dict:
    """The cacheable dict of ``delta`` [G, C, H, W] (floats on the [0, 1] scale): rounded to whole
    pixel levels, int8 (module docstring). ``groups`` [N] is required unless ``by_class``."""
    check_budget(eps)
    if not by_class and groups is None:
        raise ValueError("groups: needed unless by_class (the delta of each sample)")
    levels = (delta.detach().float().cpu() * 255).round()
    # rounding cannot leave the budget: |255 delta| <= 255 eps, so |round| <= floor(255 eps + 1/2)
    levels = levels.clamp(-math.floor(255 * eps + 1e-6), math.floor(255 * eps + 1e-6)).to(torch.int8)
    out = {"delta_levels": levels, "by_class": torch.tensor(bool(by_class)),
           "groups": torch.zeros(0, dtype=torch.long) if by_class else torch.as_tensor(groups).long().cpu(),
           "eps": torch.tensor(float(eps))}
    out.update({k: torch.as_tensor(v) for k, v in diagnostics.items()})
    return out


def group_index(artifact: dict, y: torch.Tensor) -> torch.Tensor:
    """Which row of ``delta_levels`` each sample of a training set with labels ``y`` takes."""
    levels = artifact["delta_levels"]
    if bool(artifact["by_class"]):
        if len(y) and int(y.max()) >= len(levels):
            raise ValueError(f"class-wise noise for {len(levels)} classes; the training set has label {int(y.max())}")
        return torch.as_tensor(y).long()
    index = artifact["groups"].long()
    if len(index) != len(y):
        raise ValueError(f"noise crafted for {len(index)} samples; the training set has {len(y)}")
    return index


def deltas_of(artifact: dict, y: torch.Tensor) -> torch.Tensor:
    """The per-sample deltas of a training set with labels ``y`` as floats [N, C, H, W]."""
    return artifact["delta_levels"][group_index(artifact, y)].float() / 255


def poison_mask(y: torch.Tensor, *, fraction: float = 1.0, classes=None, seed: int = 0) -> torch.Tensor:
    """The bool mask of the samples to spoil: a seeded random round(fraction * M) of the M eligible
    samples (all, or those whose label is in ``classes``)."""
    y = torch.as_tensor(y).long()
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction={fraction!r}: the poisoned share must lie in [0, 1] (0.2 for 20%)")
    eligible = torch.ones(len(y), dtype=torch.bool)
    if classes is not None:
        classes = [classes] if isinstance(classes, numbers.Integral) else list(classes)
        present = set(y.unique().tolist())
        unknown = [c for c in classes if not isinstance(c, numbers.Integral) or c not in present]
        if not classes or unknown:
            raise ValueError(f"classes={classes!r}: need a non-empty list of labels of the training set "
                             f"(present: {sorted(present)})")
        eligible = torch.isin(y, torch.tensor(classes, dtype=torch.long))
    candidates = torch.nonzero(eligible).flatten()
    count = round(fraction * len(candidates))
    chosen = candidates[torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))[:count]]
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[chosen] = True
    return mask


def apply_noise(x: torch.Tensor, y: torch.Tensor, artifact: dict, *, fraction: float = 1.0, classes=None,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` with the artifact's noise added to the samples of ``poison_mask`` (pixels clipped
    into the range; uint8 stays uint8, exactly, floats stay floats), ``y`` unchanged, the mask."""
    y = check_labels(x, y)
    mask = poison_mask(y, fraction=fraction, classes=classes, seed=seed)
    index = group_index(artifact, y)  # checks the artifact against the set before anything changes
    shape = tuple(artifact["delta_levels"].shape[1:])
    if shape != tuple(x.shape[1:]):
        raise ValueError(f"noise of shape {shape} for images of shape {tuple(x.shape[1:])}")
    levels = artifact["delta_levels"][index[mask]]  # only the spoiled rows: sample-wise noise is large
    out = x.clone()
    if x.dtype == torch.uint8:  # whole levels: integer arithmetic, exact
        out[mask] = (x[mask].to(torch.int16) + levels.to(torch.int16)).clamp(0, 255).to(torch.uint8)
    else:
        out[mask] = (x[mask] + levels.to(x.dtype) / 255).clamp(0, 1)
    return out, y, mask


def _missing_noise():
    raise FileNotFoundError("the noise is not in the artifact cache: run its crafting stage first, with the same "
                            "POISONREPRO_ARTIFACTS")


def poison_training_set(x: torch.Tensor, y: torch.Tensor, *, stage: str, key: str, fraction: float = 1.0,
                        classes=None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The producer of an evaluation spec: the noise artifact cached under (``stage``, ``key``)
    applied to ``fraction`` of the training set (or of the samples of ``classes``)."""
    poison_mask(torch.as_tensor(y), fraction=fraction, classes=classes, seed=seed)  # bad input fails before the load
    artifact = ArtifactCache().tensors(stage, key, _missing_noise)
    return apply_noise(x, y, artifact, fraction=fraction, classes=classes, seed=seed)
