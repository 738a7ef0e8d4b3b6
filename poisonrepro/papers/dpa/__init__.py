"""Notebook 10, Deep Partition Aggregation (Levine and Feizi, ICLR 2021): ``experiments`` (the
trials) and ``report`` (figures, tables, claims). Nothing is imported here, so that a stage's code
hash covers the experiments and never the report."""
