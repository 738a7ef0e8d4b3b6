import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror (POISONREPRO_DATA); tests that need real data skip without it."""
    d = os.environ.get("POISONREPRO_DATA")
    if not d or not (Path(d) / "cifar10-jpeg.tar.gz").exists():
        pytest.skip("POISONREPRO_DATA does not point at the offline data mirror")
    return Path(d)


@pytest.fixture
def isolated_artifacts(tmp_path, monkeypatch):
    """A fresh artifact cache and figures folder; the clean-data cache stays shared."""
    monkeypatch.setenv("POISONREPRO_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("POISONREPRO_FIGURES", str(tmp_path / "figures"))
    return tmp_path
