"""Notebook 05, poisoning attacks against SVMs (Biggio, Nelson, Laskov, ICML 2012):
``experiments`` (the trials, cached) and ``report`` (figures, tables, claims). Nothing is
imported here, so that a trial's code hash covers the experiments and never the report."""
