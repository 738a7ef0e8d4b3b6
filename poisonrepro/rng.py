"""The process's global random generators (Python's ``random``, NumPy's legacy ``np.random`` and
torch's, CPU and CUDA), kept from leaking between units of work.

A cached stage or a trial that drew from whatever state the kernel happened to be in would give
one number on a cold run and another on a run that resumed from the cache (the earlier stages,
loaded instead of computed, no longer draw), or when two notebooks share an artifact and run in
another order. ``seeded`` runs a block from a seed of its own and gives the generators back as
they were, so a unit of work is a function of its seed and leaves no trace on the caller's draws.
"""
from __future__ import annotations

import contextlib
import hashlib
import random

import numpy as np
import torch


def seed_from(*parts: str) -> int:
    """A 63-bit seed from text (a stage's kind and cache key): sha256, so any change of text
    gives unrelated draws."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2 ** 63


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators (torch's on every CUDA device too);
    a fresh ``torch.Generator`` at ``seed`` for the caller's own draws."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def preserved():
    """Give the global generators back, after the block, as they were before it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    # every CUDA device's too (this starts CUDA where there is one: a block may draw on it)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with every global generator seeded from ``seed``, then give them back."""
    with preserved():
        seed_everything(seed)
        yield
