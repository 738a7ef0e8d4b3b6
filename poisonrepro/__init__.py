"""poisonrepro: a Jupyter-first reproducibility compendium for data-poisoning research."""
__version__ = "0.1.0"
