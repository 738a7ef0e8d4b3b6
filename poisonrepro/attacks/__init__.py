"""Attacks, one module per method; importing this package registers them all."""
from . import back_gradient, evasion_pgd, feature_collision, influence, label_flipping, svm_poisoning  # noqa: F401
