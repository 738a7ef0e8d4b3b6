"""Notebook 04, Witches' Brew (Geiping et al., ICLR 2021): ``experiments`` (the cached stages
and trials) and ``report`` (figures, tables, claims). Nothing is imported here, so that a stage's
code hash covers the experiments and never the report."""
