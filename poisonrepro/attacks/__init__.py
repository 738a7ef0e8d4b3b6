"""Attacks, one module per method; importing this package registers them all."""
from . import (back_gradient, evasion_pgd, feature_collision, generative, influence, label_flipping,  # noqa: F401
               pgan, svm_poisoning)
