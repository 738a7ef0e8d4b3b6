"""Defences, one module per method; importing this package registers them all."""
from . import knn_sanitization, noisy_labels, outlier_detection  # noqa: F401
