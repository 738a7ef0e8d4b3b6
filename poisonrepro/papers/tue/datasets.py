"""The datasets of Ren et al. 2023's transfer tables (TUE-T2, TUE-T6) that the offline mirror lacks,
registered with their real files and loaders (``registration.register_dataset``): SVHN (Netzer et
al. 2011, the cropped 32x32 digits) and CIFAR-100 (Krizhevsky 2009). A user with the files (in
``POISONREPRO_DATA`` or ``data/raw/``) or with internet gets the real data from ``data.load("svhn")``
and ``data.load("cifar100")``; a file with another sha256 is refused. Offline, ``data.load`` returns
the labelled stand-in: MNIST digits resized to 32x32 RGB for SVHN (``registration.mnist_as_svhn``),
CIFAR-10 for CIFAR-100 (10 classes, not 100: a stand-in for the pipeline, not for the label space).

The sha256 of each file is the one TensorFlow Datasets publishes for the same URL
(``tensorflow_datasets/url_checksums/svhn_cropped.txt`` and ``cifar100.txt``), not computed here
(no network on this machine). CIFAR-100 is read from its binary distribution (the one whose checksum
TFDS lists): records of one coarse-label byte, one fine-label byte and 3,072 pixel bytes (R, G, B
planes of 32x32), labels the 100 fine classes.

Not imported by notebook 14's stages (their cache keys do not depend on it): its ``paper`` profile
still transfers onto the SVHN-small stand-in of ``svhn_standin.py``.
"""
from __future__ import annotations

import tarfile

import numpy as np

from ... import data as D
from ...registration import Standin, cifar10_regrouped, evaluation_dataset, mnist_as_svhn, register_dataset

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/{}_32x32.mat"
SVHN_SHA256 = {"train": "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
               "test": "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b"}
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
CIFAR100_SHA256 = "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"
SPLITS = ("train", "test")
#: CIFAR-100's fine classes in label order (the archive's fine_label_names.txt, checked when it is decoded)
CIFAR100_CLASSES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle
bowl boy bridge bus butterfly camel can castle caterpillar cattle
chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain
mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
plain plate poppy porcupine possum rabbit raccoon ray road rocket
rose sea seal shark shrew skunk skyscraper snail snake spider
squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: allowed values are {', '.join(SPLITS)}")


def load_svhn(split: str = "train", data_dir=None, *, verify: bool = True) -> D.ArrayDataset:
    """SVHN's cropped digits (``{split}_32x32.mat``) as uint8 NHWC images with labels 0..9 (the
    files label the digit 0 as 10)."""
    _check_split(split)
    filename = f"{split}_32x32.mat"
    path = D.fetch("svhn", filename, data_dir, verify=verify)

    def decode():
        from scipy.io import loadmat
        mat = loadmat(path)
        x = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2))).astype(np.uint8)  # H W C N -> N H W C
        y = mat["y"].reshape(-1).astype(np.int64) % 10
        return x, y, f"SVHN {split} ({filename})"
    x, y, source = D._clean_cached(f"svhn-{D._cache_tag(path)}-{split}", decode)
    return D.ArrayDataset(x, y, tuple(str(d) for d in range(10)), source)


def load_cifar100(split: str = "train", data_dir=None, *, verify: bool = True) -> D.ArrayDataset:
    """CIFAR-100's binary distribution as uint8 NHWC images with the 100 fine labels."""
    _check_split(split)
    path = D.fetch("cifar100", "cifar-100-binary.tar.gz", data_dir, verify=verify)

    def decode():
        records, names = None, None
        with tarfile.open(path) as tar:
            for member in tar:  # one pass over the gzip stream
                if member.name.endswith(f"/{split}.bin"):
                    records = np.frombuffer(tar.extractfile(member).read(), np.uint8).reshape(-1, 2 + 3 * 32 * 32)
                elif member.name.endswith("/fine_label_names.txt"):
                    names = tuple(w for w in tar.extractfile(member).read().decode().split())
        if records is None or names != CIFAR100_CLASSES:
            raise D.ChecksumError(f"{path}: not CIFAR-100's binary distribution (no {split}.bin, or other fine classes)")
        x = np.ascontiguousarray(records[:, 2:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        return x, records[:, 1].astype(np.int64), f"CIFAR-100 {split} (cifar-100-binary.tar.gz)"
    x, y, source = D._clean_cached(f"cifar100-{D._cache_tag(path)}-{split}", decode)
    return D.ArrayDataset(x, y, CIFAR100_CLASSES, source)


register_dataset("svhn", D.Dataset({f"{s}_32x32.mat": D.RawFile(SVHN_URL.format(s), SVHN_SHA256[s]) for s in SPLITS},
                                   load_svhn, "sha256 from TensorFlow Datasets' url_checksums/svhn_cropped.txt"),
                 standin=Standin("MNIST digits resized to 32x32 RGB", mnist_as_svhn))
register_dataset("cifar100", D.Dataset({"cifar-100-binary.tar.gz": D.RawFile(CIFAR100_URL, CIFAR100_SHA256)},
                                       load_cifar100, "sha256 from TensorFlow Datasets' url_checksums/cifar100.txt"),
                 standin=Standin("CIFAR-10 (10 classes, not 100)",
                                 cifar10_regrouped({c: (c,) for c in D.CIFAR10_CLASSES})))

SVHN = evaluation_dataset("svhn")
CIFAR100 = evaluation_dataset("cifar100")
