"""Where things live: the repository root, data folders, the artifact cache, figures."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def repo_root() -> Path:
    return REPO_ROOT


def raw_dir() -> Path:
    """data/raw/: user-provided raw files and torchvision downloads."""
    return Path(os.environ.get("POISONREPRO_RAW", REPO_ROOT / "data" / "raw"))


def derived_dir() -> Path:
    """data/derived/ (git-ignored): decoded clean arrays and the artifact cache."""
    return Path(os.environ.get("POISONREPRO_DERIVED", REPO_ROOT / "data" / "derived"))


def clean_cache_dir() -> Path:
    """Decoded *clean* datasets only. Nothing poisoned is ever written below here."""
    return derived_dir() / "clean"


def artifact_dir() -> Path:
    """Models, crafted poisons and results, keyed by config hash (see ``poisonrepro.cache``)."""
    return Path(os.environ.get("POISONREPRO_ARTIFACTS", derived_dir() / "artifacts"))


def figures_dir(profile: str, notebook: str | None = None) -> Path:
    base = Path(os.environ.get("POISONREPRO_FIGURES", REPO_ROOT / "figures")) / profile
    return base / notebook if notebook else base
