"""Defences, one module per method; importing this package registers them all."""
from . import abl, dpa, knn_sanitization, noisy_labels, outlier_detection, trimmed_loss  # noqa: F401
