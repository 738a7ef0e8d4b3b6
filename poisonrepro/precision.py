"""The arithmetic that training and crafting run in: float32, or bfloat16 autocast where the
hardware has it.

``POISONREPRO_PRECISION`` chooses for the victim trainer (``train.train_victim``, every from-scratch
victim, surrogate and substitute): ``auto`` (the default) trains under bf16 autocast
(``torch.autocast``) where the processor computes bf16 natively (oneDNN's AVX512-BF16 or AMX on a
CPU, ``torch.ops.mkldnn._is_mkldnn_bf16_supported``; a CUDA device that supports bf16) and in
fp32 elsewhere; ``bf16`` or ``fp32`` force one. Autocast computes convolutions and matrix
products in bf16 and keeps weights, optimizer state, batch-norm statistics and the loss in fp32.
The crafting loop (``attacks.crafting.craft_perturbations``) takes its precision as an argument,
fp32 unless an attack opts in.

Trained networks differ between the two, so the precision in force is part of every cached
artifact's name (``cache.ArtifactCache.path``: ``<key>-bf16.pt``; fp32 artifacts keep their
names) and of every colophon (``notebook.colophon``). The bench
(``python -m poisonrepro.bench``) times both on the host and reports which one ``auto`` picks.
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch

PRECISIONS = ("fp32", "bf16")
CHOICES = ("auto", *PRECISIONS)
ENV = "POISONREPRO_PRECISION"


def requested() -> str:
    """``POISONREPRO_PRECISION`` as given (``auto`` when unset); a clear error for anything else."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={os.environ.get(ENV)!r}: allowed values are {', '.join(CHOICES)}")
    return value


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` computes bf16 natively (not emulated in fp32, which is slower)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve(device: torch.device | str | None = None) -> str:
    """The precision in force on ``device`` (default: the CPU): ``fp32`` or ``bf16``."""
    device_type = torch.device(device).type if device is not None else "cpu"
    choice = requested()
    if choice == "auto":
        return "bf16" if native_bf16(device_type) else "fp32"
    return choice


def in_force() -> str:
    """The precision of this process's training and crafting, on ``device.default_device()``."""
    from .device import default_device
    return resolve(default_device())


def autocast(device: torch.device | str | None = None, precision: str | None = None):
    """A context that runs its code under bf16 autocast on ``device`` when ``precision`` (default:
    the one in force there) is bf16, and does nothing for fp32."""
    device_type = torch.device(device).type if device is not None else "cpu"
    precision = precision or resolve(device_type)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: one of {PRECISIONS}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)


def describe(device: torch.device | str | None = None) -> str:
    """For the colophon and the bench: the precision in force and why."""
    device_type = torch.device(device).type if device is not None else "cpu"
    choice, used = requested(), resolve(device_type)
    how = "bf16 autocast" if used == "bf16" else "fp32"
    if choice == "auto":
        why = "native bf16 here" if used == "bf16" else "no native bf16 here"
        return f"{how} ({ENV}=auto: {why})"
    return f"{how} ({ENV}={choice})"
