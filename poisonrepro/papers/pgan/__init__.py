"""Notebook 07, generative poisoning (GEN-1, Yang et al. 2017; PGAN-1, Munoz-Gonzalez et al.
2019): ``experiments`` (the cached stages) and ``report`` (figures, tables, claims). Nothing is
imported here, so that a stage's code hash covers the experiments and never the report."""
