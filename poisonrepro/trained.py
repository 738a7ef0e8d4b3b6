"""Trained networks as cache artifacts: a surrogate that a notebook trains once, as its own cached
stage (13's protector, 14's clean surrogate, 12's attacker), stored by ``state_artifact`` and rebuilt
by ``load`` in the trials that craft with it. Notebook 13 uses them; 12's and 14's experiments
still hold their own copies, to be moved here with their next full rerun (a change to their code,
or to a module they import, changes their cache keys and stales their committed runs)."""
from __future__ import annotations

import torch
from torch import nn

from .cache import ArtifactCache
from .surrogates import build


def state_artifact(net: nn.Module, **scores: float) -> dict:
    """``net`` as a cache artifact: its weights (``state.<name>``, contiguous, on the CPU) and
    ``scores`` (e.g. ``test_accuracy=0.7``) as tensors."""
    net = net.cpu().to(memory_format=torch.contiguous_format)
    return {**{f"state.{k}": v.contiguous() for k, v in net.state_dict().items()},
            **{k: torch.tensor(v) for k, v in scores.items()}}


def load(arch: str, stage: str, key: str, *, what: str, trainable: bool = False) -> nn.Module:
    """The ``arch`` network that ``state_artifact`` stored under ``stage``/``key``, in eval mode;
    its parameters require gradients only where ``trainable``. ``what`` names it in the error
    raised when it is not in the cache."""
    def missing():
        raise FileNotFoundError(f"{what} is not in the artifact cache (stage {stage!r}, key {key}): run its stage "
                                "first, with the same POISONREPRO_ARTIFACTS")
    state = ArtifactCache().tensors(stage, key, missing)
    net = build(arch, 0)
    net.load_state_dict({k[len("state."):]: v for k, v in state.items() if k.startswith("state.")})
    return net.eval().requires_grad_(trainable)
