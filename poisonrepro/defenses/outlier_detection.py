"""Outlier-detection pre-filtering: A. Paudice, L. Munoz-Gonzalez, A. Gyorgy, E. C. Lupu,
"Detection of Adversarial Training Examples in Poisoning Attacks through Anomaly Detection"
(2018, arXiv:1802.03041), as the lecture deck "Adversarial Machine Learning" (Luis Munoz-Gonzalez,
Imperial College London, 20 December 2018) presents it: a detector built from a
small curated (trusted) set of genuine points removes training points far from the genuine
distribution of their label.

The detector here is distance-based, one per class: the score of a point labeled y is its
Euclidean distance to the centroid of the trusted points of class y, and the threshold of
class y is the ``quantile`` of the trusted points' own scores (the paper's detectors and
threshold differ in detail; this is our reading). ``project`` gives the attacker's side of
the same geometry: the detectability constraint of MG-10 keeps a poison inside the ball of
``radius`` thresholds around its label's centroid, where the attacker uses a detector of its own
fitted on its own data (it does not see the defender's trusted set); ``project_binary`` does the
same for binary features by flipping bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..registry import register_defense


@dataclass(frozen=True)
class OutlierDetector:
    centroids: np.ndarray  # [K, d]
    thresholds: np.ndarray  # [K]

    def scores(self, X, y) -> np.ndarray:
        X, y = np.asarray(X, float), np.asarray(y).astype(int)
        return np.linalg.norm(X - self.centroids[y], axis=1)

    def keep(self, X, y) -> np.ndarray:
        """Boolean mask of the points the detector accepts."""
        return self.scores(X, y) <= self.thresholds[np.asarray(y).astype(int)]

    def project(self, X: torch.Tensor, y: torch.Tensor, radius: float) -> torch.Tensor:
        """Each row moved to the nearest point within ``radius`` thresholds of its label's
        centroid, then clipped to [0, 1] (the box may push it slightly out again)."""
        c = torch.as_tensor(self.centroids, dtype=X.dtype, device=X.device)[y.long()]  # where the poisons are
        r = radius * torch.as_tensor(self.thresholds, dtype=X.dtype, device=X.device)[y.long()]
        d = X - c
        n = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = torch.clamp(r / n, max=1.0).view(-1, *[1] * (X.dim() - 1))
        return (c + d * scale).clamp(0, 1)

    def project_binary(self, X: torch.Tensor, y: torch.Tensor, radius: float) -> torch.Tensor:
        """Binary rows (0/1) moved into the ball of ``radius`` thresholds by the fewest bit
        flips: flipping bit j changes the squared distance to the centroid c by
        (1 - 2 x_j)(1 - 2 c_j), so the bits with the most negative change go first; a row the
        ball holds no binary point for ends at the binary point nearest the centroid."""
        c = torch.as_tensor(self.centroids, dtype=X.dtype, device=X.device)[y.long()]
        r2 = (radius * torch.as_tensor(self.thresholds, dtype=X.dtype, device=X.device)[y.long()]) ** 2
        d2 = ((X - c) ** 2).sum(1)
        change, order = ((1 - 2 * X) * (1 - 2 * c)).sort(1)
        inside = (d2[:, None] + change.cumsum(1) <= r2[:, None]) & (change < 0)
        flips = torch.where(inside.any(1), inside.float().argmax(1) + 1, (change < 0).sum(1))
        flips = torch.where(d2 <= r2, torch.zeros_like(flips), flips)
        ranked = torch.arange(X.shape[1], device=X.device)[None, :] < flips[:, None]
        flip = torch.zeros_like(ranked).scatter(1, order, ranked)
        return torch.where(flip, 1 - X, X)


@register_defense("outlier_detection", paper="Paudice et al. 2018a", notebook="06_back_gradient",
                  summary="drop training points far from the trusted points of their label",
                  defends=[("causative", "availability", "indiscriminate")])
def fit_outlier_detector(X_trusted, y_trusted, *, quantile: float, n_classes: int = 2) -> OutlierDetector:
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile={quantile}: must lie in (0, 1]")
    X, y = np.asarray(X_trusted, float), np.asarray(y_trusted).astype(int)
    missing = sorted(set(range(n_classes)) - set(y.tolist()))
    if missing:
        raise ValueError(f"the trusted set has no point of class(es) {missing}")
    centroids = np.stack([X[y == k].mean(0) for k in range(n_classes)])
    det = OutlierDetector(centroids, np.zeros(n_classes))
    s = det.scores(X, y)
    return OutlierDetector(centroids, np.array([np.quantile(s[y == k], quantile) for k in range(n_classes)]))
