"""The real datasets of notebooks 13 and 14 (papers/unlearnable_clusters/datasets.py,
papers/tue/datasets.py): each loader decodes a miniature archive in its dataset's real layout into
images and labels, a file whose sha256 is not the published one is refused, and offline the
registry hands out the labelled stand-in. (The real files are not on this machine.)"""
import copy
import importlib
import io
import tarfile
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from poisonrepro import data as D
from poisonrepro import registration as R

COLORS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """The modules register into copies of the registries (restored after each test, so that no
    other test sees these datasets), the decoded arrays go to a temporary cache, and nothing is
    downloaded."""
    monkeypatch.setattr(D, "DATASETS", dict(D.DATASETS))
    monkeypatch.setattr(D, "KNOWN_SHA256", copy.deepcopy(D.KNOWN_SHA256))
    monkeypatch.setattr(R, "_REGISTERED", {})
    monkeypatch.setattr(R, "STANDINS", {})
    global TD, UD
    TD, UD = (importlib.reload(importlib.import_module(f"poisonrepro.papers.{m}.datasets"))
              for m in ("tue", "unlearnable_clusters"))
    monkeypatch.setenv("POISONREPRO_DERIVED", str(tmp_path / "derived"))  # the decoded arrays' cache
    monkeypatch.setenv("POISONREPRO_RAW", str(tmp_path / "raw"))
    monkeypatch.delenv("POISONREPRO_DATA", raising=False)

    def offline(*_, **__):
        raise OSError("no network in the tests")
    monkeypatch.setattr(urllib.request, "urlretrieve", offline)


def _jpeg(color, size=(40, 24)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), color, np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _tar(path, members: dict):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            blob = blob.encode() if isinstance(blob, str) else blob
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def _colour_class(ds) -> np.ndarray:
    """Which of COLORS each decoded image is (its dominant channel)."""
    return np.asarray(ds.x, float).mean((1, 2)).argmax(1)


def _refused(loader, folder, **kwargs):
    with pytest.raises(D.ChecksumError, match="sha256"):
        loader(data_dir=folder, **kwargs)


def test_svhn_decodes_its_mat_files_with_the_digit_0_as_label_0(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [10], [9]], np.uint8)})
    ds = TD.load_svhn("test", tmp_path, verify=False)
    assert ds.x.shape == (5, 32, 32, 3) and ds.x.dtype == np.uint8
    assert np.array_equal(ds.x[1], x[..., 1]) and ds.y.tolist() == [0, 1, 2, 0, 9]
    _refused(TD.load_svhn, tmp_path, split="test")
    with pytest.raises(ValueError, match="split='extra'"):
        TD.load_svhn("extra", tmp_path, verify=False)


def test_cifar100_decodes_its_binary_records_with_the_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([np.array([[3, 0], [3, 99], [7, 42], [0, 5]], np.uint8), pixels.reshape(4, -1)], 1)
    _tar(tmp_path / "cifar-100-binary.tar.gz", {"cifar-100-binary/train.bin": records.tobytes(),
                                                 "cifar-100-binary/fine_label_names.txt": "\n".join(TD.CIFAR100_CLASSES)})
    ds = TD.load_cifar100("train", tmp_path, verify=False)
    assert ds.y.tolist() == [0, 99, 42, 5] and ds.classes[99] == "worm" and len(ds.classes) == 100
    assert np.array_equal(ds.x[2], pixels[2].transpose(1, 2, 0))
    _refused(TD.load_cifar100, tmp_path)


def test_pets_takes_the_official_lists_and_names_the_breeds(tmp_path):
    names = {"Abyssinian_1": 1, "Abyssinian_2": 1, "american_bulldog_1": 2, "beagle_10": 3}
    _tar(tmp_path / "images.tar.gz", {f"images/{n}.jpg": _jpeg(COLORS[c - 1]) for n, c in names.items()})
    _tar(tmp_path / "annotations.tar.gz", {
        "annotations/trainval.txt": "".join(f"{n} {c} 1 1\n" for n, c in names.items() if n != "beagle_10"),
        "annotations/test.txt": "#Image CLASS-ID SPECIES BREED ID\nbeagle_10 3 2 1\n"})
    ds = UD.load_pets("train", tmp_path, size=16, verify=False)
    assert ds.x.shape == (3, 16, 16, 3) and ds.classes == ("Abyssinian", "american_bulldog")
    assert ds.y.tolist() == [0, 0, 1] and _colour_class(ds).tolist() == [0, 0, 1]
    assert UD.load_pets("test", tmp_path, size=16, verify=False).y.tolist() == [2]
    _refused(UD.load_pets, tmp_path)


def test_flowers_take_training_and_validation_ids_for_train(tmp_path):
    _tar(tmp_path / "102flowers.tgz", {f"jpg/image_{i:05d}.jpg": _jpeg(COLORS[i % 3]) for i in range(1, 7)})
    savemat(tmp_path / "imagelabels.mat", {"labels": np.array([[1, 2, 3, 1, 2, 3]])})
    savemat(tmp_path / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[4]]), "tstid": np.array([[3, 5, 6]])})
    train = UD.load_flowers102("train", tmp_path, size=8, verify=False)
    assert train.y.tolist() == [0, 1, 0] and len(train.classes) == 102
    assert _colour_class(train).tolist() == [1, 2, 1]  # image i has COLORS[i % 3]
    assert UD.load_flowers102("test", tmp_path, size=8, verify=False).y.tolist() == [2, 1, 2]
    _refused(UD.load_flowers102, tmp_path)


def test_cars_read_the_devkits_annotations_and_class_names(tmp_path):
    def annotations(rows):
        a = np.zeros((1, len(rows)), dtype=[("fname", "O"), ("class", "O")])
        for j, (f, c) in enumerate(rows):
            a[0, j] = (f, np.array([[c]], np.uint8))
        return {"annotations": a}
    files = {"00001.jpg": 1, "00002.jpg": 2}
    _tar(tmp_path / "cars_train.tgz", {f"cars_train/{f}": _jpeg(COLORS[c - 1]) for f, c in files.items()})
    meta, train = io.BytesIO(), io.BytesIO()
    savemat(meta, {"class_names": np.array([["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]], dtype=object)})
    savemat(train, annotations(list(files.items())))
    _tar(tmp_path / "car_devkit.tgz", {"devkit/cars_meta.mat": meta.getvalue(), "devkit/cars_train_annos.mat": train.getvalue()})
    ds = UD.load_cars("train", tmp_path, size=8, verify=False)
    assert ds.y.tolist() == [0, 1] and ds.classes == ("AM General Hummer SUV 2000", "Acura RL Sedan 2012")
    assert _colour_class(ds).tolist() == [0, 1]
    _refused(UD.load_cars, tmp_path)


def test_food101_takes_its_meta_lists_and_a_cached_load_reads_no_archive(tmp_path):
    images = {f"food-101/images/{c}/{i}.jpg": _jpeg(COLORS[k]) for k, c in enumerate(("apple_pie", "sushi")) for i in (1, 2)}
    _tar(tmp_path / "food-101.tar.gz", {**images, "food-101/meta/classes.txt": "apple_pie\nsushi\n",
                                        "food-101/meta/train.txt": "apple_pie/1\nsushi/2\nsushi/1\n",
                                        "food-101/meta/test.txt": "apple_pie/2\n"})
    ds = UD.load_food101("train", tmp_path, size=8, verify=False)
    assert ds.classes == ("apple_pie", "sushi") and ds.y.tolist() == [0, 1, 1]
    opened = []
    real_open = tarfile.open
    tarfile.open = lambda *a, **k: opened.append(a) or real_open(*a, **k)
    try:
        again = UD.load_food101("train", tmp_path, size=8, verify=False)
    finally:
        tarfile.open = real_open
    assert not opened and again.classes == ds.classes and np.array_equal(again.x, ds.x)


def test_sun397_takes_its_first_partition(tmp_path):
    _tar(tmp_path / "SUN397.tar.gz", {"SUN397/a/abbey/sun_a.jpg": _jpeg(COLORS[0]), "SUN397/a/abbey/sun_b.jpg": _jpeg(COLORS[0]),
                                      "SUN397/b/bakery/shop/sun_c.jpg": _jpeg(COLORS[1])})
    with zipfile.ZipFile(tmp_path / "Partitions.zip", "w") as z:
        z.writestr("ClassName.txt", "/a/abbey\n/b/bakery/shop\n")
        z.writestr("Training_01.txt", "/a/abbey/sun_a.jpg\n/b/bakery/shop/sun_c.jpg\n")
        z.writestr("Testing_01.txt", "/a/abbey/sun_b.jpg\n")
    ds = UD.load_sun397("train", tmp_path, size=8, verify=False)
    assert ds.classes == ("a/abbey", "b/bakery/shop") and ds.y.tolist() == [0, 1]
    assert _colour_class(ds).tolist() == [0, 1]


def test_a_missing_image_is_an_error_not_a_smaller_dataset(tmp_path):
    _tar(tmp_path / "images.tar.gz", {"images/Abyssinian_1.jpg": _jpeg(COLORS[0])})
    _tar(tmp_path / "annotations.tar.gz", {"annotations/trainval.txt": "Abyssinian_1 1 1 1\nAbyssinian_2 1 1 1\n"})
    with pytest.raises(D.ChecksumError, match="1 images of Pets train are missing"):
        UD.load_pets("train", tmp_path, verify=False)
    with pytest.raises(ValueError, match=r"size=4: .*\[8, 512\]"):
        UD.load_pets("train", tmp_path, size=4, verify=False)


@pytest.mark.parametrize("name", ["svhn", "cifar100", "pets", "cars", "flowers102", "food101", "sun397"])
def test_every_dataset_is_in_the_registry_with_its_url_and_published_sha256(name):
    line = D.DATASETS[name]
    assert line.files and all(raw.url.startswith("http") and len(raw.sha256) == 64 for raw in line.files.values())
    assert "TensorFlow Datasets" in line.note


def test_offline_the_registry_hands_out_the_labelled_standin(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("POISONREPRO_DATA", str(mirror))  # the stand-in is made from the mirror's CIFAR-10
    monkeypatch.delenv("POISONREPRO_DERIVED")  # and its decoded arrays shared with the other tests
    with pytest.warns(UserWarning, match="using the STAND-IN"):
        ds = D.load("pets", split="test", data_dir=tmp_path)
    assert ds.source.startswith("STAND-IN: CIFAR-10's cats and dogs") and ds.classes == ("cat", "dog")
    with pytest.raises(D.DataMissingError):
        D.load("pets", split="test", data_dir=tmp_path, allow_standin=False)
