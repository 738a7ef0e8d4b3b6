"""Helpers every notebook uses: start a run, and the colophon."""
from __future__ import annotations

import os
import platform
import subprocess
import time

import torch

from . import paths

_START = time.time()


def start(profile: str) -> float:
    """Called in each notebook's config cell; notes the wall-clock start."""
    global _START
    _START = time.time()
    return _START


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.repo_root(),
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "poisonrepro", "pyproject.toml"], cwd=paths.repo_root(),
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+local changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _cache_summary() -> str:
    from .cache import EVENTS
    hits = sum(1 for e in EVENTS if e[2] == "hit")
    return f"artifact cache: {hits} reused, {len(EVENTS) - hits} computed in this run"


def colophon(profile: str) -> str:
    import numpy, sklearn, pandas  # noqa: E401
    lines = [f"git commit:  {git_commit()}", f"profile:     {profile}", f"device:      {device_name()}",
             f"python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, "
             f"scikit-learn {sklearn.__version__}, pandas {pandas.__version__}",
             f"wall time:   {time.time() - _START:.0f} s ({_cache_summary()})"]
    return "\n".join(lines)
