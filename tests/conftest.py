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



def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a heavy check left out of `make test` (the CI's 20 minutes) and run by "
                                       "`make test-slow`: five paper dry runs, the dask cluster, the benches")
