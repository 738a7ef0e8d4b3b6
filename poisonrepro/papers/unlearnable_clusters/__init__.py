"""Notebook 13, Unlearnable Clusters (Zhang et al., CVPR 2023). Nothing is imported here, so that a
stage's code hash covers the experiments and never the report."""
