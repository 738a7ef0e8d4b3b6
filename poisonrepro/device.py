"""Where this process trains and crafts: ``default_device``.

A CUDA GPU where there is one, else the CPU; ``POISONREPRO_DEVICE`` (``cpu``, ``cuda``,
``cuda:1``) overrides it. Every notebook, the colophon and the arithmetic in force
(``precision.in_force``) ask this one function, so a run on a GPU machine uses the GPU without
being told, and ``POISONREPRO_DEVICE=cpu`` keeps it on the CPU.
"""
from __future__ import annotations

import os

import torch

ENV = "POISONREPRO_DEVICE"


def default_device() -> torch.device:
    """``POISONREPRO_DEVICE`` where set (an error names it if it is not a device here), else
    ``cuda`` where a CUDA device is available, else ``cpu``. Results come back to the CPU, and
    cache keys do not depend on the device."""
    requested = os.environ.get(ENV, "").strip()
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"{ENV}={requested!r}: allowed values are 'cpu', 'cuda' and 'cuda:N' "
                         f"(N in [0, {max(torch.cuda.device_count() - 1, 0)}]), or unset for the GPU "
                         "where there is one") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{ENV}={requested!r}: allowed values are 'cpu', 'cuda' and 'cuda:N'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"{ENV}={requested}: no CUDA device here (unset it, or set it to cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{ENV}={requested}: allowed cuda:N with N in [0, {torch.cuda.device_count() - 1}]")
    return device
