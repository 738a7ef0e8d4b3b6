"""Notebook 09, iterative trimmed loss minimisation (Shen and Sanghavi, ICML 2019): ``experiments``
(the trials) and ``report`` (figures, tables, claims). Nothing is imported here, so that a stage's
code hash covers the experiments and never the report."""
