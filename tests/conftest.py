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


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-tensor tests: with such tensors the threads'
    synchronisation costs more than it gives (several times slower with 2 on a busy host).
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Seconds each heavy scope took in the fresh-clone CI of 2026-11-23 (pytest --durations): a
# scheduling hint only. `make test` gives whole scopes (a notebook, a test file, a class) to its two
# workers in collection order, so the longest go first and no worker is left alone with one at the end.
HEAVY_SCOPES = {"notebooks/04_witches_brew.ipynb": 215, "TestDryRun_02_convex_polytope": 139,
                "TestDryRun_09_trimmed_loss": 114, "tests/test_executor.py": 115, "tests/test_pipeline.py": 75,
                "TestDryRun_11_abl": 69, "TestDryRun_03_metapoison": 66, "TestDryRun_01_poison_frogs": 60,
                "TestDryRun_04_witches_brew": 57, "notebooks/09_trimmed_loss.ipynb": 55, "TestDryRun_06_back_gradient": 50,
                "notebooks/03_metapoison.ipynb": 45, "tests/test_plan.py": 40, "tests/test_abl.py": 35}


def _scope_weight(item) -> int:
    nodeid = item.nodeid
    return max((s for name, s in HEAVY_SCOPES.items()
                if nodeid.startswith(name) or f"::{name}::" in nodeid), default=0)


def pytest_collection_modifyitems(config, items):
    # a stable sort: the items of one scope keep their order (a notebook's cells run in sequence)
    items.sort(key=lambda item: -_scope_weight(item))
