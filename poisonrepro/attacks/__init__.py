"""Attacks, one module per method; importing this package registers them all."""
from . import (back_gradient, clean_label_backdoor, convex_polytope, evasion_pgd, feature_collision,  # noqa: F401
               generative, hidden_trigger_backdoor, influence, label_flipping, metapoison, pgan, svm_poisoning,
               witches_brew)
