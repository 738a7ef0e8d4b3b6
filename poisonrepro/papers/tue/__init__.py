"""Notebook 14, Transferable Unlearnable Examples (Ren et al., ICLR 2023). Nothing is imported here,
so that a stage's code hash covers the experiments and never the report."""
