"""Anti-Backdoor Learning: Y. Li, X. Lyu, N. Koren, L. Lyu, B. Li, X. Ma, "Anti-Backdoor Learning:
Training Clean Models on Poisoned Data", NeurIPS 2021 (arXiv:2110.11571), Sec. 3 (Eq. 3-5),
following the repository bboylyg/ABL (``backdoor_isolation.py``, ``backdoor_unlearning.py``).

Backdoored samples are learned faster than clean ones (ABL-1). ABL trains in two stages:

- **Backdoor isolation** (0 <= t < T_te): local gradient ascent (LGA),

      L_LGA = E_(x,y) [ sign(l(f(x), y) - gamma) * l(f(x), y) ],

  which holds the training loss near gamma: samples the network learns fast cannot go below it,
  so their loss stays the lowest; then the ``isolation_ratio`` (1%) of training samples with the
  lowest loss is isolated as D_b. The repository applies the sign to the *batch-mean* loss
  (``loss_ascent = sign(loss - gamma) * loss``; its default "flooding", |l - gamma| + gamma, has the
  same gradient); so does ``lga_loss``. gamma = 0.5, T_te = 10 (BackdoorBench: 20).
- **Backdoor unlearning** (T_te <= t < T): global gradient ascent (GGA),

      L_GGA = E_(x,y) in D_c [ l(f(x), y) ]  -  E_(x,y) in D_b [ l(f(x), y) ],

  which the repository runs as two phases: fine-tuning on the rest D_c (60 epochs), then gradient
  ascent on D_b alone (minimising -l; 5 epochs at lr 5e-4).

The isolation agrees with the repository: ``backdoor_isolation.py`` (``compute_loss_value``) ranks
the losses in *ascending* order (``np.argsort(np.array(losses_record))``, "in ascending order") and
``isolate_data`` takes the first 1%, the lowest-loss samples, as the paper says (Sec. 3); only the
repository's earlier version of the file (commit 3522945) sorted them in descending order
(``np.argsort(-np.array(losses_record))``), since corrected (commit fe9ff40).
Its unlearning script names the isolated file differently (``-isolation``, hyphens) from the one the
isolation script writes (``_isolation``); here both phases share the indices in memory.
The repository's first unlearning epoch only tests, so its 5 epochs at batch 64 on the 500
isolated images are 4 x 8 = 32 ascent steps: ``unlearning_recipe`` fixes the step count, so that
a smaller training set (fewer isolated images) keeps the paper's amount of ascent.

Every phase is ``train.train_victim`` with its own loss (``loss_fn``), so the training loop is the
project's one; the isolated subset is ``trimmed_loss.lowest_loss_subset`` at the isolation ratio.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import train as T
from ..registry import register_defense
from .trimmed_loss import lowest_loss_subset

GAMMA = 0.5
ISOLATION_RATIO = 0.01


def check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not gamma >= 0 or not np.isfinite(gamma):
        raise ValueError(f"gamma={gamma!r}: LGA's loss threshold must be a finite number >= 0 (the paper: 0.5)")
    return float(gamma)


def check_isolation_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio < 1:
        raise ValueError(f"isolation_ratio={ratio!r}: the share of training samples isolated must lie in (0, 1) "
                         "(the paper: 0.01)")
    return float(ratio)


def lga_loss(gamma: float = GAMMA):
    """Local gradient ascent on the batch-mean cross-entropy: descent above gamma, ascent below."""
    gamma = check_gamma(gamma)

    def loss(logits, labels):
        ce = F.cross_entropy(logits, labels)
        return torch.sign(ce - gamma) * ce
    return loss


def ascent_loss(logits, labels):
    """The unlearning phase's loss on the isolated samples: the negative cross-entropy."""
    return -F.cross_entropy(logits, labels)


@dataclass(frozen=True)
class ABLSchedule:
    """The three phases as ``train.VictimRecipe``s (epochs, learning rate, augmentation each) and
    ABL's two numbers."""
    isolation: T.VictimRecipe
    finetune: T.VictimRecipe
    unlearning: T.VictimRecipe
    gamma: float = GAMMA
    isolation_ratio: float = ISOLATION_RATIO

    def __post_init__(self):
        check_gamma(self.gamma)
        check_isolation_ratio(self.isolation_ratio)


@dataclass
class ABLResult:
    model: nn.Module
    isolated: np.ndarray                                 # indices of D_b
    isolation_losses: torch.Tensor                       # every sample's loss when it was isolated
    ascent_steps: int = 0                                # isolation steps whose batch loss was below gamma


@register_defense("anti_backdoor_learning", paper="Li et al. 2021", notebook="11_abl",
                  summary="isolate the lowest-loss 1% under local gradient ascent, then fine-tune on the rest and "
                          "unlearn the isolated samples by gradient ascent",
                  defends=[("causative", "integrity", "targeted"), ("causative", "integrity", "indiscriminate")])
def anti_backdoor_learning(model: nn.Module, images, labels, schedule: ABLSchedule, *, seed: int = 0,
                           on_isolation_step=None, on_phase=None) -> ABLResult:
    """ABL on the (possibly poisoned) training set: ``model`` trained from scratch with LGA for the
    isolation epochs, D_b isolated, then fine-tuned on the rest and unlearned on D_b.
    ``on_isolation_step(step, total)`` is called after every isolation step (e.g.
    ``tracking.EpochLosses``, the losses of the samples after every LGA epoch);
    ``on_phase(name, model)`` is called after each phase ("isolation", "finetune", "unlearning"),
    e.g. to score the model there."""
    x, y = T.as_nchw(images), torch.as_tensor(labels).long()
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    lga, ascents = lga_loss(schedule.gamma), []

    def counted(logits, labels):  # LGA, counting the steps where it ascends
        loss = lga(logits, labels)
        ascents.append(bool(loss < 0))
        return loss
    T.train_victim(model, x, y, schedule.isolation, seed=seed, desc="ABL isolation (LGA)", on_step=on_isolation_step,
                   loss_fn=counted)
    phase = on_phase if on_phase is not None else (lambda name, m: None)
    phase("isolation", model)
    losses = T.per_sample_losses(model, x, y)[0]
    isolated = lowest_loss_subset(losses.numpy(), schedule.isolation_ratio)
    rest = np.setdiff1d(np.arange(len(y)), isolated)
    T.train_victim(model, x[rest], y[rest], schedule.finetune, seed=seed + 1, desc="ABL fine-tuning")
    phase("finetune", model)
    # fp32 whatever the precision in force: the ascent's steps (lr 5e-4) are below bf16's resolution
    # of the weights, so under bf16 autocast the forward pass would not see them (a planted backdoor
    # survived 32 such steps under bf16 and not under fp32: tests/test_abl.py)
    T.train_victim(model, x[isolated], y[isolated], schedule.unlearning, seed=seed + 2, desc="ABL unlearning",
                   loss_fn=ascent_loss, precision="fp32")
    phase("unlearning", model)
    return ABLResult(model.eval(), isolated, losses, sum(ascents))


def constant(recipe: T.VictimRecipe, **fields) -> T.VictimRecipe:
    """``recipe`` with a constant learning rate (no warm-up, no decay) and ``fields`` changed: the
    repository's unlearning phase."""
    return replace(recipe, schedule="steps", milestones=(), warmup=0.0, **fields)


def unlearning_recipe(recipe: T.VictimRecipe, isolated: int, steps: int) -> T.VictimRecipe:
    """``recipe`` (see ``constant``) run for exactly ``steps`` ascent steps on ``isolated`` samples:
    ``train_victim`` takes full batches only, or the whole set when it is smaller than a batch."""
    if isolated < 1 or steps < 1:
        raise ValueError(f"isolated={isolated}, steps={steps}: need at least one isolated sample and one step")
    return replace(recipe, epochs=steps / max(1, isolated // recipe.batch_size))
