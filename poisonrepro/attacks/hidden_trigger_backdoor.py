"""The hidden-trigger backdoor: A. Saha, A. Subramanya, H. Pirsiavash, "Hidden Trigger Backdoor
Attacks", AAAI 2020, in the setting of the benchmark of A. Schwarzschild, M. Goldblum, A.
Gupta, J. P. Dickerson, T. Goldstein, "Just How Toxic is Data Poisoning? A Unified Benchmark for
Backdoor and Data Poisoning Attacks", ICML 2021 (repository aks2203/poisoning-benchmark,
``poison_crafting/craft_poisons_htbd.py``).

The poisons look like (and are labelled as) base-class images, but sit, in the surrogate's
penultimate feature space f, on top of *patched source images*: images of another class with
the trigger pasted (in the benchmark, training images of the target's class). A victim that
learns the poisons' label for that region of feature space then classifies a patched target as
the base class, and the trigger never appears in the training data. Saha et al., Eq. 1 and
Algorithm 1:

    min_{z_1..z_K}  sum_k || f(z_k) - f(s~_{a(k)}) ||_2^2
    s.t.            ||z_k - b_k||_inf <= eps,  z_k in [0, 1]

with b_k the base images (Saha et al.'s "target" images), s~_j = paste(s_j, patch) the patched
sources, and a(.) a one-to-one assignment of poisons to patched sources recomputed at every
iteration by nearest pairs in feature space ("find the closest pair, remove it, repeat":
``greedy_matching``). Each iteration is a projected gradient step, z <- clip_[0,1](clip_{b +-
eps}(z - lr * grad)) (plain gradient descent, not signed).

The benchmark's settings (``craft_poisons_htbd.py``, defaults; ``poison_crafting/README.md``:
"the defaults are set to the values that were used"): eps = 8/255; 5000 iterations of plain
gradient descent (``input_bases - lr1 * input_bases.grad``, no optimizer object) on the summed
squared feature distance ``torch.norm(feat1 - feat2) ** 2``; lr 0.001, multiplied by 0.95 **
(iteration // 2000) on CIFAR-10 (0.5 ** (iteration // 1000) otherwise, Saha et al.'s ImageNet
schedule); no random start; the surrogate in eval mode behind the input normalisation
(``--normalize`` on), by default ``pretrained_models/ResNet18_CIFAR100_A.pth``, its penultimate
features (``net(x, penu=True)``); the sources: as many training images of the target's class as
there are bases (an unseeded ``np.random.choice`` without replacement among the class's 5000
training images), patched with a 5x5 trigger (``triggers/htbd.png`` resized) at x = y = 32 - 5 - 5 = 22;
all bases in one batch (``batch_size = base_imgs.shape[0]``: the ``--batch_size 100`` argument
is unused), so the matching runs over all 500 poisons and 500 sources at once; an early stop
when the summed loss falls below 10.

Deviations, and why:

- The matching. The benchmark (and Saha et al.'s ``generate_poison.py``, "FIND CLOSEST PAIR
  WITHOUT REPLACEMENT") takes the smallest entry of the K x K distance matrix K times but
  sets only that one *entry* to 1e5, not its row and column: it visits the K smallest
  entries, a poison met more than once keeps its farthest of them and a poison never met
  keeps its previous target. It also writes the matched source features into the array it
  matches from, which persists across iterations, so sources get duplicated or lost over the
  iterations, and exact ties between duplicated rows make ``nonzero().squeeze()`` return
  several pairs, which then index the wrong rows. Here the assignment is what the paper
  describes: a fresh greedy one-to-one matching of poisons to patched sources every
  iteration (``matching="greedy"``); ``"optimal"`` (the Hungarian assignment of
  ``scipy.optimize.linear_sum_assignment`` on squared distances) and ``"fixed"`` (poison i with
  source i) are there for comparison.
- Batches: the objective matches each batch of poisons with the sources at the same indices,
  so ``batch_size=None`` (all poisons in one batch, the default) is the benchmark; a batch of
  100 is Saha et al.'s mini-batch of K = 100 pairs.
- The loop: the crafting runs on ``crafting.craft_perturbations`` (``step_rule="gd"``, plain
  projected gradient descent, and a callable ``decay`` for the 0.95-per-2000 staircase); the
  projection is the benchmark's clamp onto the eps-box and then [0, 1]. The early stop at a
  summed loss below 10 is not implemented (it would need near-exact collisions of all 500
  poisons).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .. import triggers
from ..registry import register_attack
from . import crafting

MATCHINGS = ("greedy", "optimal", "fixed")


# --------------------------------------------------------------------------- the matching
def greedy_matching(dist: torch.Tensor) -> torch.Tensor:
    """Greedy one-to-one assignment for a distance matrix ``dist`` [P, S] (rows: poisons,
    columns: sources, S >= P): repeatedly take the closest remaining (poison, source) pair and
    remove both, as Saha et al. describe. Returns ``assignment`` [P] (long): the source of
    each poison, all distinct. Ties go to the lowest row, then the lowest column (the first
    minimum in row-major order).

    Computed in rounds rather than one pair at a time: a pair that is each other's nearest
    among the free rows and columns (with ties broken by index, a strict order) is taken by
    the one-at-a-time greedy too, since no entry of its row or column can be taken before it;
    so every round takes all such mutual pairs at once (the smallest remaining entry is always
    one, so each round makes progress): the same assignment, in a few vectorised rounds."""
    d = dist.detach().to("cpu", torch.float64).numpy()
    n_rows, n_cols = d.shape
    if n_cols < n_rows:
        raise ValueError(f"dist: {n_rows} poisons but only {n_cols} sources; need at least one source per poison")
    assignment = np.empty(n_rows, dtype=np.int64)
    free_rows, free_cols = np.arange(n_rows), np.arange(n_cols)
    while len(free_rows):
        sub = d[np.ix_(free_rows, free_cols)]
        nearest_col = sub.argmin(1)          # argmin takes the first minimum: the lowest index on ties
        nearest_row = sub.argmin(0)
        mutual = nearest_row[nearest_col] == np.arange(len(free_rows))
        assignment[free_rows[mutual]] = free_cols[nearest_col[mutual]]
        taken_cols = np.zeros(len(free_cols), dtype=bool)
        taken_cols[nearest_col[mutual]] = True
        free_rows, free_cols = free_rows[~mutual], free_cols[~taken_cols]
    return torch.from_numpy(assignment)


def optimal_matching(dist: torch.Tensor) -> torch.Tensor:
    """The one-to-one assignment minimising the summed *squared* distance (the crafting
    objective): ``scipy.optimize.linear_sum_assignment``. ``dist`` [P, S], S >= P."""
    squared = dist.detach().to("cpu", torch.float64).numpy() ** 2
    rows, cols = linear_sum_assignment(squared)
    assignment = np.empty(len(rows), dtype=np.int64)
    assignment[rows] = cols
    return torch.from_numpy(assignment)


def match(dist: torch.Tensor, matching: str = "greedy") -> torch.Tensor:
    """The source of each poison under ``matching`` "greedy" | "optimal" | "fixed" (poison i
    with source i)."""
    if matching == "greedy":
        return greedy_matching(dist)
    if matching == "optimal":
        return optimal_matching(dist)
    if matching == "fixed":
        return torch.arange(dist.shape[0])
    raise ValueError(f"matching={matching!r}: unknown; allowed: {', '.join(map(repr, MATCHINGS))}")


def matched_distance(poison_features: torch.Tensor, source_features: torch.Tensor,
                     matching: str = "greedy") -> torch.Tensor:
    """Per-poison squared feature distance ||f(z_k) - f(s~_a(k))||^2 after matching, [P]."""
    with torch.no_grad():
        assignment = match(torch.cdist(poison_features, source_features), matching).to(source_features.device)
    return ((poison_features - source_features[assignment]) ** 2).sum(1)


# --------------------------------------------------------------------------- features
def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def patched_source_features(model, source_images: torch.Tensor, patch: torch.Tensor,
                            location: tuple[int, int] = triggers.HTBD_LOCATION, batch_size: int = 500) -> torch.Tensor:
    """f(paste(s, patch)) for every source, [S, D], in eval mode (the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    x, y = location
    try:
        out = []
        for start in range(0, len(source_images), batch_size):
            chunk = triggers.paste_patch(source_images[start:start + batch_size], patch, x, y)
            chunk = chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk
            out.append(model.features(chunk.to(_device(model))))
        return torch.cat(out)
    finally:
        model.train(was_training)


def feature_matching_objective(source_features: torch.Tensor, matching: str = "greedy"):
    """The crafting loop's objective: for a batch of poisons (indices ``idx``), match them with
    the patched sources at the same indices (``matching``, without gradient) and return each
    poison's squared feature distance to its match, [B]."""
    def objective(net, x_poison, idx):
        feats = net.features(x_poison.to(source_features.device))
        sources = source_features[idx.to(source_features.device)]
        with torch.no_grad():  # the assignment is a fresh, non-differentiable choice per step
            assignment = match(torch.cdist(feats.detach(), sources), matching).to(sources.device)
        return ((feats - sources[assignment]) ** 2).sum(1).to(x_poison.device)
    return objective


def benchmark_decay(lr_decay: float = 0.95, decay_every: int = 2000):
    """The benchmark's step-size staircase, ``lr * lr_decay ** (iteration // decay_every)``, as
    a ``decay(step, steps) -> factor`` for the crafting loop."""
    def decay(step: int, steps: int) -> float:
        return lr_decay ** (step // decay_every)
    return decay


# --------------------------------------------------------------------------- the attack
def _check(model, base_images, source_images, patch, location, eps, steps, lr, step_rule, lr_decay,
           decay_every, matching, batch_size, base_labels, source_labels):
    if not isinstance(eps, numbers.Real) or not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: an L-inf budget must lie in (0, 1] on the [0, 1] pixel scale "
                         f"(did you mean 8/255?)")
    if not isinstance(base_images, torch.Tensor) or base_images.dim() != 4 or len(base_images) == 0:
        raise ValueError("base_images: need a non-empty tensor [N, C, H, W] (uint8 or floats in [0, 1])")
    if not isinstance(patch, torch.Tensor) or patch.dim() != 3:
        raise ValueError("patch: need a tensor [C, h, w] (see triggers.make_patch)")
    triggers.patch_mask(tuple(base_images.shape[1:]), tuple(patch.shape), *triggers.as_location(location))
    if not callable(getattr(model, "features", None)):
        raise ValueError("model: needs a .features(x) method giving the penultimate features "
                         "(every poisonrepro.models.Classifier has one)")
    if not isinstance(source_images, torch.Tensor) or source_images.dim() != 4 or len(source_images) == 0:
        raise ValueError("source_images: need a non-empty tensor [N, C, H, W] (uint8 or floats in [0, 1])")
    if source_images.shape != base_images.shape:
        raise ValueError(f"source_images: shape {tuple(source_images.shape)}, need that of base_images "
                         f"{tuple(base_images.shape)} (one patched source per poison, as the benchmark)")
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r}: need an integer >= 0")
    if not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"lr={lr}: need a step size > 0")
    if step_rule not in crafting.STEP_RULES:
        raise ValueError(f"step_rule={step_rule!r}: not offered by the crafting loop; allowed: "
                         f"{', '.join(map(repr, crafting.STEP_RULES))}")
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay={lr_decay}: need a factor in (0, 1]")
    if decay_every is not None and (not isinstance(decay_every, numbers.Integral) or decay_every < 1):
        raise ValueError(f"decay_every={decay_every!r}: need an integer >= 1 or None")
    if matching not in MATCHINGS:
        raise ValueError(f"matching={matching!r}: unknown; allowed: {', '.join(map(repr, MATCHINGS))}")
    if batch_size is not None and (not isinstance(batch_size, numbers.Integral) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r}: need an integer >= 1 or None (all poisons in one batch)")
    if base_labels is not None and source_labels is not None:
        shared = set(torch.as_tensor(base_labels).tolist()) & set(torch.as_tensor(source_labels).tolist())
        if shared:
            raise ValueError(f"source_labels: class(es) {sorted(shared)} also among the base labels; the "
                             f"patched sources must come from the target's class, not the base class")


@register_attack("hidden_trigger_backdoor",
                 paper="Saha, Subramanya & Pirsiavash 2020, Hidden Trigger Backdoor Attacks, AAAI "
                       "(benchmark: Schwarzschild et al. 2021)",
                 notebook="04_witches_brew",
                 summary="base images perturbed to collide in feature space with patched target-class "
                         "images (greedy one-to-one re-matching every step); the trigger appears only "
                         "at test time",
                 timing="poisoning", goal="targeted", knowledge="gray-box", universality="universal",
                 influence="causative", violation="integrity", specificity="targeted")
def craft_poisons(model, base_images: torch.Tensor, source_images: torch.Tensor, patch: torch.Tensor, *,
                  location: tuple[int, int] = triggers.HTBD_LOCATION, eps: float = 8 / 255, steps: int = 5000,
                  lr: float = 0.001, step_rule: str = "gd", lr_decay: float = 0.95, decay_every: int | None = 2000,
                  matching: str = "greedy", batch_size: int | None = None, base_labels=None, source_labels=None,
                  seed: int = 0, on_step=None, return_result: bool = False):
    """Hidden-trigger backdoor poisons (floats in [0, 1], [N, C, H, W], each within ``eps`` of
    its base) for ``base_images`` against the patched ``source_images`` (as many as bases,
    images of the target's class; the ``patch`` is pasted at ``location`` = (x, y)), by
    ``steps`` projected steps on the surrogate's penultimate features (``model.features``).

    ``step_rule="gd"`` with ``lr`` and ``lr * lr_decay ** (step // decay_every)`` is the
    benchmark's plain gradient descent (``decay_every=None`` keeps lr constant); "pgd" (signed
    steps of ``lr`` pixels) and the loop's other rules also work. ``matching`` "greedy" (the
    paper) | "optimal" | "fixed"; ``batch_size=None`` matches all poisons at once (the
    benchmark). ``base_labels`` and ``source_labels``, when given, must share no class.
    ``return_result=True`` also returns the loop's ``CraftResult`` (its ``loss_history`` is
    the mean matched squared distance per step)."""
    _check(model, base_images, source_images, patch, location, eps, steps, lr, step_rule, lr_decay,
           decay_every, matching, batch_size, base_labels, source_labels)
    batch_size = len(base_images) if batch_size is None else int(batch_size)
    decay = "none" if decay_every is None or lr_decay == 1 else benchmark_decay(lr_decay, decay_every)
    was_training = model.training
    model.eval()
    try:
        sources = patched_source_features(model, source_images, patch, location, batch_size)
        result = crafting.craft_perturbations(base_images, feature_matching_objective(sources, matching),
                                              models=model, eps=eps, norm="linf", steps=steps, step_rule=step_rule,
                                              lr=lr, decay=decay, init="zeros", batch_size=batch_size,
                                              on_step=on_step, seed=seed, desc="hidden-trigger backdoor")
    finally:
        model.train(was_training)
    poisons = result.perturbed(base_images)
    return (poisons, result) if return_result else poisons
