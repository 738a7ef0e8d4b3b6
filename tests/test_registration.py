"""A paper registers its own datasets (poisonrepro.registration): loaded by name, files checked
against their sha256, a labeled stand-in where the real data are missing, no silent re-registration."""
import copy
import hashlib
import sys

import numpy as np
import pytest

from poisonrepro import data as D
from poisonrepro import evaluation as EV
from poisonrepro import registration as R

TOY = "toy-digits.npz"


@pytest.fixture(autouse=True)
def registry_copy(monkeypatch, tmp_path):
    """Each test registers into copies of the registries, so nothing leaks into other tests."""
    monkeypatch.setattr(D, "DATASETS", dict(D.DATASETS))
    monkeypatch.setattr(D, "KNOWN_SHA256", copy.deepcopy(D.KNOWN_SHA256))
    monkeypatch.setattr(R, "_REGISTERED", {})
    monkeypatch.setattr(R, "STANDINS", {})
    monkeypatch.setenv("POISONREPRO_RAW", str(tmp_path / "raw"))  # nothing is downloaded into the repository


def _toy_file(folder, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.savez(folder / TOY, x=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), y=np.arange(12) % 3)
    return hashlib.sha256((folder / TOY).read_bytes()).hexdigest()


def load_toy(split="train", data_dir=None, download=False):
    with np.load(D.fetch("toy", TOY, data_dir, download=download)) as f:
        return D.ArrayDataset(f["x"], f["y"], ("a", "b", "c"), f"toy ({TOY})")


def _tiny_standin(split="train"):
    return D.ArrayDataset(np.zeros((6, 32, 32, 3), np.uint8), np.arange(6) % 3, ("a", "b", "c"), "zeros")


def test_a_dataset_registered_from_outside_is_loaded_by_name_and_a_wrong_file_is_refused(tmp_path, monkeypatch):
    sha = _toy_file(tmp_path / "data")
    monkeypatch.setenv("POISONREPRO_DATA", str(tmp_path / "data"))
    R.register_dataset("toy", D.Dataset({TOY: D.RawFile("https://example.invalid/toy-digits.npz", sha)}, load_toy),
                       standin=R.Standin("zeros", _tiny_standin))
    ds = D.load("toy")
    assert len(ds) == 12 and ds.source == f"toy ({TOY})"  # the real file, not the stand-in
    assert D.fetch("toy", TOY) == tmp_path / "data" / TOY
    _toy_file(tmp_path / "data", seed=1)  # same name, other bytes
    with pytest.raises(D.ChecksumError, match=f"{TOY}: sha256 .* is not the expected {sha}"):
        D.load("toy")  # refused, never replaced by the stand-in
    with pytest.raises(D.ChecksumError):
        D.fetch("toy", TOY)


def test_data_py_alone_would_not_check_a_dataset_registered_after_its_import(tmp_path, monkeypatch):
    """Why register_dataset also extends KNOWN_SHA256: data.py computes it once, at import, and
    verify_sha256 passes a file whose name it does not know. If data.py ever derives it from
    DATASETS at call time, this test fails and that step of registration can go."""
    _toy_file(tmp_path / "data")
    monkeypatch.setenv("POISONREPRO_DATA", str(tmp_path / "data"))
    D.DATASETS["toy"] = D.Dataset({TOY: D.RawFile("", "0" * 64)}, load_toy)  # a line added by hand
    assert D.fetch("toy", TOY).exists()  # the wrong hash goes unnoticed


def test_the_standin_replaces_missing_data_and_carries_its_label(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONREPRO_DATA", str(tmp_path / "empty"))
    R.register_dataset("toy", D.Dataset({TOY: D.RawFile("https://example.invalid/toy-digits.npz", "a" * 64)}, load_toy),
                       standin=R.Standin("zeros for the toy digits", _tiny_standin))
    with pytest.warns(UserWarning, match="toy: the real data are missing"):
        ds = D.load("toy", split="test")
    assert ds.source.startswith("STAND-IN: zeros for the toy digits, not toy") and len(ds) == 6
    assert D.DATA_USED[ds.source]  # the colophon's data line names it
    with pytest.raises(D.DataMissingError, match=f"toy: {TOY} not found"):
        D.load("toy", allow_standin=False)
    R.register_dataset("bare", D.Dataset({"bare.npz": D.RawFile("", "b" * 64)}, lambda **_: D.fetch("bare", "bare.npz")),
                       standin=None)
    with pytest.raises(D.DataMissingError):
        D.load("bare", download=False)  # no stand-in: the loader's error, saying how to get the file


def test_registering_twice_is_idempotent_and_other_contents_are_refused():
    line = D.Dataset({TOY: D.RawFile("", "a" * 64)}, load_toy)
    standin = R.Standin("zeros", _tiny_standin)
    first = R.register_dataset("toy", line, standin=standin)
    assert R.register_dataset("toy", line, standin=standin) is first  # the module imported again
    with pytest.raises(ValueError, match="'toy'.*already registered with other contents"):
        R.register_dataset("toy", D.Dataset({TOY: D.RawFile("", "c" * 64)}, load_toy), standin=standin)
    with pytest.raises(ValueError, match="already registered with other contents"):
        R.register_dataset("toy", line, standin=R.Standin("other label", _tiny_standin))
    with pytest.raises(ValueError, match="'cifar10'.*name is taken"):
        R.register_dataset("cifar10", line, standin=standin)
    with pytest.raises(ValueError, match="'cifar10-jpeg.tar.gz' is already registered with sha256 5c5c63"):
        R.register_dataset("c10", D.Dataset({"cifar10-jpeg.tar.gz": D.RawFile("", "d" * 64)}, load_toy), standin=None)
    with pytest.raises(ValueError, match="file 'x.bin': needs a data.RawFile with a sha256 of 64"):
        R.register_dataset("x", D.Dataset({"x.bin": D.RawFile("", "8/255")}, load_toy), standin=None)
    with pytest.raises(ValueError, match="name='SVHN'"):
        R.register_dataset("SVHN", line, standin=None)
    with pytest.raises(ValueError, match="non-empty label"):
        R.register_dataset("y", line, standin=R.Standin(" ", _tiny_standin))
    assert "x" not in D.DATASETS and "c10" not in D.DATASETS  # refused before anything was added


def test_mnist_resized_to_32x32_rgb_stands_in_for_svhn(mirror):
    ds = R.mnist_as_svhn("test")
    mnist = D.load_mnist("test")
    assert ds.x.shape == (10_000, 32, 32, 3) and ds.x.dtype == np.uint8 and np.array_equal(ds.y, mnist.y)
    assert (ds.x[..., 0] == ds.x[..., 2]).all()  # grey digits in three channels
    assert abs(ds.x.mean() - mnist.x.mean()) < 2  # resizing keeps the ink (the border is black in both)


def test_cifar10_regrouped_relabels_into_the_groups_and_refuses_bad_groups(monkeypatch):
    y = np.repeat(np.arange(10), 3)
    fake = D.ArrayDataset(np.arange(30, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8), y,
                          D.CIFAR10_CLASSES, "fake")
    monkeypatch.setattr(D, "load_cifar10", lambda split="train": fake)
    ds = R.cifar10_regrouped({"pet": ("cat", "dog"), "vehicle": ("automobile", "truck")})("test")
    assert ds.classes == ("pet", "vehicle") and np.bincount(ds.y).tolist() == [6, 6]
    cat, dog, car = D.class_index("cat"), D.class_index("dog"), D.class_index("automobile")
    assert set(ds.x[ds.y == 0, 0, 0, 0]) == set(np.flatnonzero((y == cat) | (y == dog)))  # the right images moved
    assert set(ds.x[ds.y == 1, 0, 0, 0]) >= set(np.flatnonzero(y == car))
    assert "pet = cat+dog" in ds.source
    with pytest.raises(ValueError, match="unknown class 'kitten'"):
        R.cifar10_regrouped({"pet": ("kitten",)})
    with pytest.raises(ValueError, match="each CIFAR-10 class in one group"):
        R.cifar10_regrouped({"a": ("cat",), "b": ("cat", "dog")})


def test_a_papers_datasets_module_feeds_evaluate_poisons_by_import_path(tmp_path, monkeypatch, mirror):
    """The pattern of papers/<paper>/datasets.py: register at import, bind an evaluation dataset."""
    (tmp_path / "zz_paper_datasets.py").write_text(
        "from poisonrepro import data as D, registration as R\n"
        "R.register_dataset('svhn_demo', D.Dataset({'train_32x32.mat': D.RawFile('http://ufldl.stanford.edu/housenumbers/"
        "train_32x32.mat', 'e' * 64)}, lambda split='train', **kw: D.fetch('svhn_demo', 'train_32x32.mat', download=False)),\n"
        "                   standin=R.Standin('MNIST digits resized to 32x32 RGB', R.mnist_as_svhn))\n"
        "SVHN = R.evaluation_dataset('svhn_demo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "zz_paper_datasets", raising=False)
    ds = EV.dataset_of("zz_paper_datasets:SVHN")
    with pytest.warns(UserWarning, match="STAND-IN: MNIST digits"):
        x, y = ds.training_set(5)
    assert x.shape == (50, 3, 32, 32) and x.dtype.is_floating_point is False and np.bincount(y.numpy()).tolist() == [5] * 10
    tx, ty = ds.test_set(20)
    assert tx.shape == (20, 3, 32, 32) and ds.test_images([0, 1]).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"svhn_demo: per_class=10000: must lie in \[1, "):
        ds.training_set(10_000)
