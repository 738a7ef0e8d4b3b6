"""Notebook 06, back-gradient poisoning (Munoz-Gonzalez et al., AISec 2017), label flipping and
its defences: ``experiments`` (the cached stages) and ``report`` (figures, tables, claims).
Nothing is imported here, so that a stage's code hash covers the experiments and never the
report."""
