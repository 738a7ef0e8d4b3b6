"""Notebook 01, Poison Frogs (Shafahi et al., NeurIPS 2018): ``experiments`` (the cached stages)
and ``report`` (figures, tables, claims). Nothing is imported here, so that a stage's code hash
covers the experiments and never the report."""
