"""Files on disk, written atomically and read back verified: the artifact cache's storage layer.

- ``atomic_write``: a temporary file in the target's folder, then ``os.replace``: a run killed at
  any moment leaves the finished file or nothing.
- ``save_tensors`` / ``save_json`` / ``save_array``: each file gets a sidecar ``<file>.sha256``
  holding the sha256 of its bytes, written before the file is moved into place (a file whose
  sidecar is missing or disagrees was never finished, or was damaged after).
- ``load_tensors`` / ``load_json`` / ``load_array``: read the file only after its bytes match the
  sidecar. A mismatch, a truncated or empty file, or a missing sidecar raises ``CorruptArtifact``
  naming the file; ``quarantine`` moves such a file aside (``<file>.corrupt-<time>``) so that
  the caller recomputes it and a person can still look at it.
- Every I/O error names the path it concerns (a full disk says which file it was writing).

Tensors are read with ``torch.load(..., weights_only=True)``: nothing is ever unpickled. This
module stores bytes and computes no result, so the cache's code hashes leave it out
(``cache.STORAGE_MODULES``): an edit here changes no cache key and stales no notebook.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

SIDECAR = ".sha256"


class CorruptArtifact(OSError):
    """A stored file that cannot be trusted: its bytes disagree with its checksum, it is
    truncated, or it has no checksum. The message names the file."""


def _named(exc: OSError, action: str, path: Path) -> OSError:
    """``exc`` again, with the path and what was being done in its message (``[Errno 28] No space
    left on device`` alone names nothing)."""
    if str(path) in str(exc):
        return exc
    named = type(exc)(exc.errno, f"{action} {path}: {exc.strerror or exc}") if exc.errno else \
        type(exc)(f"{action} {path}: {exc}")
    named.filename = str(path)
    return named


def sha256_bytes_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SIDECAR)


def atomic_write(path: Path, write: Callable[[Path], None], *, checksum: bool = False) -> Path:
    """Call ``write(tmp)`` and move ``tmp`` onto ``path`` in one step; ``checksum``: first store the
    sha256 of the written bytes in ``<path>.sha256``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise _named(exc, "cannot write", path) from exc
    try:
        write(Path(tmp))
        if checksum:
            digest = sha256_bytes_of(Path(tmp))
            atomic_write(sidecar(path), lambda t: t.write_text(digest + "\n"))
        os.replace(tmp, path)
    except OSError as exc:
        raise _named(exc, "cannot write", path) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def verify(path: Path) -> None:
    """Raise ``CorruptArtifact`` unless ``path``'s bytes match its sidecar checksum."""
    path = Path(path)
    side = sidecar(path)
    try:
        expected = side.read_text().strip() if side.is_file() else None
        actual = sha256_bytes_of(path)
    except OSError as exc:
        raise _named(exc, "cannot read", path) from exc
    if expected is None:
        raise CorruptArtifact(f"{path}: no checksum beside it ({side.name}); it was never finished or "
                              "predates checksums")
    if actual != expected:
        size = path.stat().st_size
        raise CorruptArtifact(f"{path}: sha256 {actual[:16]}... is not the {expected[:16]}... it was written "
                              f"with ({size:,} bytes now): the file was damaged after it was written")


def quarantine(path: Path, reason: BaseException | str) -> Path:
    """Move a corrupt ``path`` (and its sidecar) aside to ``<path>.corrupt-<time>``, warn naming
    both, and return where it went: the caller then recomputes it."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, aside)
        if sidecar(path).exists():
            os.replace(sidecar(path), sidecar(aside))
    except OSError as exc:
        raise _named(exc, "cannot move aside the corrupt file", path) from exc
    warnings.warn(f"corrupt artifact {path} ({reason}); moved aside to {aside.name} and recomputed",
                  stacklevel=3)
    return aside


def _checked_read(path: Path, read: Callable[[Path], object]) -> object:
    """``read(path)`` after ``verify``; a file that still fails to parse is corrupt too."""
    verify(path)
    try:
        return read(path)
    except OSError as exc:
        raise _named(exc, "cannot read", path) from exc
    except Exception as exc:  # torch's PytorchStreamReader, EOFError, a bad header: all name nothing
        raise CorruptArtifact(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:200]})") from exc


def save_tensors(path: Path, tensors: dict) -> Path:
    clean = {k: (v.detach().cpu().contiguous() if isinstance(v, torch.Tensor) else torch.as_tensor(v))
             for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: torch.save(clean, tmp), checksum=True)


def load_tensors(path: Path) -> dict:
    return _checked_read(path, lambda p: torch.load(p, map_location="cpu", weights_only=True))


def save_json(path: Path, obj) -> Path:
    text = json.dumps(obj, indent=1, sort_keys=True)
    return atomic_write(path, lambda tmp: tmp.write_text(text), checksum=True)


def load_json(path: Path):
    return _checked_read(path, lambda p: json.loads(p.read_text()))


def save_array(path: Path, array: np.ndarray) -> Path:
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    return atomic_write(path, write, checksum=True)


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    """An array saved by ``save_array``, verified; ``mmap=True`` maps it read-only instead of
    reading it into memory (a large clean dataset of which a notebook uses a few thousand rows)."""
    return _checked_read(path, lambda p: np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None))
