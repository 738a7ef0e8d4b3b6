"""Which perturbation each training image gets: the correspondences of Ren et al. 2023 (TUE), Table 2
and Table 5 (data-wise transferability), and Table 6 with its interpolation (transfer to another
dataset; artifacts TUE-T2, TUE-T5, TUE-T6, TUE-INT).

A sample-wise protection gives image i the perturbation delta_i crafted for it (``original``). The
swaps keep the set of perturbations and change who gets which:

- ``intra``: each image gets the perturbation of another image of its own class (a random
  permutation within each class): a perturbation that only works for its own image loses its effect,
  one that works as a class-wise shortcut keeps it;
- ``inter``: each class c takes over the perturbations of another class pi(c) (pi a random
  derangement of the classes; the images of c matched at random to those of pi(c)): the shortcut
  stays consistent within a class, but with another class's pattern.

Transfer (Table 6): the perturbations crafted on CIFAR-10 are given to the images of another dataset
class by class (target class k takes the perturbations of source class k, in a random order); where
the target class has more images than the source class has perturbations, the extra ones are
**interpolations** within the class, (1 - t) delta_a + t delta_b with a, b two random perturbations of
the class and t uniform in [0, 1] (the deck's slide "Interpolation for data-wise transferability":
CIFAR-10 has 5,000 images a class, SVHN 4,000-7,000). That the authors map by class and interpolate
this way is UNCONFIRMED (the deck shows the counts, not the rule).

Each producer (``swapped_training_set``, ``transferred_training_set``) is named by import path in an
evaluation spec (``evaluation.evaluate_poisons``), so the shared evaluation needs no change.
"""
from __future__ import annotations

import torch

from ...attacks import availability as AV
from ...cache import ArtifactCache
from ...evaluation import cifar10_training_set

SWAPS = ("original", "intra", "inter")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def derangement(classes: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of ``range(classes)`` that moves every class (``classes`` >= 2)."""
    if classes < 2:
        raise ValueError(f"classes={classes}: a derangement needs at least 2")
    while True:
        perm = torch.randperm(classes, generator=generator)
        if bool((perm != torch.arange(classes)).all()):
            return perm


def swap_sources(y: torch.Tensor, swap: str, seed: int = 0) -> torch.Tensor:
    """For each sample of a training set with labels ``y``, the index of the sample whose
    perturbation it gets under ``swap`` (module docstring)."""
    if swap not in SWAPS:
        raise ValueError(f"swap={swap!r}: allowed: {', '.join(SWAPS)}")
    y = torch.as_tensor(y).long()
    n = len(y)
    if swap == "original":
        return torch.arange(n)
    gen = _generator(seed)
    classes = y.unique()
    members = {int(c): torch.nonzero(y == c).flatten() for c in classes}
    source = torch.empty(n, dtype=torch.long)
    if swap == "intra":
        for idx in members.values():
            source[idx] = idx[torch.randperm(len(idx), generator=gen)]
        return source
    perm = derangement(len(classes), gen)
    for i, c in enumerate(classes.tolist()):
        donors = members[int(classes[perm[i]])]
        idx = members[c]
        order = torch.randperm(len(donors), generator=gen)
        # a donor class with fewer images than c: its perturbations are reused (balanced sets need none)
        source[idx] = donors[order[torch.arange(len(idx)) % len(donors)]]
    return source


def interpolate(delta: torch.Tensor, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` new perturbations from the rows of ``delta`` [M, ...] (M >= 1): (1 - t) delta_a +
    t delta_b with a, b drawn uniformly and t uniform in [0, 1]; returns them and the t of each."""
    m = len(delta)
    a, b = torch.randint(m, (count,), generator=generator), torch.randint(m, (count,), generator=generator)
    t = torch.rand(count, generator=generator)
    shape = (count,) + (1,) * (delta.dim() - 1)
    return (1 - t.view(shape)) * delta[a].float() + t.view(shape) * delta[b].float(), t


def transfer_levels(levels: torch.Tensor, source_y: torch.Tensor, target_y: torch.Tensor,
                    seed: int = 0) -> torch.Tensor:
    """The perturbations (int8 pixel levels [N_source, ...]) of a source set with labels
    ``source_y`` mapped onto a target set with labels ``target_y`` class by class, interpolated
    within the class where the target class is larger (module docstring): int8 [N_target, ...]."""
    source_y, target_y = torch.as_tensor(source_y).long(), torch.as_tensor(target_y).long()
    missing = sorted(set(target_y.tolist()) - set(source_y.tolist()))
    if missing:
        raise ValueError(f"target classes {missing} have no source class of the same index to take perturbations from")
    gen = _generator(seed)
    out = torch.empty((len(target_y),) + tuple(levels.shape[1:]), dtype=torch.int8)
    for c in target_y.unique().tolist():
        donors = levels[source_y == c]
        idx = torch.nonzero(target_y == c).flatten()
        taken = donors[torch.randperm(len(donors), generator=gen)[:len(idx)]]
        extra = len(idx) - len(taken)
        if extra > 0:
            mixed, _ = interpolate(donors, extra, gen)
            taken = torch.cat([taken, mixed.round().to(torch.int8)])  # between two in-budget levels: in budget
        out[idx] = taken
    return out


def _sample_wise(stage: str, key: str) -> dict:
    artifact = ArtifactCache().tensors(stage, key, AV._missing_noise)
    if bool(artifact["by_class"]):
        raise ValueError(f"the protection under key {key[:12]} is class-wise; the correspondences need sample-wise "
                         "noise")
    return artifact


def swapped_training_set(x: torch.Tensor, y: torch.Tensor, *, stage: str, key: str, swap: str,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The producer of an evaluation spec: the cached sample-wise noise (``stage``, ``key``), crafted
    for this training set, given to its images by ``swap``."""
    source = swap_sources(y, swap, seed)
    artifact = _sample_wise(stage, key)
    if len(artifact["groups"]) != len(y):
        raise ValueError(f"noise for {len(artifact['groups'])} images; the training set has {len(y)}")
    swapped = dict(artifact, groups=artifact["groups"][source])
    return AV.apply_noise(x, y, swapped)


def transferred_training_set(x: torch.Tensor, y: torch.Tensor, *, stage: str, key: str, source_per_class: int,
                             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The producer of an evaluation spec: the cached sample-wise noise crafted on the first
    ``source_per_class`` CIFAR-10 training images of each class, transferred onto the training set
    (``x``, ``y``) of another dataset by ``transfer_levels``."""
    artifact = _sample_wise(stage, key)
    _, source_y = cifar10_training_set(source_per_class)
    per_image = artifact["delta_levels"][artifact["groups"].long()]
    if len(per_image) != len(source_y):
        raise ValueError(f"noise for {len(per_image)} images; the source set has {len(source_y)}")
    levels = transfer_levels(per_image, source_y, y, seed)
    moved = {"delta_levels": levels, "by_class": torch.tensor(False), "groups": torch.arange(len(y)),
             "eps": artifact["eps"]}
    return AV.apply_noise(x, y, moved)
