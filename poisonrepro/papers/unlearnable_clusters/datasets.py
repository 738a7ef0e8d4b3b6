"""The datasets of Zhang et al. 2023's Table 1 (Unlearnable Clusters) that the offline mirror lacks,
registered with their real files and loaders (``registration.register_dataset``): Oxford-IIIT Pets
(Parkhi et al. 2012, 37 breeds), Stanford Cars (Krause et al. 2013, 196 models), Oxford Flowers-102
(Nilsback and Zisserman 2008), Food-101 (Bossard et al. 2014) and SUN397 (Xiao et al. 2010, its
first official partition). A user with the files (in ``POISONREPRO_DATA`` or ``data/raw/``) or with
internet gets the real data from ``data.load("pets")`` and so on; a file with another sha256 is
refused. Offline, ``data.load`` returns the labelled stand-in: CIFAR-10 regrouped into the dataset's
coarse kind (Pets: cat and dog; Cars: automobile and truck; the others: CIFAR-10's ten classes, a
stand-in for the pipeline, not for the label space). The ImageNet subset of the paper is not
registered: ImageNet has no public download URL (image-net.org's terms require an account).

The sha256 of each file is the one TensorFlow Datasets publishes for the same URL
(``tensorflow_datasets/url_checksums/<name>.txt``: oxford_iiit_pet, cars196, oxford_flowers102,
food101, sun397), not computed here (no network on this machine). Every loader decodes the JPEGs,
resizes each image's shorter side to ``size`` pixels and crops its centre (``size`` 32 by default,
the victims' input here; the paper trains at 224), and returns uint8 NHWC images with labels
0..C-1 in the dataset's class order. The decoded arrays are cached per split and size.

Not imported by notebook 13's stages (their cache keys do not depend on it): its ``cpu`` profile
runs CIFAR-10 relabelled by the hacker (``relabelled.py``).
"""
from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np

from ... import cache, paths
from ... import data as D
from ...registration import Standin, cifar10_regrouped, evaluation_dataset, register_dataset

SPLITS = ("train", "test")
#: (URL, sha256) of every raw file, from TensorFlow Datasets' url_checksums
FILES = {
    "pets": {"images.tar.gz": ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
                               "67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d"),
             "annotations.tar.gz": ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
                                    "52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91")},
    "cars": {"cars_train.tgz": ("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
                                "512b227b30e2f0a8aab9e09485786ab4479582073a144998da74d64b801fd288"),
             "cars_test.tgz": ("http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
                               "bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243"),
             "car_devkit.tgz": ("https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
                                "b97deb463af7d58b6bfaa18b2a4de9829f0f79e8ce663dfa9261bf7810e9accd"),
             "cars_test_annos_withlabels.mat": ("http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat",
                                                "790f75be8ea34eeded134cc559332baf23e30e91367e9ddca97d26ed9b895f05")},
    "flowers102": {"102flowers.tgz": ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
                                      "2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246"),
                   "imagelabels.mat": ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
                                       "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d"),
                   "setid.mat": ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat",
                                 "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd")},
    "food101": {"food-101.tar.gz": ("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
                                    "d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4")},
    "sun397": {"SUN397.tar.gz": ("https://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                                 "f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec"),
               "Partitions.zip": ("https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
                                  "e3311ea5f812d4cc6faef194688343d1111f6cd6f70f2c62f393c2b8d6ba1ec9")},
}


def _check(split: str, size: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: allowed values are {', '.join(SPLITS)}")
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 512:
        raise ValueError(f"size={size!r}: the images' side in pixels, an integer in [8, 512]")


def _square(blob: bytes, size: int) -> np.ndarray:
    """A JPEG as uint8 HWC RGB: its shorter side resized to ``size`` (antialiased), the centre cropped."""
    from PIL import Image
    img = Image.open(io.BytesIO(blob)).convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _images(tar_path, wanted: dict[str, int], size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The images of the archive whose member names end in a key of ``wanted`` (a path relative to
    the dataset's image folder) with that key's label, in the order of the sorted keys; one pass."""
    found = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            for cut in range(member.name.count("/") + 1):  # the member's name without 0, 1, ... leading folders
                key = member.name.split("/", cut)[-1]
                if key in wanted:
                    found[key] = _square(tar.extractfile(member).read(), size)
                    break
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise D.ChecksumError(f"{tar_path}: {len(missing)} images of {what} are missing, e.g. {missing[0]!r}")
    keys = sorted(wanted)
    return np.stack([found[k] for k in keys]), np.array([wanted[k] for k in keys], dtype=np.int64)


def _member_texts(archive, *suffixes: str) -> tuple[str, ...]:
    """The texts of the members of a tar or zip archive whose names end in each of ``suffixes`` (one
    pass over the archive: Food-101's is 5 GB)."""
    found = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            for suffix in suffixes:
                name = next((n for n in names if n.endswith(suffix)), None)
                if name is not None:
                    found[suffix] = z.read(name).decode()
    else:
        with tarfile.open(archive) as tar:
            for member in tar:
                suffix = next((x for x in suffixes if x not in found and member.name.endswith(x)), None)
                if suffix is not None:
                    found[suffix] = tar.extractfile(member).read().decode()
                    if len(found) == len(suffixes):
                        break
    missing = [x for x in suffixes if x not in found]
    if missing:
        raise D.ChecksumError(f"{archive}: no member ending in {missing[0]!r}")
    return tuple(found[x] for x in suffixes)


def _cached(name: str, split: str, size: int, files: list, decode) -> D.ArrayDataset:
    """The decoded split, from the clean-data cache or ``decode()`` (x, y, source, classes); the
    class names are kept beside the arrays, so that a cached load reads no archive."""
    key = f"{name}-{'-'.join(D._cache_tag(f) for f in files)}-{split}-{size}"
    names = paths.clean_cache_dir() / f"{key}.classes.txt"

    def decode_and_keep_names():
        x, y, source, classes = decode()
        cache.atomic_write(names, lambda tmp: tmp.write_text("\n".join(classes)))
        return x, y, source
    x, y, source = D._clean_cached(key, decode_and_keep_names)
    if not names.exists():  # the arrays outlived their names: decode once more
        decode_and_keep_names()
    return D.ArrayDataset(x, y, tuple(names.read_text().split("\n")), source)


# --------------------------------------------------------------------------- Oxford-IIIT Pets
def load_pets(split: str = "train", data_dir=None, *, size: int = 32, verify: bool = True) -> D.ArrayDataset:
    """Oxford-IIIT Pets: ``train`` the official trainval list, ``test`` the test list; 37 breeds in
    the lists' class-id order."""
    _check(split, size)
    images, notes = (D.fetch("pets", f, data_dir, verify=verify) for f in ("images.tar.gz", "annotations.tar.gz"))
    lines = [line.split() for line in _member_texts(notes, "trainval.txt" if split == "train" else "test.txt")[0]
             .splitlines() if line.strip() and not line.startswith("#")]
    wanted = {f"{name}.jpg": int(cls) - 1 for name, cls, *_ in lines}
    breeds = {int(cls) - 1: name.rsplit("_", 1)[0] for name, cls, *_ in lines}
    classes = [breeds[i] for i in sorted(breeds)]

    def decode():
        x, y = _images(images, wanted, size, f"Pets {split}")
        return x, y, f"Oxford-IIIT Pets {split} ({size}x{size})", classes
    return _cached("pets", split, size, [images, notes], decode)


# --------------------------------------------------------------------------- Stanford Cars
def _mat_annotations(blob_or_path) -> list[tuple[str, int]]:
    """(file name, class 1..196) of a Stanford Cars annotation .mat (its struct array ``annotations``)."""
    from scipy.io import loadmat
    source = io.BytesIO(blob_or_path) if isinstance(blob_or_path, bytes) else blob_or_path
    annos = loadmat(source, squeeze_me=True)["annotations"]
    return [(str(a["fname"]), int(a["class"])) for a in np.atleast_1d(annos)]


def load_cars(split: str = "train", data_dir=None, *, size: int = 32, verify: bool = True) -> D.ArrayDataset:
    """Stanford Cars: 196 models (the devkit's ``cars_meta.mat`` order), the official split."""
    from scipy.io import loadmat
    _check(split, size)
    images = D.fetch("cars", f"cars_{split}.tgz", data_dir, verify=verify)
    devkit = D.fetch("cars", "car_devkit.tgz", data_dir, verify=verify)
    with tarfile.open(devkit) as tar:
        blobs = {m.name.rsplit("/", 1)[-1]: tar.extractfile(m).read() for m in tar if m.isfile()
                 and m.name.endswith(("cars_meta.mat", "cars_train_annos.mat"))}
    classes = [str(c) for c in np.atleast_1d(loadmat(io.BytesIO(blobs["cars_meta.mat"]), squeeze_me=True)["class_names"])]
    if split == "train":
        annos = _mat_annotations(blobs["cars_train_annos.mat"])
        files = [images, devkit]
    else:
        labels = D.fetch("cars", "cars_test_annos_withlabels.mat", data_dir, verify=verify)
        annos = _mat_annotations(labels)
        files = [images, devkit, labels]
    wanted = {fname: cls - 1 for fname, cls in annos}

    def decode():
        x, y = _images(images, wanted, size, f"Cars {split}")
        return x, y, f"Stanford Cars {split} ({size}x{size})", classes
    return _cached("cars", split, size, files, decode)


# --------------------------------------------------------------------------- Oxford Flowers-102
def load_flowers102(split: str = "train", data_dir=None, *, size: int = 32, verify: bool = True) -> D.ArrayDataset:
    """Oxford Flowers-102: ``train`` the official training and validation ids (``setid.mat``'s
    trnid and valid, 20 images a class), ``test`` its tstid; classes numbered 1..102 as the files do."""
    from scipy.io import loadmat
    _check(split, size)
    images, labels, setid = (D.fetch("flowers102", f, data_dir, verify=verify)
                             for f in ("102flowers.tgz", "imagelabels.mat", "setid.mat"))
    label_of = loadmat(labels, squeeze_me=True)["labels"].astype(np.int64) - 1  # image i+1's class
    ids = loadmat(setid, squeeze_me=True)
    chosen = np.concatenate([np.atleast_1d(ids["trnid"]), np.atleast_1d(ids["valid"])]) if split == "train" \
        else np.atleast_1d(ids["tstid"])
    wanted = {f"image_{int(i):05d}.jpg": int(label_of[int(i) - 1]) for i in chosen}

    def decode():
        x, y = _images(images, wanted, size, f"Flowers-102 {split}")
        return x, y, f"Oxford Flowers-102 {split} ({size}x{size})", [str(c) for c in range(1, 103)]
    return _cached("flowers102", split, size, [images, labels, setid], decode)


# --------------------------------------------------------------------------- Food-101
def load_food101(split: str = "train", data_dir=None, *, size: int = 32, verify: bool = True) -> D.ArrayDataset:
    """Food-101: the official ``meta/train.txt`` (750 images a class) or ``meta/test.txt`` (250),
    classes in ``meta/classes.txt`` order."""
    _check(split, size)
    archive = D.fetch("food101", "food-101.tar.gz", data_dir, verify=verify)

    def decode():  # the meta files are read here: a cached load does not scan the 5 GB archive
        classes, names = (text.split() for text in _member_texts(archive, "meta/classes.txt", f"meta/{split}.txt"))
        index = {c: i for i, c in enumerate(classes)}
        wanted = {f"images/{n}.jpg": index[n.split("/")[0]] for n in names}
        x, y = _images(archive, wanted, size, f"Food-101 {split}")
        return x, y, f"Food-101 {split} ({size}x{size})", classes
    return _cached("food101", split, size, [archive], decode)


# --------------------------------------------------------------------------- SUN397
def load_sun397(split: str = "train", data_dir=None, *, size: int = 32, verify: bool = True) -> D.ArrayDataset:
    """SUN397's first official partition (``Partitions.zip``: Training_01.txt, Testing_01.txt, 50
    images a class each), classes in ``ClassName.txt`` order."""
    _check(split, size)
    archive = D.fetch("sun397", "SUN397.tar.gz", data_dir, verify=verify)
    partitions = D.fetch("sun397", "Partitions.zip", data_dir, verify=verify)
    classes, names = (text.split() for text in _member_texts(
        partitions, "ClassName.txt", "Training_01.txt" if split == "train" else "Testing_01.txt"))
    index = {c: i for i, c in enumerate(classes)}
    # "/a/abbey/sun_x.jpg": the class is the path's folders, the archive holds it under SUN397/
    wanted = {n.lstrip("/"): index[n.rsplit("/", 1)[0]] for n in names}

    def decode():
        x, y = _images(archive, wanted, size, f"SUN397 {split}")
        return x, y, f"SUN397 {split}, partition 1 ({size}x{size})", [c.strip("/") for c in classes]
    return _cached("sun397", split, size, [archive, partitions], decode)


_LOADERS = {"pets": load_pets, "cars": load_cars, "flowers102": load_flowers102, "food101": load_food101,
            "sun397": load_sun397}
_STANDINS = {
    "pets": Standin("CIFAR-10's cats and dogs (2 classes, not 37 breeds)",
                    cifar10_regrouped({"cat": ("cat",), "dog": ("dog",)})),
    "cars": Standin("CIFAR-10's automobiles and trucks (2 classes, not 196 models)",
                    cifar10_regrouped({"automobile": ("automobile",), "truck": ("truck",)})),
}
_CIFAR10 = Standin("CIFAR-10 (its 10 classes, not the dataset's)", cifar10_regrouped({c: (c,) for c in D.CIFAR10_CLASSES}))

for _name, _loader in _LOADERS.items():
    register_dataset(_name, D.Dataset({f: D.RawFile(url, sha) for f, (url, sha) in FILES[_name].items()}, _loader,
                                      "sha256 from TensorFlow Datasets' url_checksums; images at size x size"),
                     standin=_STANDINS.get(_name, _CIFAR10))

PETS = evaluation_dataset("pets")
CARS = evaluation_dataset("cars")
FLOWERS102 = evaluation_dataset("flowers102")
FOOD101 = evaluation_dataset("food101")
SUN397 = evaluation_dataset("sun397")
