"""Notebook 03, MetaPoison (Huang et al., NeurIPS 2020): ``experiments`` (the cached stages and
trials) and ``report`` (figures, tables, claims). Nothing is imported here, so that a stage's
code hash covers the experiments and never the report."""
