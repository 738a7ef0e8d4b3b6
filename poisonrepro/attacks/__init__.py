"""Attacks, one module per method; importing this package registers them all."""
from . import (back_gradient, badnets, blend, clean_label_backdoor, convex_polytope, evasion_pgd,  # noqa: F401
               feature_collision, generative, hidden_trigger_backdoor, influence, label_flipping, metapoison, pgan,
               sig, svm_poisoning, trojan, witches_brew)
