"""k-NN label sanitisation: A. Paudice, L. Munoz-Gonzalez, E. C. Lupu, "Label Sanitization
against Label Flipping Poisoning Attacks" (2018, arXiv:1803.00992), as in the lecture deck
"Adversarial Machine Learning" (Luis Munoz-Gonzalez, Imperial College London, 20 December 2018; slide
"Label Sanitization to Mitigate Label Flipping Attacks").

Every training point is relabeled with the most common label among its k nearest neighbours
in the training set (itself excluded) when that label's share reaches the confidence
threshold eta (the lecture's sensitivity plot uses 0.5) and no other label is as common: on a
tie (e.g. 5-5 at k = 10) the point keeps its label, as in Paudice et al.'s Algorithm 1, which
relabels only to *the* majority. Neighbours come from scikit-learn.
"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from ..registry import register_defense


@register_defense("knn_label_sanitization", paper="Paudice et al. 2018b", notebook="06_back_gradient",
                  summary="relabel each training point by the majority of its k nearest neighbours",
                  defends=[("causative", "availability", "indiscriminate")])
def knn_relabel(X, y, *, k: int, confidence: float = 0.5) -> np.ndarray:
    """The sanitised labels (a copy; the input is not changed)."""
    X, y = np.asarray(X, float), np.asarray(y).astype(int)
    if not 1 <= k < len(y):
        raise ValueError(f"k={k}: must lie in [1, {len(y) - 1}] for {len(y)} training points")
    nn = NearestNeighbors(n_neighbors=k + 1).fit(X)
    idx = nn.kneighbors(X, return_distance=False)[:, 1:]  # drop the point itself
    neighbour_labels = y[idx]
    counts = np.stack([(neighbour_labels == c).sum(1) for c in range(y.max() + 1)], 1)
    top = counts.max(1)
    unique = (counts == top[:, None]).sum(1) == 1  # argmax alone would break a tie towards class 0
    return np.where((top / k >= confidence) & unique, counts.argmax(1), y)
