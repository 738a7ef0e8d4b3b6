"""Nothing stale, nothing corrupt (issue 24 §3) and a reviewer's run (§2), by fault injection:
a damaged, truncated, empty or unfinished artifact is moved aside and recomputed, never loaded;
I/O errors name their path; a notebook that fails is marked failed and none of its older claims
stand in for it; long cells report progress in a batch run; the report pairs claims by id and
never calls two claims at different settings the same; the data a run used are fingerprinted;
the GPU is used wherever there is one."""
import errno
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from poisonrepro import cache as C
from poisonrepro import data as D
from poisonrepro import device, paths, precision, progress, reproduce, store
from poisonrepro.results import CLAIM_COLUMNS
from poisonrepro.summary import ANOTHER_SETTING, SAME, compare_with, write_summary

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- corrupt artifacts
@pytest.fixture
def cached(tmp_path):
    """An artifact cache in ``tmp_path`` holding one stored artifact, its path, and a counter of computations."""
    cache = C.ArtifactCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"poisons": torch.linspace(0, 1, 4096).reshape(64, 64)}
    first = cache.tensors("poisons", "k1", compute)
    return cache, cache.path("poisons", "k1", ".pt"), compute, calls, first


def _damage_in_place(path: Path):
    """4 KiB of the file overwritten, as a failing disk or a stray write would: the size stays."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = b"\xff" * min(4096, len(data) - mid)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fault", ["overwritten", "truncated", "empty", "no checksum"])
def test_a_corrupt_artifact_is_moved_aside_named_and_recomputed_never_loaded(cached, fault):
    cache, path, compute, calls, first = cached
    if fault == "overwritten":
        _damage_in_place(path)
    elif fault == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif fault == "empty":
        path.write_bytes(b"")
    else:
        store.sidecar(path).unlink()
    C.EVENTS.clear()
    with pytest.warns(UserWarning, match=f"corrupt artifact {path}"):
        again = cache.tensors("poisons", "k1", compute)
    assert len(calls) == 2, "the corrupt artifact was loaded instead of recomputed"
    assert torch.equal(again["poisons"], first["poisons"])
    assert C.EVENTS == [("poisons", "k1", "corrupt"), ("poisons", "k1", "miss")]
    aside = [p for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith(store.SIDECAR)]
    assert len(aside) == 1, aside  # kept for a person to look at
    store.verify(path)  # the recomputed one is whole, with its checksum
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.tensors("poisons", "k1", compute)  # and is now loaded silently
    assert len(calls) == 2


def test_a_corrupt_json_artifact_is_recomputed(tmp_path):
    cache = C.ArtifactCache(tmp_path)
    cache.json("trial", "k", lambda: {"hits": 3})
    path = cache.path("trial", "k", ".json")
    path.write_text('{"hits": 30}')  # a plausible edit: parses fine, but is not what was written
    with pytest.warns(UserWarning, match="corrupt artifact"):
        assert cache.json("trial", "k", lambda: {"hits": 3}) == {"hits": 3}


def test_a_corrupt_clean_dataset_is_decoded_again(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "clean_cache_dir", lambda: tmp_path)
    decodes = []

    def decode():
        decodes.append(1)
        return np.arange(3 * 8 * 8 * 3, dtype=np.uint8).reshape(3, 8, 8, 3), np.array([0, 1, 2]), "test set"
    x, y, _ = D._clean_cached("tiny", decode)
    _damage_in_place(tmp_path / "tiny.x.npy")
    with pytest.warns(UserWarning, match="tiny.x.npy"):
        x2, y2, _ = D._clean_cached("tiny", decode)
    assert len(decodes) == 2 and np.array_equal(np.asarray(x2), x) and np.array_equal(y2, y)


def test_io_errors_name_their_path(tmp_path):
    target = tmp_path / "sub" / "model.pt"

    def disk_full(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OSError, match=f"{target}.*No space left on device") as info:
        store.atomic_write(target, disk_full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert [p for p in (tmp_path / "sub").iterdir()] == []  # the temporary file is gone too
    with pytest.raises(OSError, match=str(tmp_path / "missing.pt")):
        store.load_tensors(tmp_path / "missing.pt")
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    with pytest.raises(OSError, match=str(blocked / "model.pt")):
        store.save_tensors(blocked / "model.pt", {"w": torch.zeros(1)})


def test_storage_and_progress_code_changes_no_cache_key_and_imports_nothing_that_computes(tmp_path):
    root = tmp_path / "pkg"
    shutil.copytree(paths.PACKAGE_DIR, root / "poisonrepro", ignore=shutil.ignore_patterns("__pycache__"))
    before = C.code_hash("poisonrepro.train", root=root)
    for name in C.STORAGE_MODULES:
        module = root / "poisonrepro" / (name.split(".")[1] + ".py")
        module.write_text(module.read_text() + "\n\ndef an_edit():\n    return 1\n")
        assert not C._imported_modules(name, module, root), f"{name} imports a poisonrepro module"
    C._code_hash.cache_clear()
    assert C.code_hash("poisonrepro.train", root=root) == before
    (root / "poisonrepro" / "rng.py").write_text((root / "poisonrepro" / "rng.py").read_text() + "\nX = 1\n")
    C._code_hash.cache_clear()
    assert C.code_hash("poisonrepro.train", root=root) != before  # a computing module still counts


# ---------------------------------------------------------------- the report pairs claims by id
def _claim_rows(rows):
    return pd.DataFrame([{**{c: "" for c in CLAIM_COLUMNS}, "notebook": "10_dpa", "role": "headline",
                          "claim": "certified accuracy", "metric": "certified", **r} for r in rows])


def test_the_report_never_calls_claims_at_different_settings_the_same(tmp_path):
    committed = _claim_rows([{"id": "DPA-2:certified", "setting": "k = 50", "verdict": "fails", "measured": 0.236},
                             {"id": "DPA-2:vote", "setting": "k = 50", "verdict": "holds", "measured": 0.6}])
    smoke = _claim_rows([{"id": "DPA-2:vote", "setting": "k = 50", "verdict": "holds", "measured": 0.5},
                         {"id": "DPA-2:certified", "setting": "k = 2", "verdict": "fails", "measured": 0.1}])
    out = compare_with(smoke, committed)
    assert out.comparison.tolist() == [SAME, ANOTHER_SETTING]
    assert not out.changed.any()
    # and in REPORT.md: the k = 2 row shows the committed k = 50 value as such, never "yes"
    (tmp_path / "run" / "10_dpa").mkdir(parents=True)
    (tmp_path / "committed" / "10_dpa").mkdir(parents=True)
    smoke.drop(columns="notebook").to_csv(tmp_path / "run" / "10_dpa" / "claims.csv", index=False)
    committed.drop(columns="notebook").to_csv(tmp_path / "committed" / "10_dpa" / "claims.csv", index=False)
    write_summary("cpu", root=tmp_path / "committed")
    _, report = write_summary("smoke", root=tmp_path / "run", committed=tmp_path / "committed" / "summary.csv")
    row = next(line for line in report.read_text().splitlines() if "`DPA-2:certified`" in line and line.startswith("|"))
    assert "0.236 (fails) at k = 50 | not compared: another setting |" in row and "| yes |" not in row


# ---------------------------------------------------------------- a failed notebook, progress, data
def _notebook(path: Path, *sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def reviewers_checkout(tmp_path, monkeypatch):
    """notebooks/, build/ and the published figures/cpu/ in a temporary folder."""
    notebooks, build, published = tmp_path / "notebooks", tmp_path / "build", tmp_path / "figures" / "cpu"
    notebooks.mkdir()
    monkeypatch.setattr(reproduce, "NOTEBOOK_DIR", notebooks)
    monkeypatch.setattr(paths, "build_dir", lambda profile: build / profile)
    monkeypatch.setattr(paths, "published_dir", lambda notebook=None: published / notebook if notebook else published)
    monkeypatch.setenv("POISONREPRO_FIGURES", str(build))
    monkeypatch.setenv("POISONREPRO_PROGRESS", "1")  # make test turns the bars off; this test needs them
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout's package
    for var in ("POISONREPRO_PROFILE", "POISONREPRO_BATCH"):
        monkeypatch.setenv(var, "")
    return notebooks, build / "smoke", published


def test_a_failed_notebook_is_marked_failed_and_its_older_claims_never_stand_in(reviewers_checkout, capsys):
    notebooks, build, published = reviewers_checkout
    claims = _claim_rows([{"id": "X-1:rate", "setting": "", "verdict": "holds", "measured": 0.9}]).drop(columns="notebook")
    # an earlier, successful run of 05 left its claims in build/
    (build / "05_x").mkdir(parents=True)
    claims.to_csv(build / "05_x" / "claims.csv", index=False)
    # and the tests left claims of a notebook this run never ran, with no record of their run
    (build / "07_z").mkdir(parents=True)
    claims.to_csv(build / "07_z" / "claims.csv", index=False)
    _notebook(notebooks / "05_x.ipynb", "raise RuntimeError('a cell broke')")
    _notebook(notebooks / "06_y.ipynb",
              "from poisonrepro.progress import bar\nimport time\n"
              "for _ in bar(range(3), desc='victims'):\n    time.sleep(0.4)",
              "print('ok')")
    assert reproduce.run("smoke", ["05_x", "06_y"], tail_interval=0.2) == 1
    out, err = capsys.readouterr()
    assert "05_x failed: RuntimeError: a cell broke" in err and "FAILED: 05_x" in err
    assert "... victims: 100%" in out and "3/3" in out  # the long cell's progress reached the log
    runs = reproduce.read_runs(build / "runs.csv").set_index("notebook")
    assert runs.loc["05_x", "status"] == "failed" and "a cell broke" in runs.loc["05_x", "error"]
    assert runs.loc["06_y", "status"] == "done"
    assert not (build / "05_x" / "claims.csv").exists()
    report = (build / "REPORT.md").read_text()
    assert "**FAILED** in this run" in report and "05_x (RuntimeError: a cell broke)" in report
    assert "X-1:rate" not in report and "05_x" not in pd.read_csv(build / "summary.csv").notebook.tolist()
    assert "with no record of their run in `runs.csv`, e.g. written by the tests): 07_z." in report
    # the progress went to a log beside the run, never into the executed notebook
    executed = nbformat.read(build.parent / "smoke" / "06_y.ipynb", as_version=4)
    assert not any("victims" in str(o) for c in executed.cells for o in c.get("outputs", []))
    assert reproduce.measured_seconds("smoke").keys() == {"06_y"}  # the next run's estimate, from runs.csv


def test_the_progress_log_keeps_the_newest_complete_update():
    assert progress.newest_line("a:  10%|#    | 1/10 [00:01<00:09]\ra:  20%|##   | 2/10 [00:02<00:08]\rb: 3") == \
        "a:  20%|##   | 2/10 [00:02<00:08]"
    assert progress.newest_line("") is None
    assert progress.newest_line("\x1b[Avictims: 0/5 [00:00<?, ?it/s]\n") == "victims: 0/5 [00:00<?, ?it/s]"  # nested bars


def test_the_colophon_fingerprints_the_data_and_the_report_flags_other_data(tmp_path, monkeypatch):
    from poisonrepro import notebook
    monkeypatch.setattr(D, "DATA_USED", {})
    D.load_digits()
    a = notebook.data_used()
    assert a.startswith("scikit-learn digits [") and len(D.DATA_USED["scikit-learn digits"]) == 12
    assert D._fingerprint(np.zeros(3), np.zeros(3)) != D._fingerprint(np.zeros(3), np.ones(3))
    assert notebook.DATA_LABEL in notebook.colophon("smoke")
    runs = pd.DataFrame([{**{c: "" for c in reproduce.RUN_COLUMNS}, "notebook": "10_dpa", "status": "done",
                          "data": "MNIST test (mnist/t10k-images-idx3-ubyte.gz) [aaaaaaaaaaaa]"}])
    theirs = runs.assign(data="MNIST test (MNIST/raw/t10k-images-idx3-ubyte) [bbbbbbbbbbbb]")
    (tmp_path / "10_dpa").mkdir()
    _claim_rows([{"id": "X:r", "verdict": "holds"}]).drop(columns="notebook").to_csv(tmp_path / "10_dpa" / "claims.csv",
                                                                                    index=False)
    _, report = write_summary("cpu", root=tmp_path, runs=runs, committed_runs=theirs)
    assert "Data differ from the committed run's for 10_dpa" in report.read_text()
    assert "| 10_dpa | done |  |  | MNIST test (mnist/t10k-images-idx3-ubyte.gz) [aaaaaaaaaaaa] | **no**: " in (
        report.read_text())
    # the published report is the committed run: no column compares it with itself
    _, report = write_summary("cpu", root=tmp_path, runs=runs)
    assert "committed run?" not in report.read_text() and "unknown" not in report.read_text()
    assert "| 10_dpa | done |  |  | MNIST test (mnist/t10k-images-idx3-ubyte.gz) [aaaaaaaaaaaa] |\n" in report.read_text()


# ---------------------------------------------------------------- the GPU trap
def test_the_gpu_is_used_wherever_there_is_one_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("POISONREPRO_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.default_device().type == "cuda"
    monkeypatch.setattr(precision, "native_bf16", lambda kind: kind == "cuda")
    monkeypatch.setenv(precision.ENV, "auto")
    assert precision.in_force() == "bf16"  # the arithmetic of the device in use, not the CPU's
    monkeypatch.setenv("POISONREPRO_DEVICE", "cpu")
    assert device.default_device().type == "cpu" and precision.in_force() == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("POISONREPRO_DEVICE")
    assert device.default_device().type == "cpu"
    monkeypatch.setenv("POISONREPRO_DEVICE", "gpu")
    with pytest.raises(ValueError, match="POISONREPRO_DEVICE='gpu': allowed values are 'cpu', 'cuda'"):
        device.default_device()
    monkeypatch.setenv("POISONREPRO_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="POISONREPRO_DEVICE=cuda: no CUDA device here"):
        device.default_device()


def test_make_reproduce_never_defaults_to_the_paper_profile_on_a_gpu_machine(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100'\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    env.pop("PROFILE", None)
    dry = subprocess.run(["make", "-n", "-o", ".venv/.installed", "reproduce"], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "--profile cpu" in dry and "--profile paper" not in dry
