"""Notebook 08, influence functions and the training-set attack (Koh and Liang, ICML 2017):
``experiments`` (the cached stages) and ``report`` (figures, tables, claims). Nothing is
imported here, so that a stage's code hash covers the experiments and never the report."""
