"""Attacks, one module per method; importing this package registers them all."""
from . import evasion_pgd, feature_collision, influence, svm_poisoning  # noqa: F401
