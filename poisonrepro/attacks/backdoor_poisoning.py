"""The poisoning step shared by the trigger backdoors of notebook 11 (BadNets, blend, SIG): put
a trigger on a share of the training set and, for a dirty-label attack, relabel those images as
the target class; at test time the trigger on a non-target image should send it to the target
class (the attack success rate). Each attack module supplies only its trigger
(``apply(images, generator) -> images``, uint8 in and out); this module draws the poisoned
indices, applies it, and builds the triggered test set.

Conventions (Li et al., "Anti-Backdoor Learning", NeurIPS 2021, repository bboylyg/ABL, and
BackdoorBench): the poisoning rate is a share of the *whole* training set. Dirty-label attacks
poison ``round(rate * N)`` images drawn from the non-target classes and relabel them. Clean-label
attacks (SIG, the clean-label backdoor) follow the repository's ``data_loader.py``
(``DatasetBD.addTrigger``, ``target_type == 'cleanLabel'``): a random ``rate`` share of *all*
indices is drawn (``np.random.permutation(len(dataset))[0: int(len(dataset) * inject_portion)]``)
and only those of the target class get the trigger, labels kept; so at rate 0.1 on a balanced
10-class set about 10% of the target class (1% of the set) is poisoned, never the whole class.
Images are uint8 [N, C, H, W] (0-255, as they are stored); the input is never modified in place,
so a clean training set that lives in a cache stays clean.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import torch


def check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"rate={rate!r}: the poisoning rate is a share of the training set in [0, 1) "
                         "(e.g. 0.1 for 10%)")
    return float(rate)


def check_target(target_class: int, num_classes: int) -> int:
    if isinstance(target_class, bool) or not isinstance(target_class, numbers.Integral) \
            or not 0 <= target_class < num_classes:
        raise ValueError(f"target_class={target_class!r}: must be a class index in [0, {num_classes})")
    return int(target_class)


def check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("images: a uint8 tensor [N, C, H, W] of 0-255 pixels (as stored), "
                         f"got {getattr(images, 'dtype', type(images).__name__)} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    return images


def check_trigger_fits(image_hw: tuple[int, int], trigger_hw: tuple[int, int]):
    if trigger_hw[0] > image_hw[0] or trigger_hw[1] > image_hw[1] or min(trigger_hw) < 1:
        raise ValueError(f"a {trigger_hw[0]}x{trigger_hw[1]} trigger does not fit a "
                         f"{image_hw[0]}x{image_hw[1]} image")


@dataclass
class BackdoorSet:
    images: torch.Tensor   # uint8 [N, C, H, W], the poisoned training set
    labels: torch.Tensor   # [N], the target class on dirty-label poisons
    poisoned: torch.Tensor  # indices of the poisoned samples
    target_class: int


def poison_training_set(images: torch.Tensor, labels, apply: Callable, *, rate: float, target_class: int,
                        num_classes: int = 10, clean_label: bool = False, seed: int = 0) -> BackdoorSet:
    """Training images with the trigger ``apply`` (a copy; the input is untouched): for a
    dirty-label attack ``round(rate * N)`` images drawn from the other classes and relabelled;
    for a clean-label attack the target-class images among ``round(rate * N)`` drawn from the
    whole set (bboylyg/ABL, ``data_loader.py``), labels kept."""
    images = check_images(images)
    rate, target_class = check_rate(rate), check_target(target_class, num_classes)
    labels = torch.as_tensor(labels).long()
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    count = round(rate * len(images))
    gen = torch.Generator().manual_seed(seed)
    if clean_label:
        # the repository's draw: a rate share of every index, then the target-class ones among it
        drawn = torch.randperm(len(labels), generator=gen)[:count]
        chosen = drawn[labels[drawn] == target_class].sort().values
    else:
        pool = torch.nonzero(labels != target_class).flatten()
        if count > len(pool):
            raise ValueError(f"rate={rate}: {count} poisons, but only {len(pool)} non-target training images "
                             "to draw them from")
        chosen = pool[torch.randperm(len(pool), generator=gen)[:count]].sort().values
    out_images, out_labels = images.clone(), labels.clone()
    if len(chosen):
        out_images[chosen] = apply(images[chosen], gen)
        if not clean_label:
            out_labels[chosen] = target_class
    return BackdoorSet(out_images, out_labels, chosen, target_class)


def triggered_test_set(images: torch.Tensor, labels, apply: Callable, target_class: int, *, seed: int = 1):
    """The test images of the other classes with the trigger: what the attack success rate is
    measured on (their true labels returned too)."""
    images, labels = check_images(images), torch.as_tensor(labels).long()
    keep = labels != target_class
    return apply(images[keep], torch.Generator().manual_seed(seed)), labels[keep]


def attack_success_rate(predictions, target_class: int) -> float:
    """The share of triggered non-target test images classified as the target class."""
    p = torch.as_tensor(predictions)
    return float((p == target_class).float().mean()) if len(p) else float("nan")
