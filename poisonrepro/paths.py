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
    """Where a run writes a notebook's figures, tables and claims: ``build/<profile>/<notebook>/``
    (git-ignored, beside the executed notebooks), or below ``POISONREPRO_FIGURES``. A run never
    writes the committed ``figures/cpu/``: ``make publish`` copies a ``cpu`` run there."""
    base = Path(os.environ.get("POISONREPRO_FIGURES", REPO_ROOT / "build")) / profile
    return base / notebook if notebook else base


def build_dir(profile: str) -> Path:
    """``build/<profile>/``: a ``make reproduce`` run's executed notebooks (and, by default, its
    figures, tables, claims, ``summary.csv`` and ``REPORT.md``)."""
    return REPO_ROOT / "build" / profile


#: the maintainers' published ``cpu`` run: committed notebooks' figures, tables, claims and report
PUBLISHED_PROFILE = "cpu"


def published_dir(notebook: str | None = None) -> Path:
    """``figures/cpu/``: the committed ``cpu`` run (``make publish`` writes it, nothing else)."""
    base = REPO_ROOT / "figures" / PUBLISHED_PROFILE
    return base / notebook if notebook else base
