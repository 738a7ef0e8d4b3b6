"""Notebook 12, Unlearnable Examples (Huang et al., ICLR 2021). Nothing is imported here, so that a
stage's code hash covers the experiments and never the report."""
