"""The hacker's label spaces of notebook 13 (Unlearnable Clusters, Zhang et al., CVPR 2023): the
protector's 10-class CIFAR-10 exploited as an n-class dataset.

STAND-IN for the paper's relabelling of Pets (Fig. 4a: 37 classes re-labelled into 5 to 35): CIFAR-10
class c becomes class c mod n, for the training and the test set alike. At n = 5 the pairs are
(airplane, dog), (automobile, frog), (bird, horse), (cat, ship), (deer, truck); at n = 2 the even
and the odd classes; n = 10 is the protector's own labels (the label-consistent setting).

Each ``CIFAR10_IN_<n>`` is an ``evaluation.Dataset``, named in an evaluation spec by its import path
(``dataset_name(n)``), so that the shared evaluation needs no change for it.
"""
from __future__ import annotations

from ...evaluation import Dataset, cifar10_test_images, cifar10_test_set, cifar10_training_set

CLASSES = 10


def check_classes(n) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= CLASSES:
        raise ValueError(f"hacker classes n={n!r}: an integer in [2, {CLASSES}]")
    return n


def relabel(y, n: int):
    """The hacker's label of each protector's label ``y``: y mod n."""
    return y % check_classes(n)


def relabelled(n: int) -> Dataset:
    check_classes(n)

    def training_set(per_class: int):
        x, y = cifar10_training_set(per_class)
        return x, relabel(y, n)

    def test_set(count: int):
        x, y = cifar10_test_set(count)
        return x, relabel(y, n)

    return Dataset(training_set, test_set, cifar10_test_images)


def dataset_name(n: int) -> str:
    """The import path of the n-class dataset, for an evaluation spec."""
    return f"{__name__}:CIFAR10_IN_{check_classes(n)}"


for _n in range(2, CLASSES + 1):
    globals()[f"CIFAR10_IN_{_n}"] = relabelled(_n)
