"""Each training sample's loss after every epoch, for the papers about what a network fits first:
ABL's backdoors learned faster than clean samples (Li et al. 2021, Sec. 3, Fig. 1), trimmed loss's
bad labels fitted late (Shen and Sanghavi 2019, Sec. 4), and the near-zero training loss of
unlearnable examples (Huang et al. 2021, Fig. 1).

A loss pass over all 50,000 CIFAR-10 images costs about 4 s on 2 cores, a third of an epoch of the
fast victim recipe; a fixed random sample of the training set (``sample``) stands for the set at a
fraction of that. The sample is drawn from its own generator (the global ones are untouched, so
that tracking never changes the network it tracks), and ``tracked`` gives its indices: a
per-sample diagnostic such as the poison mask is indexed with it (``at_tracked``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import evaluation as EV
from . import models as M
from . import train as T


def tracked_indices(n: int, sample: int = 0) -> torch.Tensor:
    """The indices tracked in a training set of ``n`` samples: all of them (``sample`` 0 or >= n),
    or ``sample`` of them drawn at random (sorted; the same for every call with the same ``n``)."""
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 0:
        raise ValueError(f"track_sample={sample!r}: the number of samples tracked, an integer >= 0 (0: all)")
    if n < 1:
        raise ValueError(f"a training set of {n} samples: nothing to track")
    if sample == 0 or sample >= n:
        return torch.arange(n)
    return torch.as_tensor(np.sort(np.random.default_rng(n).choice(n, int(sample), replace=False)))


def at_tracked(result: dict, values) -> np.ndarray:
    """``values`` [N] (e.g. the poison mask) at ``result``'s tracked samples (all, where the result
    has no ``tracked``: it tracked every sample)."""
    v = np.asarray(values)
    return v[result["tracked"].numpy()] if "tracked" in result else v


class EpochLosses:
    """An ``on_step`` callback for ``train.train_victim``: after every epoch (and the last step),
    the loss of each tracked sample at its given label, and whether it is predicted (``fitted``).
    ``diagnostics(prefix)`` gives ``tracked`` [m], ``{prefix}_loss`` [epochs, m] and, with
    ``fitted``, ``{prefix}_fitted`` [epochs, m]."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                 sample: int = 0, fitted: bool = False):
        self.model, self.fitted = model, fitted
        self.indices = tracked_indices(len(y), sample)
        self.x, self.y = x[self.indices], torch.as_tensor(y)[self.indices]
        self.per_epoch = max(1, len(y) // batch_size)
        self.losses: list[torch.Tensor] = []
        self.predicted: list[torch.Tensor] = []

    def __call__(self, step: int, total: int) -> None:
        if step % self.per_epoch == 0 or step == total:
            loss, ok = T.per_sample_losses(self.model, self.x, self.y)
            self.losses.append(loss)
            self.predicted.append(ok)

    def diagnostics(self, prefix: str = "epoch") -> dict:
        if not self.losses:
            raise RuntimeError("EpochLosses: no epoch was tracked (was it passed to train_victim as on_step?)")
        out = {"tracked": self.indices, f"{prefix}_loss": torch.stack(self.losses)}
        if self.fitted:
            out[f"{prefix}_fitted"] = torch.stack(self.predicted)
        return out


@dataclass(frozen=True)
class LossTrackingLearner(EV.SupervisedLearner):
    """Plain supervised training (``evaluation.SupervisedLearner``) that records ``EpochLosses``
    of ``track_sample`` training samples (0: all), and with ``track_fitted`` whether each is fitted
    at its given label: diagnostics ``tracked``, ``epoch_loss`` and ``epoch_fitted``."""
    track_sample: int = 0
    track_fitted: bool = False

    def __post_init__(self):
        tracked_indices(1, self.track_sample)  # a bad sample size is refused before any training

    def train(self, x, y, recipe, seed, *, score=None):
        model = M.build_model(self.arch).to(T.default_device())
        tracker = EpochLosses(model, x, y, recipe.batch_size, sample=self.track_sample, fitted=self.track_fitted)
        T.train_victim(model, x, y, recipe, seed=seed, desc=f"victim {self.arch}, losses tracked", on_step=tracker)
        return model, tracker.diagnostics("epoch")
