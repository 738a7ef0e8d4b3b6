"""Artifact cache: models, poisons and results keyed by the hash of the config that made them.

Every write is atomic (a temporary file in the same folder, then ``os.replace``), so a run
killed at any moment leaves either the finished artifact or nothing, and the next run
resumes from what is finished. Tensors are saved as plain ``dict[str, Tensor]`` and read
back with ``torch.load(..., weights_only=True)``: nothing is ever unpickled.

The cache lives in ``data/derived/artifacts/``, apart from ``data/derived/clean/`` where
the decoded clean datasets are kept: poisoned data never lands in the clean-data cache.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import paths

#: (kind, key, "hit" | "miss") for every lookup in this process; the tests read it.
EVENTS: list[tuple[str, str, str]] = []


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` and move ``tmp`` onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_tensors(path: Path, tensors: dict) -> Path:
    clean = {k: (v.detach().cpu().contiguous() if isinstance(v, torch.Tensor) else torch.as_tensor(v))
             for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: torch.save(clean, tmp))


def load_tensors(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_json(path: Path, obj) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, sort_keys=True)))


def save_array(path: Path, array: np.ndarray) -> Path:
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    return atomic_write(path, write)


def load_array(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


class ArtifactCache:
    """``cache.tensors(kind, key, compute)`` returns the stored result or computes and stores it."""

    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else paths.artifact_dir()
        clean = paths.clean_cache_dir().resolve()
        if self.root.resolve() == clean or clean in self.root.resolve().parents:
            raise ValueError(f"the artifact cache may not live inside the clean-data cache {clean}")
        self.enabled = enabled

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def _lookup(self, kind, key, suffix, compute, save, load):
        path = self.path(kind, key, suffix)
        if self.enabled and path.exists():
            EVENTS.append((kind, key, "hit"))
            return load(path)
        EVENTS.append((kind, key, "miss"))
        value = compute()
        if self.enabled:
            save(path, value)
        return value

    def tensors(self, kind: str, key: str, compute: Callable[[], dict]) -> dict:
        """A ``dict[str, Tensor]`` artifact (model weights, poisons, per-target results)."""
        return self._lookup(kind, key, ".pt", compute, save_tensors, load_tensors)

    def json(self, kind: str, key: str, compute: Callable[[], dict]) -> dict:
        return self._lookup(kind, key, ".json", compute, save_json,
                            lambda p: json.loads(p.read_text()))
