"""Notebook 02, Convex Polytope (Zhu et al., ICML 2019): ``experiments`` (the cached stages)
and ``report`` (figures, tables, claims). Nothing is imported here, so that a stage's code hash
covers the experiments and never the report."""
