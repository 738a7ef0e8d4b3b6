"""Notebook 11, Anti-Backdoor Learning (Li et al., NeurIPS 2021): ``experiments`` (the trials) and
``report`` (figures, tables, claims). Nothing is imported here, so that a stage's code hash covers
the experiments and never the report."""
