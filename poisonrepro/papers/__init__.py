"""One package per paper, named as its notebook without the number (``poison_frogs`` for
``01_poison_frogs``): ``experiments.py`` computes and caches its stages, ``report.py`` makes its
figures, tables and claims from them."""
